"""A seeded mini-batch sampler whose whole state can be saved and restored.

Resuming a training run must reproduce the uninterrupted run, so the sampler
keeps everything that decides the next batch (its generator, the current
epoch's permutation and the position in it) and exposes it as tensors for a
``weights_only`` checkpoint.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["BatchSampler"]


class BatchSampler:
    """Draws index batches from epoch-wise random permutations of ``range(n)``.

    A batch that runs past the end of an epoch continues into the next
    permutation, so every batch has exactly ``batch_size`` indices.

    Arguments:
        n: the number of training samples (positive).
        batch_size: indices per batch (positive).
        seed: seeds the sampler's own CPU generator.

    Raises:
        ValueError: for a non-positive ``n`` or ``batch_size``.
    """

    def __init__(self, n: int, batch_size: int, *, seed: int = 0) -> None:
        if n <= 0:
            raise ValueError(f"The training split is empty (n={n}); provide more samples.")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        self.n = n
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self._perm = torch.randperm(n, generator=self.generator)
        self._pos = 0
        self.epoch = 0

    def next_indices(self) -> Tensor:
        """The indices of the next batch, shape ``(batch_size,)``."""
        parts = []
        need = self.batch_size
        while need > 0:
            if self._pos == self.n:
                self._perm = torch.randperm(self.n, generator=self.generator)
                self._pos = 0
                self.epoch += 1
            take = min(need, self.n - self._pos)
            parts.append(self._perm[self._pos : self._pos + take])
            self._pos += take
            need -= take
        return torch.cat(parts)

    def state_dict(self) -> dict[str, Tensor]:
        """The sampler's state as tensors (for ``torch.load(weights_only=True)``)."""
        return {
            "generator": self.generator.get_state(),
            "perm": self._perm.clone(),
            "pos": torch.tensor(self._pos),
            "epoch": torch.tensor(self.epoch),
            "n": torch.tensor(self.n),
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore a state saved by :meth:`state_dict`.

        Raises:
            ValueError: if the state belongs to a data set of another size.
        """
        if int(state["n"]) != self.n:
            raise ValueError(
                f"The checkpoint's sampler was built for {int(state['n'])} training samples, "
                f"but this data set has {self.n}; resume with the same data options."
            )
        self.generator.set_state(state["generator"])
        self._perm = state["perm"].clone()
        self._pos = int(state["pos"])
        self.epoch = int(state["epoch"])
