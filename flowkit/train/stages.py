"""The stages of a training run: which objective trains which iteration, and its teacher.

:class:`StagedRun` is the part of :class:`~flowkit.train.Trainer` that follows
the configuration's schedule (:meth:`~flowkit.train.config.TrainConfig.stages`;
one stage without a schedule): it finds the stage of an iteration, builds the
stage's objective from the registry as the stage begins, and names the
objectives' metric columns of the log. ``maximum_likelihood`` has no
objective object (the trainer computes it, DistributedDataParallel-aware); a
``rectified_flow`` stage's teacher is a frozen copy of the model as the stage
begins, whose weights a checkpoint keeps (``teacher_state``).
"""

from __future__ import annotations

import copy
from typing import Any

from torch import Tensor, nn

from flowkit.train.config import ConfigError, TrainConfig, is_maximum_likelihood
from flowkit.train.distributed import DistContext

__all__ = ["StagedRun"]


class StagedRun:
    """The schedule of objectives (mixed into :class:`~flowkit.train.Trainer`).

    The trainer provides the attributes annotated below and calls
    :meth:`_plan_stages` before :meth:`_enter_stage`.
    """

    config: TrainConfig
    ctx: DistContext
    model: nn.Module
    stage_plan: list[tuple[str, dict[str, Any], int]]
    stage_index: int
    objective: Any
    teacher_state: dict[str, Tensor] | None

    def _plan_stages(self) -> None:
        """Read the stages of the configuration; no stage is entered yet.

        Raises:
            ConfigError: a distributed run with an objective other than maximum likelihood.
        """
        self.stage_plan = self.config.stages()
        self.stage_index = 0
        self.objective = None
        self.teacher_state = None
        if self.ctx.distributed and any(
            not is_maximum_likelihood(name) for name, _, _ in self.stage_plan
        ):
            raise ConfigError(
                "Only maximum_likelihood trains with several processes; run the other "
                "objectives with --nproc 1."
            )

    def _objective_columns(self) -> list[str]:
        """The log columns of the stages' objectives other than maximum likelihood."""
        from flowkit.registry import get_registry

        names: list[str] = []
        for objective, _, _ in self.stage_plan:
            if is_maximum_likelihood(objective):
                continue
            canonical = get_registry().get("objective", objective).name
            column = {"flow_matching": "fm_loss", "rectified_flow": "rf_loss"}.get(
                canonical, f"{canonical}_loss"
            )
            if column not in names:
                names.append(column)
        return names

    def _stage_of(self, iteration: int) -> int:
        """The index of the stage that trains iteration ``iteration + 1``."""
        end = 0
        for index, (_, _, count) in enumerate(self.stage_plan):
            end += count
            if iteration < end:
                return index
        return len(self.stage_plan) - 1

    @property
    def objective_name(self) -> str:
        """The objective of the current stage, as configured."""
        return self.stage_plan[self.stage_index][0]

    def _enter_stage(self, index: int, *, teacher: dict[str, Tensor] | None = None) -> None:
        """Build the objective of stage ``index``.

        A ``rectified_flow`` stage's teacher is a frozen copy of the model as it
        enters the stage (``teacher``: the weights saved by a checkpoint).

        Raises:
            ConfigError: an objective that takes no context in a conditional run,
                or objective options the objective refuses.
        """
        from flowkit.registry import get_registry

        self.stage_index = index
        name, options, _ = self.stage_plan[index]
        self.teacher_state = None
        if is_maximum_likelihood(name):
            self.objective = None  # compute_loss: the trainer's own numbers, DDP-aware
            return
        spec = get_registry().get("objective", name)
        if self.config.context and not spec.capabilities.get("accepts_context", False):
            raise ConfigError(
                f"The objective {name!r} takes no context, so it cannot train a --context "
                "run; use maximum_likelihood, flow_matching or rectified_flow."
            )
        if spec.name == "rectified_flow":
            frozen = copy.deepcopy(self.model)
            if teacher is not None:
                frozen.load_state_dict(teacher)
            self.teacher_state = copy.deepcopy(frozen.state_dict())
            options = {**options, "teacher": frozen}
        try:
            self.objective = get_registry().create("objective", name, **options)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"Cannot build the objective {name!r} from the configuration: {exc} Fix "
                "objective_options (or the stage's objective_options in the schedule)."
            ) from exc
