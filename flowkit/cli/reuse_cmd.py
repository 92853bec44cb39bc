"""``flowkit sample`` and ``flowkit evaluate``: reuse a trained run after training.

Both read a run directory written by ``flowkit train`` (see
:mod:`flowkit.train.saved`) and take the solver, trace estimator and
tolerances on the command line, so components can be mixed and matched after
training, not only before. ``flowkit sample --sampler reverse_sde|pc`` samples a
score model (a run of the ``probability_flow`` field) with
:func:`flowkit.sde.sample`; the default, ``ode``, is the CNF's own flow. User
errors are one line (:mod:`flowkit.cli.errors`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from flowkit.cli.errors import CliUsageError, did_you_mean
from flowkit.train.config import parse_assignment

__all__ = ["evaluate_command", "sample_command"]

_RUN_HELP = "A run directory written by `flowkit train` (its --out-dir)."
_INTEGRATOR_HELP = "Integrator (registered name; default: the run's evaluation integrator)."
_OPTIONS_HELP = (
    "Integrator options, KEY=VALUE or KEY=VALUE,KEY=VALUE (e.g. rtol=1e-5,atol=1e-5); "
    "repeat for several. With the run's own integrator they update its evaluation options."
)
_WEIGHTS_HELP = "Weights: best (validated; those of the run's test NLL) or last."


def _options(entries: list[str] | None) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for entry in entries or []:
        for part in entry.split(","):
            if part.strip():
                key, value = parse_assignment(part, option="--integrator-options")
                table[key] = value
    return table


def _weights(value: str) -> Any:
    if value not in ("best", "last"):
        raise CliUsageError(f"--weights must be 'best' or 'last', got {value!r}.")
    return value


_SAMPLERS = ("ode", "reverse_sde", "pc")
_FLAGS = {"n_steps": "--steps", "denoise": "--no-denoise"}


def _sampler_options(sampler: str, **given: Any) -> dict[str, Any]:
    """The options given on the command line for an SDE sampler; refused for ``ode``."""
    if sampler not in _SAMPLERS:
        raise CliUsageError(
            f"--sampler must be one of {', '.join(_SAMPLERS)}, got {sampler!r}."
            + did_you_mean(sampler, _SAMPLERS)
        )
    chosen = {key: value for key, value in given.items() if value is not None}
    if sampler == "ode" and chosen:
        flags = ", ".join(_FLAGS.get(key, f"--{key.replace('_', '-')}") for key in chosen)
        raise CliUsageError(
            f"{flags}: options of --sampler reverse_sde or pc, not of the ODE sampler "
            "(which takes --integrator and --integrator-options)."
        )
    return chosen


def sample_command(
    run_dir: Path = typer.Argument(..., help=_RUN_HELP, show_default=False),  # noqa: B008
    n: int = typer.Option(1000, "-n", "--samples", help="Number of samples."),
    out: Optional[Path] = typer.Option(  # noqa: UP045, B008  (typer reads typing.Optional)
        None, "--out", help="The .npy file to write (default RUN_DIR/samples.npy)."
    ),
    integrator: Optional[str] = typer.Option(  # noqa: UP045
        None, "--integrator", help=_INTEGRATOR_HELP
    ),
    integrator_options: Optional[list[str]] = typer.Option(  # noqa: UP045, B008
        None, "--integrator-options", help=_OPTIONS_HELP
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the base samples."),
    weights: str = typer.Option("best", "--weights", help=_WEIGHTS_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
    label: Optional[int] = typer.Option(  # noqa: UP045
        None,
        "--label",
        help="Class to sample (0..classes-1); required for a run trained with --context, "
        "refused for one trained without.",
    ),
    sampler: str = typer.Option(
        "ode",
        "--sampler",
        help="ode (the CNF's flow; any run), or for a score model (a probability_flow run) "
        "reverse_sde (the reverse-time SDE) or pc (predictor-corrector).",
    ),
    steps: Optional[int] = typer.Option(  # noqa: UP045
        None, "--steps", help="Steps of reverse_sde and pc (default 1000)."
    ),
    sde_integrator: Optional[str] = typer.Option(  # noqa: UP045
        None, "--sde-integrator", help="SDE integrator of reverse_sde (default euler_maruyama)."
    ),
    predictor: Optional[str] = typer.Option(  # noqa: UP045
        None, "--predictor", help="pc: reverse_diffusion (default) or euler_maruyama."
    ),
    corrector: Optional[str] = typer.Option(  # noqa: UP045
        None, "--corrector", help="pc: langevin (default) or none."
    ),
    corrector_steps: Optional[int] = typer.Option(  # noqa: UP045
        None, "--corrector-steps", help="pc: corrector moves per step (default 1)."
    ),
    snr: Optional[float] = typer.Option(  # noqa: UP045
        None, "--snr", help="pc: the Langevin corrector's signal-to-noise ratio (default 0.16)."
    ),
    no_denoise: bool = typer.Option(
        False, "--no-denoise", help="reverse_sde, pc: keep the last step's noise."
    ),
) -> None:
    """Write samples of a trained run, in the data's units, to a .npy file."""
    import numpy as np

    from flowkit.train.saved import load_run, sample_run

    target = out if out is not None else run_dir / "samples.npy"
    if target.suffix.lower() != ".npy":
        raise CliUsageError(f"--out {target} must end in .npy (samples are written with numpy).")
    if target.exists() and not overwrite:
        raise CliUsageError(f"{target} exists; pass --overwrite to replace it, or choose --out.")
    if n <= 0:
        raise CliUsageError(f"-n must be a positive number of samples, got {n}.")
    options = _options(integrator_options)
    sde_options = _sampler_options(
        sampler,
        n_steps=steps,
        sde_integrator=sde_integrator,
        predictor=predictor,
        corrector=corrector,
        corrector_steps=corrector_steps,
        snr=snr,
        denoise=False if no_denoise else None,
    )
    if sampler != "ode" and (integrator is not None or options):
        raise CliUsageError(
            f"--integrator and --integrator-options are for --sampler ode; the {sampler} "
            "sampler takes --steps and --sde-integrator (reverse_sde) or --predictor, "
            "--corrector, --corrector-steps and --snr (pc)."
        )
    run = load_run(run_dir, weights=_weights(weights))
    x = sample_run(
        run,
        n,
        integrator=integrator,
        integrator_options=options,
        seed=seed,
        label=label,
        sampler=sampler,
        sampler_options=sde_options,
    )
    if not target.parent.is_dir():
        raise CliUsageError(f"The folder of --out {target} does not exist; create it first.")
    np.save(target, x.detach().cpu().numpy())
    of_class = f" of class {label}" if label is not None else ""
    typer.echo(f"wrote {n} samples{of_class} of dimension {x.shape[1]} to {target}")


