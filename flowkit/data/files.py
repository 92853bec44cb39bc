"""Loading a user's data set from a ``.npy`` or ``.csv`` file, with clear errors.

Every check runs before training starts: a missing or empty file, a file that
is not numeric, an array that is not 2-D ``(samples, features)``, NaN or Inf
values, and too few samples each raise
:class:`~flowkit.errors.InvalidInputError` saying what is wrong and how to fix it.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from flowkit.errors import InvalidInputError

__all__ = ["SUPPORTED_SUFFIXES", "check_array", "load_array"]

SUPPORTED_SUFFIXES = (".npy", ".csv")
"""The file types :func:`load_array` reads."""


def check_array(array: np.ndarray, *, source: str = "data", min_samples: int = 1) -> np.ndarray:
    """Validate a data array: numeric, 2-D ``(samples, features)``, finite.

    Arguments:
        array: the array to check.
        source: how to name the data in error messages (e.g. the file path).
        min_samples: the fewest rows accepted.

    Returns:
        The array as float64.

    Raises:
        InvalidInputError: naming the problem and the fix.
    """
    if array.dtype.kind not in "biuf":
        raise InvalidInputError(
            f"{source}: expected numbers, got an array of dtype {array.dtype}; "
            "store the samples as a numeric array."
        )
    if array.ndim != 2:
        raise InvalidInputError(
            f"{source}: expected a 2-D array of shape (samples, features), got shape "
            f"{tuple(array.shape)}; reshape it, e.g. array.reshape(len(array), -1)."
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InvalidInputError(f"{source}: the array is empty (shape {tuple(array.shape)}).")
    values = array.astype(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        shown = ", ".join(str(r) for r in rows[:5]) + (" ..." if len(rows) > 5 else "")
        raise InvalidInputError(
            f"{source}: {int(bad.sum())} NaN or Inf value(s) in {len(rows)} row(s) "
            f"(rows {shown}); remove or impute them before training."
        )
    if values.shape[0] < min_samples:
        raise InvalidInputError(
            f"{source}: {values.shape[0]} sample(s), but at least {min_samples} are needed "
            "to make training, validation and test splits."
        )
    return values


def _read_csv(path: Path) -> np.ndarray:
    with path.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if row and any(c.strip() for c in row)]
    if not rows:
        raise InvalidInputError(f"{path}: the file holds no rows.")
    try:
        [float(c) for c in rows[0]]
    except ValueError:
        rows = rows[1:]  # a header line
    if not rows:
        raise InvalidInputError(f"{path}: the file holds a header but no data rows.")
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise InvalidInputError(
            f"{path}: rows have different numbers of columns ({sorted(widths)}); "
            "every row must hold one sample with the same number of features."
        )
    out = np.empty((len(rows), widths.pop()), dtype=np.float64)
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            try:
                out[i, j] = float(cell)
            except ValueError:
                raise InvalidInputError(
                    f"{path}: row {i + 1}, column {j + 1} holds {cell!r}, which is not a number."
                ) from None
    return out


def load_array(path: str | Path, *, min_samples: int = 1) -> np.ndarray:
    """Read and validate a ``(samples, features)`` array from ``.npy`` or ``.csv``.

    A CSV file may start with one header line; NaN written as ``nan`` is read
    and then rejected.

    Arguments:
        path: the file to read.
        min_samples: the fewest rows accepted.

    Returns:
        A float64 array of shape ``(samples, features)``.

    Raises:
        InvalidInputError: a missing, empty, unreadable or malformed file, or
            values that are not finite.
    """
    path = Path(path)
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise InvalidInputError(
            f"{path}: unsupported file type {path.suffix!r}; use one of "
            f"{', '.join(SUPPORTED_SUFFIXES)}, or a built-in data set name."
        )
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such file.")
    if path.stat().st_size == 0:
        raise InvalidInputError(f"{path}: the file is empty.")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise InvalidInputError(
                f"{path}: not a readable .npy array ({exc}); save it with numpy.save."
            ) from None
    else:
        array = _read_csv(path)
    return check_array(array, source=str(path), min_samples=min_samples)
