"""Training checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is a dictionary of tensors and plain values (no pickled
objects), so loading it never runs code. It holds the model, the optimiser and
schedule, the early-stopping state, the configuration (as JSON) and every
random state that decides what happens next (torch's global generator, the
sampler's, the probes', STEER's), which is what makes a resumed run reproduce
the uninterrupted one.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from flowkit.errors import FlowkitError

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "load_checkpoint",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "flowkit-train-checkpoint"
"""The marker every flowkit training checkpoint carries under the key ``format``."""

CHECKPOINT_VERSION = 1
"""The layout version; bumped when the layout changes incompatibly."""

_REQUIRED = ("format", "version", "config", "iteration", "model", "optimizer", "rng")


class CheckpointError(FlowkitError):
    """A checkpoint that is missing, corrupt, or not a flowkit training checkpoint."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` atomically: to a temporary file in the same folder, then ``os.replace``.

    A run killed while writing leaves the previous checkpoint intact.

    Arguments:
        state: tensors and plain values only; ``format`` and ``version`` are added.
        path: the checkpoint file.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, *, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Arguments:
        path: the checkpoint file.
        map_location: where to put its tensors.

    Returns:
        The checkpoint dictionary.

    Raises:
        CheckpointError: a missing or truncated file, a file that needs
            arbitrary code to load (not written by flowkit), or one without
            flowkit's format marker or of another layout version.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"No checkpoint at {path}; pass the run directory of a run that "
            "wrote one (checkpoints are written every --checkpoint-every)."
        )
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        raise CheckpointError(
            f"{path} is not a flowkit training checkpoint, or it is corrupt or truncated: it "
            "is not an archive written by torch.save; resume from an intact checkpoint "
            "written by `flowkit train`, or start a new run."
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path} is not a flowkit training checkpoint: it holds objects that only "
            f"unsafe unpickling could load ({str(exc).splitlines()[0]}). flowkit never loads "
            "such files; use a checkpoint written by `flowkit train`."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path} is corrupt or truncated and cannot be read ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); resume from an intact "
            "checkpoint or start a new run."
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a flowkit training checkpoint (no {CHECKPOINT_FORMAT!r} marker); "
            "it may be a plain state_dict or another program's file."
        )
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint layout version {state.get('version')!r}, but this flowkit "
            f"reads version {CHECKPOINT_VERSION}; resume it with the flowkit that wrote it."
        )
    missing = [key for key in _REQUIRED if key not in state]
    if missing:
        raise CheckpointError(f"{path} is incomplete: missing {', '.join(missing)}.")
    return state
