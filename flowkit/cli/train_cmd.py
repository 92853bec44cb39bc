"""``flowkit train``: train a CNF from components chosen by name.

Every option mirrors one key of :class:`flowkit.train.TrainConfig` (the same
names in a TOML file given with ``--config``); options given on the command
line override the file. The command's signature is generated from the
configuration's fields, so the two cannot drift apart. User errors are
reported in one line by the application's root group (:mod:`flowkit.cli.errors`).
"""

from __future__ import annotations

import inspect
import types
import typing
from pathlib import Path
from typing import Any, Literal, Optional

import typer
from rich.markup import escape

from flowkit.train.config import (
    ConfigError,
    TrainConfig,
    config_fields,
    load_toml,
    parse_assignment,
    parse_schedule,
)
from flowkit.train.resume import RESUMABLE_OPTIONS

__all__ = ["build_config", "option_name", "train_command"]

_CONFIG_HELP = "A TOML configuration file (keys as the options below, optionally in sections)."
_RESUME_HELP = (
    "Continue the killed or finished run in this directory from its checkpoint, with its "
    "configuration; only --iterations, --time-budget and output options may be given."
)
_OVERWRITE_HELP = (
    "Start a new run in an --out-dir that holds a previous run, deleting that run's "
    "checkpoint, configuration, metrics, results and plots (without it, such a directory "
    "is refused)."
)


def option_name(field_name: str) -> str:
    """The command-line option of a configuration field (``lr_schedule`` -> ``--lr-schedule``)."""
    return "--" + field_name.replace("_", "-")


def _cli_type(hint: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return _cli_type(inner)
    if origin is Literal or hint is str:
        return Optional[str]  # noqa: UP045  (typer reads typing.Optional)
    if origin is dict:
        return Optional[list[str]]  # noqa: UP045
    if origin is list:  # the schedule: NAME:ITERATIONS,...
        return Optional[str]  # noqa: UP045
    return Optional[hint]  # noqa: UP045


def _parameters() -> list[inspect.Parameter]:
    hints = typing.get_type_hints(TrainConfig)
    defaults = TrainConfig()
    params = [
        inspect.Parameter(
            "config_file",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Optional[Path],  # noqa: UP045
            default=typer.Option(None, "--config", help=_CONFIG_HELP, show_default=False),
        ),
        inspect.Parameter(
            "resume",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Optional[Path],  # noqa: UP045
            default=typer.Option(None, "--resume", help=_RESUME_HELP, show_default=False),
        ),
        inspect.Parameter(
            "overwrite",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=bool,
            default=typer.Option(False, "--overwrite", help=_OVERWRITE_HELP),
        ),
    ]
    for name, f in config_fields().items():
        hint = hints[name]
        default = getattr(defaults, name)
        help_text = f.metadata["help"]
        if typing.get_origin(hint) is Literal:
            help_text += f" One of: {', '.join(typing.get_args(hint))}."
        if typing.get_origin(hint) is dict:
            help_text += " Repeat the option for several entries."
        help_text += f" [default: {default!r}]"
        decls = [option_name(name)]
        if hint is bool or typing.get_args(hint) == (bool, type(None)):
            decls = [f"{option_name(name)}/--no-{name.replace('_', '-')}"]
        params.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=_cli_type(hint),
                default=typer.Option(
                    None,
                    *decls,
                    help=escape(help_text),
                    show_default=False,
                    rich_help_panel=f"{f.metadata['group']} options",
                ),
            )
        )
    return params


def _parse_table(name: str, entries: list[str]) -> dict[str, Any]:
    option = option_name(name)
    table: dict[str, Any] = {}
    for entry in entries:
        key, value = parse_assignment(entry, option=option)
        if name == "regularizer_options":
            reg, dot, sub = key.partition(".")
            if not dot or not sub:
                raise ConfigError(f"{option} expects NAME.KEY=VALUE, got {entry!r}.")
            table.setdefault(reg, {})[sub] = value
        else:
            table[key] = value
    return table


def build_config(
    cli: dict[str, Any], *, config_file: Path | None = None, base: TrainConfig | None = None
) -> TrainConfig:
    """The configuration from a base (or a file, or the defaults) and command-line values.

    Arguments:
        cli: option values by field name; ``None`` means "not given".
        config_file: a TOML file to start from.
        base: a configuration to start from (a resumed run's).

    Raises:
        ConfigError: for a bad file or bad values.
    """
    config = base or (load_toml(config_file) if config_file is not None else TrainConfig())
    given: dict[str, Any] = {}
    for name, value in cli.items():
        if value is None:
            continue
        if name == "schedule" and isinstance(value, str):
            value = parse_schedule(value)
        elif isinstance(value, list):  # repeated KEY=VALUE options; they replace the whole table
            value = _parse_table(name, value)
        given[name] = value
    result = config.replace(**given) if given else config
    if result.schedule and "iterations" in given:
        raise ConfigError(
            "--iterations is the sum of the schedule's stages; drop --iterations or "
            "change the stages' iterations."
        )
    return result


def train_command(**kwargs: Any) -> None:
    """Train a continuous normalizing flow (default: FFJORD's toy model on 8gaussians).

    Writes metrics, checkpoints, plots and results.json to the run directory
    (--out-dir, default runs/<timestamp>).
    """
    from flowkit.train import train

    config_file = kwargs.pop("config_file")
    resume = kwargs.pop("resume")
    overwrite = kwargs.pop("overwrite")
    run_dir: Path | None = None
    if resume is not None:
        if config_file is not None:
            raise ConfigError("--resume uses the run's own configuration; drop --config.")
        if kwargs.get("out_dir") is not None:
            raise ConfigError("--resume DIR names the run directory already; drop --out-dir.")
        allowed = [k for k in RESUMABLE_OPTIONS if k != "out_dir"]
        fixed = sorted(k for k, v in kwargs.items() if v is not None and k not in allowed)
        if fixed:
            raise ConfigError(
                f"When resuming, only {', '.join(option_name(k) for k in allowed)} may "
                f"be given; got {', '.join(option_name(k) for k in fixed)}."
            )
        base = load_toml(Path(resume) / "config.toml")
        config = build_config(kwargs, base=base)
        run_dir = Path(resume)
    else:
        config = build_config(kwargs, config_file=config_file)
    result = train(config, run_dir=run_dir, resume=resume is not None, overwrite=overwrite)
    typer.echo(f"run directory: {result.run_dir}")
    typer.echo(
        f"stopped after {result.iterations} iterations ({result.stop_reason}), "
        f"{result.train_seconds:.1f} s of training"
    )
    given = " given the labels" if result.conditional else ""
    if result.best_val_nll is not None:
        typer.echo(
            f"best validation NLL{given}: {result.best_val_nll:.4f} nats "
            f"(iteration {result.best_iteration})"
        )
    typer.echo(f"test NLL{given}: {result.test_nll_data:.4f} nats")
    if result.test_bits_per_dim is not None:
        typer.echo(f"test bits/dim: {result.test_bits_per_dim:.4f}")


train_command.__signature__ = inspect.Signature(_parameters())  # type: ignore[attr-defined]
