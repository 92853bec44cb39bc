"""The data of a training run: checked splits, the next batch and its context, a rank's share.

:class:`BatchedRun` is the part of :class:`~flowkit.train.Trainer` that
serves data: it checks the splits before any training, draws the next global
batch (dequantised on its own random stream, the same on every rank), gives
a split's context for a conditional run (one-hot labels, see
:mod:`flowkit.train.context`) and cuts a rank's share of a global batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowkit.data import BatchSampler, DataSplits
from flowkit.errors import InvalidInputError
from flowkit.train.config import TrainConfig
from flowkit.train.context import label_context
from flowkit.train.distributed import DistContext

__all__ = ["BatchedRun"]


class BatchedRun:
    """Batches of the training data (mixed into :class:`~flowkit.train.Trainer`).

    The trainer provides the attributes annotated below.
    """

    config: TrainConfig
    ctx: DistContext
    data: DataSplits
    sampler: BatchSampler
    dequant_generator: torch.Generator

    def _check_data(self) -> None:
        """Refuse empty, badly shaped or non-finite splits and a batch far larger than the data.

        Raises:
            InvalidInputError: naming the split and what is wrong with it.
        """
        for split in ("train", "val", "test"):
            x = getattr(self.data, split)
            if x.dim() != 2 or len(x) == 0:
                raise InvalidInputError(
                    f"The {split} split has shape {tuple(x.shape)}; expected (samples, features) "
                    "with at least one sample."
                )
            if not bool(torch.isfinite(x).all()):
                raise InvalidInputError(f"The {split} split holds NaN or Inf values.")
        if self.config.batch_size > len(self.data.train) * 10:
            raise InvalidInputError(
                f"batch_size={self.config.batch_size} is over ten times the {len(self.data.train)} "
                "training samples; lower --batch-size or provide more data."
            )

    def next_batch(self) -> Tensor:
        """The next global training batch (every rank draws the same one)."""
        return self.next_batch_and_context()[0]

    def next_batch_and_context(self) -> tuple[Tensor, Tensor | None]:
        """The next global training batch and its context (one-hot labels; ``None``
        for an unconditional run)."""
        idx = self.sampler.next_indices().to(self.data.train.device)
        x = self.data.train_batch(idx, self.dequant_generator)
        return x, self.split_context("train", x, idx)

    def split_context(self, split: str, x: Tensor, index: Tensor | None = None) -> Tensor | None:
        """The context of ``split``'s rows ``index`` (all rows when ``None``), like ``x``.

        ``None`` for an unconditional run.
        """
        labels = getattr(self.data, f"{split}_labels")
        if not self.config.context or labels is None or self.data.n_classes is None:
            return None
        if index is not None:
            labels = labels[index.to(labels.device)]
        return label_context(labels, self.data.n_classes, x)

    def local_share(self, x: Tensor) -> Tensor:
        """This rank's contiguous, equal share of a global batch."""
        return x.chunk(self.ctx.world_size)[self.ctx.rank] if self.ctx.distributed else x
