"""Metrics logs: CSV or JSON lines, and TensorBoard when it is installed.

One row per logged iteration with fixed columns. On resume the rows written
after the checkpoint's iteration are dropped, so the log of a resumed run
reads exactly like that of an uninterrupted one.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Literal

from flowkit.train.config import ConfigError

__all__ = ["MetricsLogger", "tensorboard_available"]


def tensorboard_available() -> bool:
    """Whether ``torch.utils.tensorboard`` can be used (the tensorboard package is installed)."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLogger:
    """Appends metric rows to ``metrics.csv`` or ``metrics.jsonl`` in a run directory.

    Arguments:
        run_dir: the run directory.
        columns: the column names, in order (CSV needs them fixed).
        log_format: ``"csv"`` or ``"jsonl"``.
        tensorboard: also write TensorBoard scalars (requires tensorboard).
        resume_from: when resuming, drop rows with ``iteration`` above this.

    Raises:
        ConfigError: for another format, or TensorBoard requested but not installed.
    """

    def __init__(
        self,
        run_dir: str | Path,
        columns: list[str],
        *,
        log_format: Literal["csv", "jsonl"] = "csv",
        tensorboard: bool = False,
        resume_from: int | None = None,
    ) -> None:
        if log_format not in ("csv", "jsonl"):
            raise ConfigError(f"log_format must be 'csv' or 'jsonl', got {log_format!r}.")
        self.columns = list(columns)
        self.format = log_format
        self.path = Path(run_dir) / f"metrics.{log_format}"
        rows = self._read() if resume_from is not None and self.path.exists() else []
        rows = [r for r in rows if resume_from is not None and int(r["iteration"]) <= resume_from]
        with self.path.open("w", newline="") as handle:
            if log_format == "csv":
                writer = csv.DictWriter(handle, fieldnames=self.columns)
                writer.writeheader()
                writer.writerows(rows)
            else:
                for row in rows:
                    handle.write(json.dumps(row) + "\n")
        self._writer = None
        if tensorboard:
            if not tensorboard_available():
                raise ConfigError(
                    "--tensorboard needs the tensorboard package: `pip install tensorboard`, "
                    "or drop --tensorboard."
                )
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def _read(self) -> list[dict[str, Any]]:
        with self.path.open(newline="") as handle:
            if self.format == "csv":
                return list(csv.DictReader(handle))
            return [json.loads(line) for line in handle if line.strip()]

    def log(self, row: dict[str, Any]) -> None:
        """Append one row (missing columns are left empty; unknown keys raise ``KeyError``)."""
        unknown = set(row) - set(self.columns)
        if unknown:
            raise KeyError(f"Unknown metric column(s) {sorted(unknown)}; known: {self.columns}.")
        with self.path.open("a", newline="") as handle:
            if self.format == "csv":
                csv.DictWriter(handle, fieldnames=self.columns).writerow(
                    {k: ("" if v is None else v) for k, v in row.items()}
                )
            else:
                handle.write(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n")
        if self._writer is not None:
            step = int(row["iteration"])
            for key, value in row.items():
                if key != "iteration" and isinstance(value, (int, float)) and value is not None:
                    self._writer.add_scalar(key, value, step)

    def close(self) -> None:
        """Flush and close TensorBoard (the files are closed after each row)."""
        if self._writer is not None:
            self._writer.close()
