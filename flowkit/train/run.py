"""Running a whole training job: one process, ``--nproc N`` local processes, or ``torchrun``.

:func:`train` is what ``flowkit train`` calls: it trains, writes the plots and
returns the :class:`~flowkit.train.trainer.TrainResult`. It checks the
configuration's components and device and the run directory before any work,
and holds the directory's lock (see :mod:`flowkit.train.rundir`) while it runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from flowkit.train.config import ConfigError, TrainConfig
from flowkit.train.context import MarginalModel
from flowkit.train.distributed import DistContext, default_backend, init_from_env, launch
from flowkit.train.model import check_components, resolve_device
from flowkit.train.plots import (
    plot_density_2d,
    plot_digits,
    plot_samples_2d,
    plot_trajectories_2d,
)
from flowkit.train.result import TrainResult
from flowkit.train.rundir import (
    RESULTS_NAME,
    RunDirError,
    RunLock,
    check_run_dir,
    clean_temporaries,
    clear_run,
    default_run_dir,
)
from flowkit.train.trainer import Trainer

__all__ = ["train", "write_outputs"]


def write_outputs(trainer: Trainer) -> list[Path]:
    """The PNGs of a finished run: density, samples and trajectories (2-D) or a digit grid.

    The final model is solved by the evaluation integrator (tight by default),
    like the reported NLLs.
    """
    model = trainer.evaluation_model(trainer.final_model())
    data = trainer.data
    if trainer.config.context and data.train_labels is not None and data.n_classes:
        counts = torch.bincount(data.train_labels.cpu(), minlength=data.n_classes)
        weights = (counts.double() / counts.sum()).to(device=trainer.device)
        model = MarginalModel(model, weights)
    out = trainer.run_dir
    written: list[Path] = []
    if data.dim == 2:
        written.append(
            plot_density_2d(
                model, data.test, out / "density.png", chunk=trainer.config.eval_batch_size
            )
        )
        written.append(plot_samples_2d(model, data.test, out / "samples.png"))
        written.append(plot_trajectories_2d(model, data.test, out / "trajectories.png"))
    elif data.image_shape is not None:
        with torch.no_grad():
            samples = data.to_data_space(model.sample(64))
        vmax = float(data.levels or 1)
        written.append(
            plot_digits(
                samples,
                out / "samples.png",
                shape=data.image_shape,
                vmax=vmax,
                title="model samples",
            )
        )
        written.append(
            plot_digits(
                data.to_data_space(data.test[:64]),
                out / "data.png",
                shape=data.image_shape,
                vmax=vmax,
                title="test data",
            )
        )
    return written


def _run(
    ctx: DistContext, config: TrainConfig, run_dir: Path, resume: bool, overwrite: bool
) -> TrainResult:
    trainer = Trainer(config, run_dir=run_dir, resume=resume, context=ctx, overwrite=overwrite)
    result = trainer.fit()
    if ctx.is_main and config.plots:
        result.extra["plots"] = [str(p) for p in write_outputs(trainer)]
        (run_dir / RESULTS_NAME).write_text(json.dumps(result.__dict__, indent=2) + "\n")
    return result


def _worker(
    ctx: DistContext, values: dict[str, Any], run_dir: str, resume: bool, overwrite: bool
) -> None:
    config = TrainConfig.from_dict(values)
    if config.threads is None:
        torch.set_num_threads(max(1, torch.get_num_threads() // ctx.world_size))
    _run(ctx, config, Path(run_dir), resume, overwrite)


def _claim(
    run_dir: Path, *, resume: bool, overwrite: bool, notify: Callable[[str], None] | None
) -> RunLock:
    """Check ``run_dir``, lock it, remove stale temporaries (and, to overwrite, the old run)."""
    check_run_dir(run_dir, resume=resume, overwrite=overwrite)
    lock = RunLock(run_dir, notify=notify).acquire()
    try:
        check_run_dir(run_dir, resume=resume, overwrite=overwrite)  # again, under the lock
        clean_temporaries(run_dir)
        if overwrite and not resume:
            clear_run(run_dir)
    except BaseException:
        lock.release()
        raise
    return lock


def _claim_new_default(notify: Callable[[str], None] | None) -> tuple[Path, RunLock]:
    """A fresh ``runs/<timestamp>``: another run may take the same name in the same second."""
    for _ in range(100):
        run_dir = default_run_dir()
        try:
            return run_dir, _claim(run_dir, resume=False, overwrite=False, notify=notify)
        except RunDirError:
            if not run_dir.exists():
                raise  # not a name clash: the folder cannot be written
    raise RunDirError("Could not claim a fresh directory under runs/; give --out-dir.")


def train(
    config: TrainConfig,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    notify: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train as ``config`` says and write the outputs.

    With ``config.nproc > 1`` the work runs in that many new processes (gloo on
    CPU, NCCL on CUDA); inside ``torchrun`` the group it set up is joined.

    Before any work the component names and options, the device and the run
    directory are checked. A new run refuses a directory that already holds
    files unless ``overwrite`` is set (which removes the previous run's files
    only); while it runs, the directory's lock keeps a second writer out.

    Arguments:
        config: the configuration.
        run_dir: the run directory (default ``config.out_dir`` or ``runs/<timestamp>``).
        resume: continue the run in ``run_dir`` from its checkpoint.
        overwrite: start a new run in a directory that holds a previous one.
        notify: receives one-line notices, such as taking over a stale lock
            (default: printed to stderr).

    Returns:
        The result of the run (read back from ``results.json`` for multi-process runs).

    Raises:
        ConfigError: ``resume`` together with ``overwrite``, unknown options, a bad device.
        UnknownComponentError: an unknown component name.
        RunDirError: an unusable run directory; RunLockedError when another
            process is writing to it.
    """
    if resume and overwrite:
        raise ConfigError(
            "--resume continues a run and --overwrite replaces it; give only one of them."
        )
    chosen = run_dir or config.out_dir
    if resume and not chosen:
        raise ConfigError("Resuming needs the run directory: pass run_dir (--resume DIR).")
    device = resolve_device(config.device)
    check_components(config)
    ctx: DistContext | None = None
    if config.nproc == 1:
        ctx = init_from_env(device)
        if not ctx.is_main:  # under torchrun, rank 0 checks and locks the directory
            return _run(ctx, config, Path(chosen or default_run_dir()), resume, overwrite)
    if chosen:
        path = Path(chosen)
        lock = _claim(path, resume=resume, overwrite=overwrite, notify=notify)
    else:
        path, lock = _claim_new_default(notify)
    with lock:
        if ctx is not None:
            return _run(ctx, config, path, resume, overwrite)
        launch(
            _worker,
            config.nproc,
            (config.to_dict(), str(path), resume, overwrite),
            backend=default_backend(device),
        )
    values = json.loads((path / RESULTS_NAME).read_text())
    return TrainResult(**values)
