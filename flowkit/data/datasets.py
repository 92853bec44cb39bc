"""Data sets for training: toy densities, scikit-learn's digits, user files; seeded splits.

:func:`load_dataset` turns a name (or a file path) into a :class:`DataSplits`
of training, validation and test tensors in *model space*, together with what
is needed to report a likelihood in the data's own units (``nll_offset``) and,
for images, bits per dimension. With ``labels=True`` the splits carry class
labels too (the toy densities' mixture parts, the digits' 0-9), and
:func:`one_hot` turns labels into the context of a conditional CNF.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from flowkit.data.files import SUPPORTED_SUFFIXES, load_array
from flowkit.data.toy import TOY_CLASSES, TOY_DATASETS, sample_toy
from flowkit.errors import FlowkitError, InvalidInputError

__all__ = [
    "BUILTIN_DATASETS",
    "DIGITS_LEVELS",
    "DIGITS_SCALE",
    "DataSplits",
    "MissingDataDependencyError",
    "load_dataset",
    "one_hot",
]

DIGITS_LEVELS = 17
"""Grey levels of scikit-learn's digits (pixel values 0..16)."""

DIGITS_SCALE = 4.0
"""Dequantised digits ``(k + u) / 17`` in (0, 1) are mapped to ``4 * (v - 1/2)`` in (-2, 2)."""

BUILTIN_DATASETS: tuple[str, ...] = (*TOY_DATASETS, "digits")
"""Every built-in data set name."""


