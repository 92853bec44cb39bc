"""Resuming a training run: which settings may change, and what a checkpoint holds.

A resumed run must be the run that was started: the same data, model,
optimiser and random streams. Only the settings in :data:`RESUMABLE_OPTIONS`
(how long to train, where and how to report) may differ; both the
``flowkit train --resume`` command line and :class:`~flowkit.train.Trainer`
read this one list.

:class:`CheckpointedRun` is the part of the trainer that writes its state to
``checkpoint.pt`` and restores it: the weights, the optimiser and schedule,
the early-stopping record and every random stream (global torch, CUDA, the
batch sampler's, STEER's, dequantisation's), which is what makes a resumed
run reproduce the uninterrupted one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from flowkit.data import BatchSampler
from flowkit.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from flowkit.train.config import ConfigError, TrainConfig
from flowkit.train.distributed import DistContext
from flowkit.train.rundir import CHECKPOINT_NAME

__all__ = ["RESUMABLE_OPTIONS", "CheckpointedRun", "check_resumable"]

RESUMABLE_OPTIONS: tuple[str, ...] = (
    "iterations",
    "time_budget",
    "progress",
    "plots",
    "tensorboard",
    "checkpoint_every",
    "out_dir",
    "threads",
    "device",
)
"""Configuration keys that may differ between a run and its resumption.

``out_dir`` may differ because a run directory can be moved; on the command
line the directory is the one given to ``--resume``.
"""


def check_resumable(saved: Mapping[str, Any], current: Mapping[str, Any], run_dir: Path) -> None:
    """Refuse to resume the run in ``run_dir`` (configuration ``saved``) with ``current``.

    Raises:
        ConfigError: naming every key outside :data:`RESUMABLE_OPTIONS` whose
            value differs, with both values.
    """
    changed = sorted(
        k for k in saved if saved.get(k) != current.get(k) and k not in RESUMABLE_OPTIONS
    )
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed)
        raise ConfigError(
            f"Cannot resume {run_dir} with a different configuration ({detail}); "
            "only iterations, time_budget and output options may change."
        )


class CheckpointedRun:
    """Writing and restoring a trainer's state (mixed into :class:`~flowkit.train.Trainer`).

    The trainer provides the attributes annotated below; :meth:`save` writes
    :meth:`checkpoint_state` atomically and :meth:`_resume` restores it.
    """

    config: TrainConfig
    ctx: DistContext
    device: torch.device
    run_dir: Path
    write: bool
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    sampler: BatchSampler
    steer_generator: torch.Generator
    dequant_generator: torch.Generator
    objective_generator: torch.Generator
    stage_index: int
    teacher_state: dict[str, Tensor] | None
    iteration: int
    train_seconds: float
    best_val_nll: float | None
    best_iteration: int | None
    bad_validations: int
    best_state: dict[str, Tensor] | None
    last_loss: float

    def _rng_states(self) -> dict[str, Any]:
        torch_state = torch.get_rng_state()
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        if self.ctx.distributed:
            gathered: list[Any] = [None] * self.ctx.world_size
            dist.all_gather_object(gathered, (torch_state, cuda))
            torch_states = [g[0] for g in gathered]
            cuda_states = [g[1] for g in gathered]
        else:
            torch_states, cuda_states = [torch_state], [cuda]
        return {
            "torch": torch_states,
            "cuda": cuda_states,
            "sampler": self.sampler.state_dict(),
            "steer": self.steer_generator.get_state(),
            "dequant": self.dequant_generator.get_state(),
            "objective": self.objective_generator.get_state(),
        }

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything a resumed run needs, as tensors and plain values."""
        return {
            "config": json.dumps(self.config.to_dict(), sort_keys=True),
            "iteration": self.iteration,
            "train_seconds": self.train_seconds,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "best_val_nll": self.best_val_nll,
            "best_iteration": self.best_iteration,
            "bad_validations": self.bad_validations,
            "best_model": self.best_state,
            "last_loss": self.last_loss,
            "world_size": self.ctx.world_size,
            "rng": self._rng_states(),
            "dim": int(getattr(self.model, "dim", 0)),
            "stage": self.stage_index + 1,
            "teacher": self.teacher_state,
        }

    def save(self) -> Path | None:
        """Write ``checkpoint.pt`` atomically (every rank joins; the main one writes)."""
        state = self.checkpoint_state()
        if not self.write:
            return None
        return save_checkpoint(state, self.run_dir / CHECKPOINT_NAME)

    def _resume(self) -> None:
        """Restore the state of ``run_dir/checkpoint.pt`` (see :func:`check_resumable`)."""
        state = load_checkpoint(self.run_dir / CHECKPOINT_NAME, map_location=self.device)
        saved = json.loads(state["config"])
        current = json.loads(json.dumps(self.config.to_dict()))
        check_resumable(saved, current, self.run_dir)
        if state.get("world_size", 1) != self.ctx.world_size:
            raise ConfigError(
                f"The run was checkpointed with {state.get('world_size')} process(es); resume "
                f"it with --nproc {state.get('world_size')}."
            )
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(
                f"{self.run_dir / CHECKPOINT_NAME} does not fit this model: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        self.iteration = int(state["iteration"])
        self.train_seconds = float(state["train_seconds"])
        self.best_val_nll = state["best_val_nll"]
        self.best_iteration = state["best_iteration"]
        self.bad_validations = int(state["bad_validations"])
        self.best_state = state["best_model"]
        self.last_loss = float(state["last_loss"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"][self.ctx.rank].cpu())
        cuda = rng["cuda"][self.ctx.rank]
        if cuda is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(cuda.cpu(), self.device)
        self.sampler.load_state_dict({k: v.cpu() for k, v in rng["sampler"].items()})
        self.steer_generator.set_state(rng["steer"].cpu())
        self.dequant_generator.set_state(rng["dequant"].cpu())
        if "objective" in rng:  # checkpoints from before objectives lack it
            self.objective_generator.set_state(rng["objective"].cpu())
        self.teacher_state = state.get("teacher")
