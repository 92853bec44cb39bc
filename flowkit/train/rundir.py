"""Run directories: never lose a run, never share one between two writers.

* :func:`check_run_dir` refuses, before any work, a location that is a file,
  cannot be written, or already holds files, unless the run is resumed or an
  overwrite was asked for explicitly.
* :class:`RunLock` is a lock file holding the owner's PID (and host), created
  atomically; a second writer is refused, and a lock whose process is gone is
  taken over, saying so.
* :func:`default_run_dir` names a fresh ``runs/<timestamp>``; the names of
  the files a run writes are constants here.
* :func:`clean_temporaries` removes what a run killed while writing a
  checkpoint left behind; :func:`clear_run` removes a previous run's files
  for ``--overwrite``.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType

from flowkit.errors import FlowkitError

__all__ = [
    "CHECKPOINT_NAME",
    "CONFIG_NAME",
    "LOCK_NAME",
    "RESULTS_NAME",
    "RUN_FILES",
    "RunDirError",
    "RunLock",
    "RunLockedError",
    "check_run_dir",
    "check_writable",
    "clean_temporaries",
    "clear_run",
    "default_run_dir",
]

LOCK_NAME = ".flowkit-train.lock"
"""The lock file of a run directory (holds the writer's PID and host name)."""

CHECKPOINT_NAME = "checkpoint.pt"
"""The run's checkpoint (see :mod:`flowkit.train.checkpoint`)."""

CONFIG_NAME = "config.toml"
"""The run's configuration, as ``--config`` reads it."""

RESULTS_NAME = "results.json"
"""The run's :class:`~flowkit.train.result.TrainResult`."""

RUN_FILES: tuple[str, ...] = (
    CHECKPOINT_NAME,
    CONFIG_NAME,
    RESULTS_NAME,
    "metrics.csv",
    "metrics.jsonl",
    "tensorboard",
    "density.png",
    "samples.png",
    "trajectories.png",
    "data.png",
)
"""What ``flowkit train`` writes into a run directory (``--overwrite`` removes exactly these)."""

_TEMPORARY_GLOB = f".{CHECKPOINT_NAME}.*.tmp"


def default_run_dir(root: str | Path = "runs") -> Path:
    """``runs/<timestamp>`` (a fresh name; a suffix is added if it exists)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(root) / stamp
    n = 1
    while path.exists():
        path = Path(root) / f"{stamp}-{n}"
        n += 1
    return path


class RunDirError(FlowkitError):
    """A run directory that cannot be used: a file, not writable, or holding another run."""


class RunLockedError(RunDirError):
    """Another live process is writing to the run directory."""


def _notify_stderr(message: str) -> None:
    print(f"flowkit: {message}", file=sys.stderr)


def check_writable(path: Path, *, option: str) -> None:
    """Check that ``path`` could be created or written, without creating anything.

    Raises:
        RunDirError: ``path`` is a file, or the nearest existing folder is not writable.
    """
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{option} {path} is a file, not a directory; choose another {option}.")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise RunDirError(f"{option} {path}: {existing} is a file, not a directory.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunDirError(
            f"{option} {path}: cannot write to {existing} (permission denied); choose a "
            f"writable {option}."
        )


def _leftovers(run_dir: Path) -> list[str]:
    if not run_dir.is_dir():
        return []
    return sorted(
        p.name for p in run_dir.iterdir() if p.name != LOCK_NAME and not p.match(_TEMPORARY_GLOB)
    )


def check_run_dir(run_dir: Path, *, resume: bool, overwrite: bool = False) -> None:
    """Refuse a run directory that a new run (or a resumed one) must not use.

    Arguments:
        run_dir: the run directory.
        resume: the run continues the one in ``run_dir`` (which must exist).
        overwrite: a new run may replace the files of a previous one.

    Raises:
        RunDirError: ``run_dir`` is a file or not writable; a new run's
            directory already holds files (without ``overwrite``); a resumed
            run's directory does not exist.
    """
    check_writable(run_dir, option="--out-dir")
    if resume:
        if not run_dir.is_dir():
            raise RunDirError(
                f"--resume {run_dir}: the run directory does not exist; give the directory "
                "of a run that wrote a checkpoint."
            )
        return
    present = _leftovers(run_dir)
    if not present or overwrite:
        return
    shown = ", ".join(present[:4]) + (", ..." if len(present) > 4 else "")
    if any(name in RUN_FILES for name in present):
        raise RunDirError(
            f"{run_dir} already holds a run ({shown}); continue it with "
            f"`flowkit train --resume {run_dir}`, replace it with --overwrite, or choose "
            "another --out-dir."
        )
    raise RunDirError(
        f"{run_dir} is not empty ({shown}); choose an empty or new --out-dir (or pass "
        "--overwrite to write the run's files next to these)."
    )


def clear_run(run_dir: Path) -> list[Path]:
    """Remove the files a previous run wrote into ``run_dir`` (only :data:`RUN_FILES`)."""
    removed = []
    for name in RUN_FILES:
        path = run_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(path)
    return removed


def clean_temporaries(run_dir: Path) -> list[Path]:
    """Remove checkpoint temporaries left by a run killed while writing one.

    Call it while holding the run's lock: any temporary present then is stale.
    """
    removed = sorted(run_dir.glob(_TEMPORARY_GLOB))
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


class RunLock:
    """The lock of a run directory; a context manager (entering acquires it unless held).

    Acquiring creates the directory (and its parents) when needed and the lock
    file atomically (``O_CREAT | O_EXCL``), with this process's PID and host.
    A lock held by a live process raises :class:`RunLockedError`; one whose
    process is gone (same host) is taken over and ``notify`` is told. Releasing
    removes the lock, and the directory too when this lock created it and it
    is still empty (a run that failed before writing anything leaves nothing).

    Arguments:
        run_dir: the run directory.
        notify: receives one-line notices (default: printed to stderr).
    """

    def __init__(self, run_dir: str | Path, *, notify: Callable[[str], None] | None = None):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.notify = notify or _notify_stderr
        self._created: list[Path] = []
        self._held = False
        self._content = f"{os.getpid()}\n{socket.gethostname()}\n"

    def _make_dirs(self) -> None:
        missing = []
        path = self.run_dir
        while not path.exists():
            missing.append(path)
            path = path.parent
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirError(
                f"--out-dir {self.run_dir}: cannot create the directory ({exc.strerror}); "
                "choose another --out-dir."
            ) from None
        self._created = missing  # innermost first

    def _owner(self) -> tuple[int | None, str]:
        for _ in range(20):  # the owner may be between creating and writing the file
            try:
                text = self.path.read_text()
            except FileNotFoundError:
                return None, ""
            lines = text.split()
            if len(lines) >= 2 and lines[0].isdigit():
                return int(lines[0]), lines[1]
            time.sleep(0.05)
        return None, ""

    def acquire(self) -> RunLock:
        """Take the lock.

        Raises:
            RunLockedError: another live process holds it.
            RunDirError: the directory cannot be created or written.
        """
        self._make_dirs()
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid, host = self._owner()
                if pid is None and not self.path.exists():
                    continue  # released meanwhile
                here = socket.gethostname()
                if pid is not None and host != here:
                    raise RunLockedError(
                        f"{self.run_dir} is locked by process {pid} on host {host}; if no run "
                        f"is writing there any more, delete {self.path}."
                    ) from None
                if pid is not None and _pid_alive(pid):
                    raise RunLockedError(
                        f"{self.run_dir} is in use by another flowkit run (PID {pid}); wait "
                        "for it to finish or choose another --out-dir (if no run is writing "
                        f"there, PID {pid} is another program: delete {self.path})."
                    ) from None
                owner = f"process {pid}, which is no longer running" if pid else "no owner"
                self.notify(f"taking over the stale lock of {self.run_dir} ({owner}).")
                self.path.unlink(missing_ok=True)
                continue
            except OSError as exc:
                raise RunDirError(
                    f"--out-dir {self.run_dir}: cannot write there ({exc.strerror}); choose "
                    "a writable --out-dir."
                ) from None
            with os.fdopen(fd, "w") as handle:
                handle.write(self._content)
            self._held = True
            return self
        raise RunLockedError(
            f"{self.run_dir}: another process keeps taking its lock; choose another --out-dir."
        )

    def release(self) -> None:
        """Remove the lock (if still ours) and the directories it created, if empty."""
        if not self._held:
            return
        self._held = False
        try:
            if self.path.read_text() == self._content:
                self.path.unlink()
        except FileNotFoundError:
            pass
        for path in self._created:
            try:
                path.rmdir()
            except OSError:  # not empty: the run wrote something
                break

    def __enter__(self) -> RunLock:
        return self if self._held else self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