def one_hot(labels: Tensor, n_classes: int, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """Class labels as one-hot rows, the context of a conditional CNF.

    Arguments:
        labels: integer class indices, shape ``(batch,)``.
        n_classes: the number of classes (the context's width).
        dtype: of the returned context (the model's dtype).

    Returns:
        A tensor of shape ``(batch, n_classes)`` on ``labels``' device.

    Raises:
        InvalidInputError: for labels that are not a 1-D integer tensor, a
            non-positive ``n_classes``, or a label outside ``[0, n_classes)``.
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
        raise InvalidInputError(f"n_classes must be a positive integer, got {n_classes!r}.")
    if not isinstance(labels, Tensor) or labels.dim() != 1:
        got = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise InvalidInputError(f"labels must be a 1-D tensor of class indices, got {got}.")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise InvalidInputError(
            f"labels must be integer class indices, got dtype {labels.dtype}; "
            "convert with labels.long()."
        )
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise InvalidInputError(
            f"labels must lie in [0, {n_classes}), got values from {int(labels.min())} "
            f"to {int(labels.max())}; pass the right n_classes."
        )
    return torch.nn.functional.one_hot(labels.long(), n_classes).to(dtype)


class MissingDataDependencyError(FlowkitError, ImportError):
    """A built-in data set whose package is not installed (the message says what to install)."""


@dataclass
class DataSplits:
    """Training, validation and test samples in model space.

    Attributes:
        name: the data set's name (or the file it came from).
        train, val, test: tensors of shape ``(n, dim)``.
        nll_offset: nats to add to a model-space negative log-likelihood (per
            sample) to get it in the data's own units: the log-determinant of
            the preprocessing (standardisation, scaling of dequantised pixels).
        image_shape: the shape of one image for image data (``(8, 8)`` for
            digits), else ``None``.
        levels: grey levels of quantised data (training batches are then
            dequantised afresh with uniform noise), else ``None``.
        train_levels: the integer pixel values of the training split when
            ``levels`` is set.
        mean, std: the standardisation applied to user data (model = (x - mean) / std).
        train_labels, val_labels, test_labels: int64 class labels of the splits,
            shape ``(n,)``, when loaded with ``labels=True``, else ``None``.
        n_classes: the number of classes when labels are loaded, else ``None``.
    """

    name: str
    train: Tensor
    val: Tensor
    test: Tensor
    nll_offset: float = 0.0
    image_shape: tuple[int, ...] | None = None
    levels: int | None = None
    train_levels: Tensor | None = None
    mean: Tensor | None = None
    std: Tensor | None = None
    extra: dict[str, float] = field(default_factory=dict)
    train_labels: Tensor | None = None
    val_labels: Tensor | None = None
    test_labels: Tensor | None = None
    n_classes: int | None = None

    @property
    def dim(self) -> int:
        """The number of features."""
        return int(self.train.shape[1])

    def train_batch(self, indices: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The training samples at ``indices``; quantised data are dequantised afresh."""
        if self.levels is None or self.train_levels is None:
            return self.train[indices]
        raw = self.train_levels[indices]
        noise = torch.rand(raw.shape, generator=generator, dtype=torch.float64)
        return _digits_to_model(raw.double() + noise, self.levels).to(self.train)

    def nll_in_data_units(self, nll: float) -> float:
        """A model-space NLL (nats per sample) in the data's own units."""
        return nll + self.nll_offset

    def bits_per_dim(self, nll: float) -> float | None:
        """Bits per dimension of quantised data for a model-space NLL (else ``None``)."""
        if self.levels is None:
            return None
        return self.nll_in_data_units(nll) / (self.dim * math.log(2.0))

    def to_data_space(self, x: Tensor) -> Tensor:
        """Map model-space samples back to the data's units (pixel values for images)."""
        if self.levels is not None:
            return ((x / DIGITS_SCALE + 0.5) * self.levels).clamp(0, self.levels)
        if self.mean is not None and self.std is not None:
            return x * self.std.to(x) + self.mean.to(x)
        return x


_LABEL_ATTRS = ("train_labels", "val_labels", "test_labels")


def _digits_to_model(dequantised: Tensor, levels: int) -> Tensor:
    return DIGITS_SCALE * (dequantised / levels - 0.5)


def _split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    for label, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < frac < 1.0:
            raise InvalidInputError(f"{label} must lie in (0, 1), got {frac}.")
    if val_fraction + test_fraction >= 1.0:
        raise InvalidInputError(
            f"val_fraction + test_fraction = {val_fraction + test_fraction} leaves no training "
            "data; make them smaller."
        )
    n_val = max(1, round(n * val_fraction))
    n_test = max(1, round(n * test_fraction))
    return n - n_val - n_test, n_val, n_test


def _split(
    values: Tensor, seed: int, val_fraction: float, test_fraction: float
) -> tuple[Tensor, Tensor, Tensor]:
    n_train, n_val, _ = _split_sizes(len(values), val_fraction, test_fraction)
    perm = torch.randperm(len(values), generator=torch.Generator().manual_seed(seed))
    shuffled = values[perm]
    return shuffled[:n_train], shuffled[n_train : n_train + n_val], shuffled[n_train + n_val :]


def _standardize(
    source: str, train: Tensor, val: Tensor, test: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, float]:
    """Scale each feature to zero mean and unit variance using the training split.

    Computed on values divided by each column's largest magnitude first, so
    that data near the float64 range (whose variance would overflow) are
    standardised exactly too. Returns the three splits, the mean and standard
    deviation (in the data's units, possibly Inf for the latter when it exceeds
    the float64 range) and the log-determinant ``sum(log std)``.

    Raises:
        InvalidInputError: a feature that is constant in the training split.
    """
    scale = train.abs().amax(0).clamp_min(torch.finfo(torch.float64).tiny)
    scaled_mean = (train / scale).mean(0)
    scaled_std = (train / scale).std(0) if len(train) > 1 else torch.ones_like(scale)
    if bool((scaled_std == 0).any()):
        cols = torch.nonzero(scaled_std == 0).flatten().tolist()
        raise InvalidInputError(
            f"{source}: feature(s) {cols} are constant in the training split, so the "
            "data have no density there; drop those columns."
        )
    splits = tuple(((s / scale) - scaled_mean) / scaled_std for s in (train, val, test))
    offset = float((torch.log(scaled_std) + torch.log(scale)).sum())
    return (*splits, scaled_mean * scale, scaled_std * scale, offset)  # type: ignore[return-value]


def _check_range(
    source: str, splits: tuple[Tensor, ...], dtype: torch.dtype, standardized: bool
) -> None:
    """Refuse values that do not fit ``dtype`` (they would become Inf)."""
    largest = max(float(s.abs().max()) for s in splits if len(s))
    limit = torch.finfo(dtype).max
    if largest > limit:
        fix = "rescale the data" if standardized else "standardise them (--standardize)"
        raise InvalidInputError(
            f"{source}: values up to {largest:.3g} do not fit {str(dtype).removeprefix('torch.')} "
            f"(largest {limit:.3g}); {fix} or use --dtype float64."
        )


def _load_digits(
    seed: int, val_fraction: float, test_fraction: float, dtype: torch.dtype, labels: bool
) -> DataSplits:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDataDependencyError(
            "The 'digits' data set ships with scikit-learn; install it with "
            "`pip install scikit-learn` (or `pip install flowkit[data]`)."
        ) from exc
    bunch = load_digits()
    pixels = torch.from_numpy(bunch.data.astype(np.float64))  # (1797, 64), 0..16
    train, val, test = _split(pixels, seed, val_fraction, test_fraction)
    # the labels split with the same seed, hence the same permutation as the pixels
    classes = torch.from_numpy(bunch.target.astype(np.int64))
    split_labels = _split(classes, seed, val_fraction, test_fraction)
    g = torch.Generator().manual_seed(seed + 1)

    def fixed(raw: Tensor) -> Tensor:  # held-out splits: dequantised once, reproducibly
        noise = torch.rand(raw.shape, generator=g, dtype=torch.float64)
        return _digits_to_model(raw + noise, DIGITS_LEVELS).to(dtype)

    dim = pixels.shape[1]
    train_labels, val_labels, test_labels = split_labels if labels else (None, None, None)
    return DataSplits(
        name="digits",
        train=fixed(train),
        val=fixed(val),
        test=fixed(test),
        # model y = s (z / L - 1/2) for z = k + u, so -log p(z) = -log p(y) - d log(s / L)
        nll_offset=-dim * math.log(DIGITS_SCALE / DIGITS_LEVELS),
        image_shape=(8, 8),
        levels=DIGITS_LEVELS,
        train_levels=train,
        train_labels=train_labels,
        val_labels=val_labels,
        test_labels=test_labels,
        n_classes=10 if labels else None,
    )


def load_dataset(
    name: str | Path,
    *,
    seed: int = 0,
    n_train: int = 50_000,
    n_val: int = 2_000,
    n_test: int = 5_000,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    standardize: bool = True,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    labels: bool = False,
) -> DataSplits:
    """Load or generate a data set and split it with a seed.

    Arguments:
        name: a toy density (``8gaussians``, ``pinwheel``, ``moons``, ``circles``,
            ``rings``, ``swissroll``, ``2spirals``, ``checkerboard``), ``digits``,
            or the path of a ``.npy``/``.csv`` file of shape ``(samples, features)``.
        seed: fixes the generated points and the splits.
        n_train, n_val, n_test: split sizes for the toy densities (fresh draws).
        val_fraction, test_fraction: split fractions for digits and files.
        standardize: for files, scale each feature to zero mean and unit
            variance using the training split (``nll_offset`` records the
            log-determinant so NLLs are reported in the file's units).
        dtype, device: of the returned tensors.
        labels: also load class labels (``train_labels`` etc. and ``n_classes``):
            the mixture part for the labelled toy densities (see
            :mod:`flowkit.data.toy`), the digit 0-9 for ``digits``; the points
            are the same as without.

    Returns:
        The :class:`DataSplits`.

    Raises:
        InvalidInputError: bad file contents (see :func:`~flowkit.data.files.load_array`),
            or an unknown name that is not a file, or ``labels`` for a data
            set without labels (files, ``swissroll``).
            Also non-positive sizes or fractions outside (0, 1) (it derives from
            ValueError).
    """
    key = str(name)
    if labels and key not in TOY_CLASSES and key != "digits":
        labelled = ", ".join((*TOY_CLASSES, "digits"))
        raise InvalidInputError(
            f"The data set {key!r} has no class labels; labelled ones: {labelled}."
        )
    if key in TOY_DATASETS:
        sizes = {"n_train": n_train, "n_val": n_val, "n_test": n_test}
        for label, size in sizes.items():
            if size <= 0:
                raise InvalidInputError(f"{label} must be positive, got {size}.")
        drawn = sample_toy(key, n_train + n_val + n_test, seed=seed, dtype=dtype, labels=labels)
        points, classes = drawn if isinstance(drawn, tuple) else (drawn, None)
        splits = DataSplits(
            key,
            points[:n_train],
            points[n_train : n_train + n_val],
            points[n_train + n_val :],
        )
        if classes is not None:
            splits.train_labels = classes[:n_train]
            splits.val_labels = classes[n_train : n_train + n_val]
            splits.test_labels = classes[n_train + n_val :]
            splits.n_classes = TOY_CLASSES[key]
    elif key == "digits":
        splits = _load_digits(seed, val_fraction, test_fraction, dtype, labels)
    elif Path(key).suffix.lower() in SUPPORTED_SUFFIXES:
        values = torch.from_numpy(load_array(key, min_samples=3))
        train, val, test = _split(values, seed, val_fraction, test_fraction)
        mean = std = None
        offset = 0.0
        if standardize:
            train, val, test, mean, std, offset = _standardize(key, train, val, test)
        _check_range(key, (train, val, test), dtype, standardize)
        splits = DataSplits(
            key,
            train.to(dtype),
            val.to(dtype),
            test.to(dtype),
            nll_offset=offset,
            mean=mean,
            std=std,
        )
    else:
        raise InvalidInputError(
            f"Unknown data set {key!r}: not a built-in name ({', '.join(BUILTIN_DATASETS)}) "
            f"and not a {' or '.join(SUPPORTED_SUFFIXES)} file path."
        )
    if device is not None:
        for attr in ("train", "val", "test", "train_levels", *_LABEL_ATTRS):
            value = getattr(splits, attr)
            if value is not None:
                setattr(splits, attr, value.to(device))
    return splits
