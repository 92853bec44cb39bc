"""The outcome of a training run, as :meth:`~flowkit.train.Trainer.fit` returns it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["TrainResult"]


@dataclass
class TrainResult:
    """The outcome of :meth:`~flowkit.train.Trainer.fit` (also written to ``results.json``).

    Attributes:
        run_dir: where logs, checkpoints and plots are.
        iterations: iterations completed.
        stop_reason: ``"iterations"``, ``"time_budget"`` or ``"early_stopping"``.
        train_seconds: wall time spent in training steps (evaluation excluded).
        best_val_nll: the best validation NLL (model space, nats), if validated.
        best_iteration: the iteration of the best validation NLL.
        test_nll: test NLL of the returned model (model space, nats per sample).
        test_nll_data: the same in the data's own units.
        test_bits_per_dim: bits per dimension for quantised data (digits).
        final_loss: the last training loss.
        conditional: whether the run was trained with ``context`` (class labels);
            its validation and test NLLs are then conditional, ``-log p(x | label)``.
    """

    run_dir: str
    iterations: int
    stop_reason: str
    train_seconds: float
    best_val_nll: float | None
    best_iteration: int | None
    test_nll: float
    test_nll_data: float
    test_bits_per_dim: float | None
    final_loss: float
    conditional: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
