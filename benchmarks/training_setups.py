"""The two training set-ups that ``benchmarks/training.py`` compares, and their referee.

* :data:`FFJORD_TOY` and :data:`RECOMMENDED`: the configurations (FFJORD's toy
  setting; ``flowkit train``'s defaults).
* :class:`FlowkitRunner` (flowkit's :class:`~flowkit.train.Trainer`) and
  :class:`PlainRunner` (the plain torchdiffeq model of :func:`plain_model`,
  ``flowkit bench``'s ``torchdiffeq_plain`` peer, with its own Adam): both
  step on the same batches from the same initial weights and keep their own
  training clock.
* :class:`Evaluator`: one test-NLL measurement for both (:func:`reference_cnf`),
  and :func:`true_8gaussians_nll`, the data density's own NLL.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from flowkit.bench.peers.torchdiffeq_plain import PlainCNF
from flowkit.bench.timing import stopwatch
from flowkit.cnf import CNF
from flowkit.data import BatchSampler
from flowkit.train import TrainConfig, Trainer

__all__ = [
    "train_interleaved",
    "FFJORD_TOY",
    "RECOMMENDED",
    "TARGET_8GAUSSIANS",
    "Evaluator",
    "FlowkitRunner",
    "PlainRunner",
    "make_trainer",
    "plain_model",
    "reference_cnf",
    "true_8gaussians_nll",
]

FFJORD_TOY: dict[str, Any] = {
    "field": "concatsquash",
    "field_options": {"hidden": [64, 64, 64], "activation": "tanh"},
    "integrator": "dopri5",
    "integrator_options": {"rtol": 1e-5, "atol": 1e-5},
    "trace": "exact",
    "gradient": "adjoint",
    "t1": 0.5,
    "lr": 1e-3,
    "weight_decay": 1e-5,
}
"""FFJORD's toy-density configuration, in flowkit's configuration keys."""

_RECOMMENDED_KEYS = (
    "field",
    "field_options",
    "integrator",
    "integrator_options",
    "trace",
    "gradient",
    "t1",
    "regularizers",
    "lr",
    "weight_decay",
    "lr_schedule",
    "warmup",
    "iterations",
)
RECOMMENDED: dict[str, Any] = {k: getattr(TrainConfig(), k) for k in _RECOMMENDED_KEYS}
"""flowkit's recommended settings for the 2-D densities: ``flowkit train``'s defaults
(chosen with this benchmark). ``iterations`` only sets the span of the learning-rate
schedule here; training stops at the time budget."""

TARGET_8GAUSSIANS = 2.856


def plain_model(field: nn.Module, *, dim: int, rtol: float = 1e-5, t1: float = 0.5) -> PlainCNF:
    """The plain FFJORD model (exact trace by a loop, ``odeint_adjoint``) on a copy of ``field``.

    The same implementation as ``flowkit bench``'s ``torchdiffeq_plain`` peer.
    """
    return PlainCNF(
        copy.deepcopy(field),
        dim=dim,
        method="dopri5",
        rtol=rtol,
        atol=rtol,
        trace="exact",
        adjoint=True,
        t0=0.0,
        t1=t1,
    )


class PlainRunner:
    """The plain model with its optimiser and the same batches as the flowkit trainer."""

    def __init__(self, trainer: Trainer, batch_size: int, lr: float, wd: float) -> None:
        self.model = plain_model(
            trainer.model.field, dim=trainer.data.train.shape[1], t1=trainer.config.t1
        )
        self.data = trainer.data
        self.sampler = BatchSampler(
            len(trainer.data.train), batch_size, seed=trainer.config.seed + 1
        )
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr, weight_decay=wd)
        self.train_seconds = 0.0
        self.iteration = 0
        self.nfe: list[int] = []

    @property
    def field(self) -> nn.Module:
        return self.model.field

    def step(self) -> None:
        before = self.model.evaluations
        with stopwatch(self.model) as clock:
            x = self.data.train[self.sampler.next_indices()]
            self.optimizer.zero_grad(set_to_none=True)
            loss = -self.model.log_prob(x).mean()
            loss.backward()
            self.optimizer.step()
        self.train_seconds += clock.seconds
        self.iteration += 1
        self.nfe.append(self.model.evaluations - before)


class FlowkitRunner:
    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.nfe: list[int] = []

    @property
    def field(self) -> nn.Module:
        return self.trainer.model.field

    @property
    def train_seconds(self) -> float:
        return self.trainer.train_seconds

    @property
    def iteration(self) -> int:
        return self.trainer.iteration

    def step(self) -> None:
        row = self.trainer.step()
        self.nfe.append(int(row["nfe"] or 0) + int(row["backward_nfe"] or 0))


class Evaluator:
    """One evaluator for both models: exact trace, dopri5 at 1e-5, on a given field."""

    def __init__(self, test: Tensor, t1: float, chunk: int = 5_000) -> None:
        self.test, self.t1, self.chunk = test, t1, chunk

    @torch.no_grad()
    def __call__(self, field: nn.Module) -> float:
        model = reference_cnf(field, dim=self.test.shape[1], t1=self.t1)
        total = sum(float(-model.log_prob(c).double().sum()) for c in self.test.split(self.chunk))
        return total / len(self.test)


def make_trainer(
    values: dict[str, Any], dataset: str, batch: int, n_test: int, seed: int
) -> Trainer:
    config = TrainConfig(
        **{
            "iterations": 10**9,
            **values,
            "data": dataset,
            "batch_size": batch,
            "n_test": n_test,
            "progress": False,
            "plots": False,
            "seed": seed,
            "tensorboard": False,
        }
    )
    return Trainer(config, run_dir="bench-out/training/unused", write=False)


def reference_cnf(field: nn.Module, *, dim: int, t1: float) -> CNF:
    """The CNF both models are evaluated and plotted with: exact trace, dopri5 at 1e-5."""
    return CNF(
        field,
        "dopri5",
        "exact",
        "backprop",
        dim=dim,
        t1=t1,
        integrator_options={"rtol": 1e-5, "atol": 1e-5},
    )


def true_8gaussians_nll(x: Tensor) -> float:
    x = x.double()
    sigma = 0.5 / math.sqrt(2)
    ang = torch.arange(8, dtype=torch.float64) * math.pi / 4
    centres = (4 / math.sqrt(2)) * torch.stack([ang.cos(), ang.sin()], 1)
    sq = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
    logp = torch.logsumexp(-sq / (2 * sigma**2), 1) - math.log(8 * 2 * math.pi * sigma**2)
    return float(-logp.mean())


def train_interleaved(
    dataset: str,
    runners: Mapping[str, Any],
    evaluate: Callable[[nn.Module], float],
    budget: float,
    chunk: float,
) -> dict[str, list[tuple[float, float]]]:
    """Step the runners in turn, ``chunk`` training seconds at a time; their NLL curves.

    A runner has ``step()``, ``train_seconds``, ``iteration`` and ``field``; the
    one behind in training time goes next, so all see the same machine load.
    """
    curves: dict[str, list[tuple[float, float]]] = {k: [] for k in runners}
    for name, runner in runners.items():
        curves[name].append((0.0, evaluate(runner.field)))
    while any(r.train_seconds < budget for r in runners.values()):
        name = min(runners, key=lambda k: runners[k].train_seconds)
        runner = runners[name]
        stop = min(budget, (math.floor(runner.train_seconds / chunk + 1e-9) + 1) * chunk)
        while runner.train_seconds < stop:
            runner.step()
        curves[name].append((runner.train_seconds, evaluate(runner.field)))
        print(
            f"  {dataset} {name}: {runner.train_seconds:6.1f} s, it {runner.iteration:6d}, "
            f"test NLL {curves[name][-1][1]:.4f}",
            flush=True,
        )
    return curves