def evaluate_command(
    run_dir: Path = typer.Argument(..., help=_RUN_HELP, show_default=False),  # noqa: B008
    integrator: Optional[str] = typer.Option(  # noqa: UP045
        None, "--integrator", help=_INTEGRATOR_HELP
    ),
    integrator_options: Optional[list[str]] = typer.Option(  # noqa: UP045, B008
        None, "--integrator-options", help=_OPTIONS_HELP
    ),
    trace: Optional[str] = typer.Option(  # noqa: UP045
        None,
        "--trace",
        help="Trace estimator (registered name; default: the run's evaluation trace).",
    ),
    split: str = typer.Option("test", "--split", help="Held-out split: test or val."),
    batch_size: Optional[int] = typer.Option(  # noqa: UP045
        None, "--batch-size", help="Evaluation batch size (default: the run's)."
    ),
    seed: Optional[int] = typer.Option(  # noqa: UP045
        None, "--seed", help="Seed of stochastic traces (default: the run's evaluation seed)."
    ),
    weights: str = typer.Option("best", "--weights", help=_WEIGHTS_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Report the held-out NLL of a trained run with the components given here."""
    from flowkit.train.saved import evaluate_run, load_run

    if batch_size is not None and batch_size <= 0:
        raise CliUsageError(f"--batch-size must be positive, got {batch_size}.")
    options = _options(integrator_options)
    run = load_run(run_dir, weights=_weights(weights))
    result = evaluate_run(
        run,
        split=split,
        integrator=integrator,
        integrator_options=options,
        trace=trace,
        batch_size=batch_size,
        seed=seed,
    )
    if as_json:
        typer.echo(result.to_json())
        return
    given = " given the labels" if result.conditional else ""
    typer.echo(
        f"{split} NLL{given}: {result.nll_data:.4f} nats ({result.samples} samples; "
        f"{result.integrator} {result.integrator_options}, trace {result.trace})"
    )
    if result.bits_per_dim is not None:
        typer.echo(f"{split} bits/dim: {result.bits_per_dim:.4f}")
