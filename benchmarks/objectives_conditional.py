"""The class-conditional 8gaussians goal of ``benchmarks/objectives.py``: data, referee, truth.

* :func:`labelled_splits`: the trainer's splits with their mixture-component labels.
* :class:`ConditionalBatches`: a trainer's batches with their one-hot contexts.
* :class:`ConditionalEvaluator`: the held-out conditional NLL of a conditional field
  (exact trace, dopri5 at 1e-5, the test points' labels as context), the same
  referee as the unconditional :class:`training_setups.Evaluator`.
* :func:`true_conditional_8gaussians_log_prob` and :func:`true_conditional_8gaussians_nll`:
  the data density's own conditional log-density and NLL, in model space.

Given its component ``k``, an 8gaussians point is a single Gaussian: centre
``4 (cos k pi/4, sin k pi/4) / sqrt(2)`` and standard deviation ``0.5 / sqrt(2)``
in each coordinate (see :mod:`flowkit.data.toy`). When the splits are
standardised (``model = (x - mean) / std``) the model-space density gains the
log-determinant ``sum(log std)``; flowkit does not standardise the toy densities,
so that term is zero for the benchmark, but it is accounted for exactly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from training_setups import reference_cnf

from flowkit.data import DataSplits, load_dataset, one_hot
from flowkit.train import Trainer

__all__ = [
    "CONDITIONAL_DATASET",
    "GOAL_GAP_NATS",
    "ConditionalBatches",
    "ConditionalEvaluator",
    "labelled_splits",
    "true_conditional_8gaussians_log_prob",
    "true_conditional_8gaussians_nll",
]

CONDITIONAL_DATASET = "8gaussians"
"""The one data set whose true conditional density the benchmark knows."""

GOAL_GAP_NATS = 0.05
"""The goal: conditional test NLL within this many nats of the true conditional's."""

_SIGMA = 0.5 / math.sqrt(2.0)
_N_CLASSES = 8


def _centres() -> Tensor:
    angles = torch.arange(_N_CLASSES, dtype=torch.float64) * (math.pi / 4)
    return (4.0 / math.sqrt(2.0)) * torch.stack([angles.cos(), angles.sin()], dim=1)


def true_conditional_8gaussians_log_prob(
    x: Tensor, labels: Tensor, *, mean: Tensor | None = None, std: Tensor | None = None
) -> Tensor:
    """``log p(x | component)`` of 8gaussians for model-space points ``x``, in float64.

    Arguments:
        x: points of shape ``(n, 2)`` in model space.
        labels: their components, int64 in ``[0, 8)``, shape ``(n,)``.
        mean, std: the standardisation the splits went through
            (``model = (data - mean) / std``), or ``None`` for none.

    Returns:
        Shape ``(n,)``: the log-density of the model-space points, i.e. the data-space
        log-density plus ``sum(log std)``.

    Raises:
        ValueError: shapes that do not match, or labels outside ``[0, 8)``.
    """
    if x.dim() != 2 or x.shape[1] != 2 or labels.shape != (x.shape[0],):
        raise ValueError(
            f"expected points (n, 2) and labels (n,), got {tuple(x.shape)} and "
            f"{tuple(labels.shape)}."
        )
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= _N_CLASSES):
        raise ValueError(f"8gaussians labels lie in [0, {_N_CLASSES}), got {labels.tolist()}.")
    data = x.double()
    log_det = torch.zeros((), dtype=torch.float64)
    if std is not None:
        data = data * std.double()
        log_det = torch.log(std.double()).sum()
    if mean is not None:
        data = data + mean.double()
    sq = (data - _centres()[labels.long()]).pow(2).sum(-1)
    return -sq / (2 * _SIGMA**2) - math.log(2 * math.pi * _SIGMA**2) + log_det


def true_conditional_8gaussians_nll(x: Tensor, labels: Tensor, data: DataSplits) -> float:
    """The mean conditional NLL of the true density on model-space ``x`` of the splits ``data``."""
    log_p = true_conditional_8gaussians_log_prob(x, labels, mean=data.mean, std=data.std)
    return float(-log_p.mean())


def labelled_splits(trainer: Trainer) -> DataSplits:
    """``trainer.data`` with its labels: the same points, reloaded with ``labels=True``.

    Raises:
        RuntimeError: when the reloaded points differ from the trainer's.
    """
    c = trainer.config
    labelled = load_dataset(
        c.data,
        seed=c.seed,
        n_train=c.n_train,
        n_val=c.n_val,
        n_test=c.n_test,
        standardize=c.standardize,
        dtype=trainer.data.train.dtype,
        device=trainer.data.train.device,
        labels=True,
    )
    for split in ("train", "val", "test"):
        if not torch.equal(getattr(labelled, split), getattr(trainer.data, split)):
            raise RuntimeError(f"the labelled {split} split differs from the trainer's.")
    return labelled


class ConditionalBatches:
    """A trainer's batches (its own sampler) with the one-hot contexts of their labels."""

    def __init__(self, trainer: Trainer, labelled: DataSplits) -> None:
        assert labelled.train_labels is not None and labelled.n_classes is not None
        self.trainer, self.labels, self.n_classes = (
            trainer,
            labelled.train_labels,
            labelled.n_classes,
        )

    def __call__(self) -> tuple[Tensor, Tensor]:
        t = self.trainer
        idx = t.sampler.next_indices().to(t.data.train.device)
        x = t.data.train_batch(idx, t.dequant_generator)
        return x, one_hot(self.labels[idx], self.n_classes, dtype=x.dtype)


class ConditionalEvaluator:
    """Held-out conditional NLL: exact trace, dopri5 at 1e-5, the labels' one-hot context."""

    def __init__(
        self, test: Tensor, labels: Tensor, n_classes: int, t1: float, chunk: int = 5_000
    ) -> None:
        self.test, self.t1, self.chunk = test, t1, chunk
        self.context = one_hot(labels, n_classes, dtype=test.dtype)

    @torch.no_grad()
    def __call__(self, field: nn.Module) -> float:
        model = reference_cnf(field, dim=self.test.shape[1], t1=self.t1)
        pairs = zip(self.test.split(self.chunk), self.context.split(self.chunk), strict=True)
        total = sum(float(-model.log_prob(x, c).double().sum()) for x, c in pairs)
        return total / len(self.test)
