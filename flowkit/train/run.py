"""Running a whole training job: one process, ``--nproc N`` local processes, or ``torchrun``.

:func:`train` is what ``flowkit train`` calls: it trains, writes the plots and
returns the :class:`~flowkit.train.trainer.TrainResult`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from flowkit.train.config import TrainConfig
from flowkit.train.distributed import DistContext, default_backend, init_from_env, launch
from flowkit.train.model import resolve_device
from flowkit.train.plots import (
    plot_density_2d,
    plot_digits,
    plot_samples_2d,
    plot_trajectories_2d,
)
from flowkit.train.trainer import RESULTS_NAME, Trainer, TrainResult, default_run_dir

__all__ = ["train", "write_outputs"]


def write_outputs(trainer: Trainer) -> list[Path]:
    """The PNGs of a finished run: density, samples and trajectories (2-D) or a digit grid.

    The final model is solved by the evaluation integrator (tight by default),
    like the reported NLLs.
    """
    model = trainer.evaluation_model(trainer.final_model())
    data = trainer.data
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


def _run(ctx: DistContext, config: TrainConfig, run_dir: Path, resume: bool) -> TrainResult:
    trainer = Trainer(config, run_dir=run_dir, resume=resume, context=ctx)
    result = trainer.fit()
    if ctx.is_main and config.plots:
        result.extra["plots"] = [str(p) for p in write_outputs(trainer)]
        (run_dir / RESULTS_NAME).write_text(json.dumps(result.__dict__, indent=2) + "\n")
    return result


def _worker(ctx: DistContext, values: dict[str, Any], run_dir: str, resume: bool) -> None:
    config = TrainConfig.from_dict(values)
    if config.threads is None:
        torch.set_num_threads(max(1, torch.get_num_threads() // ctx.world_size))
    _run(ctx, config, Path(run_dir), resume)


def train(
    config: TrainConfig, *, run_dir: str | Path | None = None, resume: bool = False
) -> TrainResult:
    """Train as ``config`` says and write the outputs.

    With ``config.nproc > 1`` the work runs in that many new processes (gloo on
    CPU, NCCL on CUDA); inside ``torchrun`` the group it set up is joined.

    Arguments:
        config: the configuration.
        run_dir: the run directory (default ``config.out_dir`` or ``runs/<timestamp>``).
        resume: continue the run in ``run_dir`` from its checkpoint.

    Returns:
        The result of the run (read back from ``results.json`` for multi-process runs).
    """
    run_dir = Path(run_dir or config.out_dir or default_run_dir())
    if config.nproc > 1:
        device = resolve_device(config.device)
        launch(
            _worker,
            config.nproc,
            (config.to_dict(), str(run_dir), resume),
            backend=default_backend(device),
        )
        values = json.loads((run_dir / RESULTS_NAME).read_text())
        return TrainResult(**values)
    ctx = init_from_env(resolve_device(config.device))
    return _run(ctx, config, run_dir, resume)
