"""One contestant of ``benchmarks/objectives.py`` in training: :class:`ObjectiveRunner`.

It steps a trainer's model through the registered objective plugins of its
:class:`objectives_contestants.Phase` list, moving from phase to phase as its own
training clock passes each phase's share of the budget, and records each step's
function evaluations.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from objectives_contestants import Phase
from torch import Tensor, nn

from flowkit.cnf import CNF
from flowkit.registry import get_registry
from flowkit.train import Trainer

__all__ = ["ObjectiveRunner"]


class ObjectiveRunner:
    """One contestant: a trainer's data, model and batches, stepped through objective plugins.

    Keeps its own training clock (batch, loss, backward, optimiser step; no evaluation).
    ``batches``, when given, returns each batch with its context (a conditional model);
    by default the trainer's batches are used without context.
    """

    def __init__(
        self,
        trainer: Trainer,
        phases: list[Phase],
        budget: float,
        seed: int,
        batches: Callable[[], tuple[Tensor, Tensor | None]] | None = None,
    ) -> None:
        self.trainer = trainer
        self.batches = batches or (lambda: (trainer.next_batch(), None))
        self.model: CNF = trainer.model
        self.phases = phases
        self.budget = budget
        self.generator = torch.Generator().manual_seed(seed + 5)
        self.train_seconds = 0.0
        self.iteration = 0
        self.nfe: list[int] = []
        self.phase_index = -1
        self._enter_next_phase()

    @property
    def field(self) -> nn.Module:
        return self.model.field

    def _enter_next_phase(self) -> None:
        self.phase_index += 1
        phase = self.phases[self.phase_index]
        options = dict(phase.options)
        if phase.teacher:
            options["teacher"] = self.model
        self.objective = get_registry().create("objective", phase.objective, **options)
        self.phase_start = self.train_seconds
        self.phase_end = phase.until * self.budget
        if phase.lr is None:
            self.optimizer = self.trainer.optimizer
            self.scheduler: Any = self.trainer.scheduler
        else:
            self.optimizer = torch.optim.Adam(
                self.model.parameters(), lr=phase.lr, weight_decay=self.trainer.config.weight_decay
            )
            self.scheduler = None

    def _set_time_cosine_lr(self) -> None:
        peak = self.phases[self.phase_index].lr
        assert peak is not None
        span = max(self.phase_end - self.phase_start, 1e-9)
        progress = min(1.0, (self.train_seconds - self.phase_start) / span)
        for group in self.optimizer.param_groups:
            group["lr"] = peak * 0.5 * (1.0 + math.cos(math.pi * progress))

    def _step_nfe(self) -> int:
        teacher = getattr(self.objective, "teacher", None)
        if isinstance(teacher, CNF):
            stats = teacher.last_stats
            return 1 + (stats.nfe if stats is not None else 0)
        if self.objective.simulation_free:
            return 1
        stats = self.model.last_stats
        return 0 if stats is None else stats.nfe + (stats.backward_nfe or 0)

    def step(self) -> None:
        """One optimisation step of the current phase (moving on when its time is up)."""
        if self.train_seconds >= self.phase_end and self.phase_index + 1 < len(self.phases):
            self._enter_next_phase()
        start = time.perf_counter()
        self.model.train()
        batch, context = self.batches()
        if self.scheduler is None:
            self._set_time_cosine_lr()
        self.optimizer.zero_grad(set_to_none=True)
        result = self.objective.loss(self.model, batch, context=context, generator=self.generator)
        if not bool(torch.isfinite(result.loss)):
            raise RuntimeError(
                f"{self.phases[self.phase_index].objective}: the loss became "
                f"{float(result.loss)} at iteration {self.iteration}; lower the learning rate."
            )
        result.loss.backward()
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.train_seconds += time.perf_counter() - start
        self.iteration += 1
        self.nfe.append(self._step_nfe())
