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


_DELIMITERS = (",", ";", "\t", "|")
"""The column separators a CSV file may use (detected from its lines)."""


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _detect_delimiter(path: Path, lines: list[str]) -> str | None:
    """The separator that splits every line into the same number (> 1) of cells.

    ``None`` means one column (no separator appears). A separator that splits
    the lines into different numbers of cells, or two that both fit, are
    errors rather than guesses.
    """
    consistent = []
    for delimiter in _DELIMITERS:
        counts = {len(next(csv.reader([line], delimiter=delimiter))) for line in lines}
        if len(counts) == 1 and counts != {1}:
            consistent.append(delimiter)
    if len(consistent) == 1:
        return consistent[0]
    if consistent:
        raise InvalidInputError(
            f"{path}: cannot tell the column separator: each of "
            f"{', '.join(repr(d) for d in consistent)} splits every line consistently; write "
            "the file with commas between columns and '.' as the decimal point."
        )
    used = [d for d in _DELIMITERS if any(d in line for line in lines)]
    if not used:
        return None
    raise InvalidInputError(
        f"{path}: {' or '.join(repr(d) for d in used)} splits the lines into different "
        "numbers of columns; every row must hold one sample with the same number of features."
    )


def _read_csv(path: Path) -> np.ndarray:
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise InvalidInputError(
            f"{path}: not a text file; a .csv file must hold numbers as text, one sample "
            "per line (save a binary array with numpy.save as .npy)."
        ) from None
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise InvalidInputError(f"{path}: the file holds no rows.")
    delimiter = _detect_delimiter(path, [line for _, line in lines])
    rows = [
        (n, [c.strip() for c in next(csv.reader([line], delimiter=delimiter or ","))])
        if delimiter
        else (n, [line.strip()])
        for n, line in lines
    ]
    first_line, first = rows[0]
    if not any(_is_number(c) for c in first):
        rows = rows[1:]  # a header: every cell is a label
        if not rows:
            raise InvalidInputError(f"{path}: the file holds a header but no data rows.")
    widths = {len(r) for _, r in rows}
    if len(widths) != 1:
        raise InvalidInputError(
            f"{path}: rows have different numbers of columns ({sorted(widths)}); "
            "every row must hold one sample with the same number of features."
        )
    out = np.empty((len(rows), widths.pop()), dtype=np.float64)
    for i, (line_no, row) in enumerate(rows):
        for j, cell in enumerate(row):
            try:
                out[i, j] = float(cell)
            except ValueError:
                hint = ""
                if line_no == first_line:
                    hint = " (a header line must hold labels only)"
                elif "," in cell and _is_number(cell.replace(",", ".")):
                    hint = "; write '.' as the decimal point"
                raise InvalidInputError(
                    f"{path}: line {line_no}, column {j + 1} holds {cell!r}, which is not a "
                    f"number{hint}."
                ) from None
    return out


_NPY_MAGIC = b"\x93NUMPY"


def _read_npy(path: Path) -> np.ndarray:
    with path.open("rb") as handle:
        magic = handle.read(len(_NPY_MAGIC))
    if magic != _NPY_MAGIC:
        raise InvalidInputError(
            f"{path}: not a .npy file (it lacks numpy's header); save the array with "
            "numpy.save, or give a text file of numbers the suffix .csv."
        )
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise InvalidInputError(
                f"{path}: the array holds Python objects, not numbers; flowkit never loads "
                "pickled data. Save a numeric array, e.g. numpy.save(path, array.astype(float))."
            ) from None
        raise InvalidInputError(
            f"{path}: a corrupt or truncated .npy file ({exc}); save it again with numpy.save."
        ) from None
    except (OSError, EOFError) as exc:
        raise InvalidInputError(
            f"{path}: a corrupt or truncated .npy file ({exc}); save it again with numpy.save."
        ) from None


def load_array(path: str | Path, *, min_samples: int = 1) -> np.ndarray:
    """Read and validate a ``(samples, features)`` array from ``.npy`` or ``.csv``.

    A CSV file may start with one header line (labels only; a first line
    holding numbers is data, never dropped). Its column separator is detected
    (comma, semicolon, tab or ``|``); a file where none fits consistently is
    refused. NaN written as ``nan`` is read and then rejected.

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
    if path.is_dir():
        raise InvalidInputError(f"{path}: a directory, not a file; give the data file's path.")
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such file.")
    if path.stat().st_size == 0:
        raise InvalidInputError(f"{path}: the file is empty.")
    try:
        array = _read_npy(path) if path.suffix.lower() == ".npy" else _read_csv(path)
    except PermissionError:
        raise InvalidInputError(f"{path}: permission denied; make the file readable.") from None
    return check_array(array, source=str(path), min_samples=min_samples)
