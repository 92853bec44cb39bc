"""Building the CNF a training configuration describes, from registered components.

:func:`check_components` and :func:`resolve_device` check a configuration's
names, options and device before any data is loaded or any file written.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from flowkit.errors import FlowkitError
from flowkit.train.config import ConfigError, TrainConfig

__all__ = [
    "EXACT_TRACE_MAX_DIM",
    "build_eval_model",
    "build_model",
    "check_components",
    "resolve_device",
    "resolve_dtype",
]

_DEVICE_HINT = "use auto, cpu, cuda, cuda:N or mps"


def resolve_dtype(name: str) -> torch.dtype:
    """The torch dtype of a configuration's ``dtype`` (``"float32"`` or ``"float64"``)."""
    return {"float32": torch.float32, "float64": torch.float64}[name]


def resolve_device(name: str, *, rank: int = 0) -> torch.device:
    """The device ``name`` means: ``auto`` is CUDA when available (one GPU per rank), else CPU.

    Raises:
        ConfigError: a name torch does not know, or a CUDA device asked for on
            a machine without CUDA.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {name!r} is not a torch device; {_DEVICE_HINT}.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: CUDA is not available here; use --device cpu.")
        if device.index is None:
            device = torch.device("cuda", rank % torch.cuda.device_count())
    return device


def _component_options(config: TrainConfig) -> list[tuple[str, str, dict[str, Any], str]]:
    """(kind, name, options, configuration key) of every component ``config`` names."""
    from flowkit.train.field_options import configured_field_options

    entries = [
        ("vector_field", config.field, configured_field_options(config), "field_options"),
        ("integrator", config.integrator, config.integrator_options, "integrator_options"),
        ("trace_estimator", config.trace, config.trace_options, "trace_options"),
        ("gradient_strategy", config.gradient, config.gradient_options, "gradient_options"),
        *(
            [("trace_estimator", config.eval_trace, {}, "eval_trace")]
            if config.eval_trace != "auto"
            else []
        ),
        (
            "integrator",
            config.eval_integrator,
            config.eval_integrator_options,
            "eval_integrator_options",
        ),
    ]
    for reg in config.regularizers:
        options = config.regularizer_options.get(reg, {})
        entries.append(("regularizer", reg, options, f"regularizer_options.{reg}"))
    for index, (objective, options, _) in enumerate(config.stages()):
        key = f"schedule.{index}" if config.schedule else "objective_options"
        entries.append(("objective", objective, options, key))
    return entries


def check_components(config: TrainConfig) -> None:
    """Check every component name and option of ``config`` against the registry.

    Runs before any data is loaded or file written, so that a misspelt name
    or option is reported at once, naming the configuration key to fix.

    Raises:
        UnknownComponentError: an unknown name (with the closest matches).
        ConfigError: an option the component does not take (with the closest
            matches and the valid options).
        IncompatibleComponentsError: an objective that cannot train the field.
    """
    from flowkit.kinds import kind_info
    from flowkit.registry import get_registry
    from flowkit.train.context import check_context_config

    registry = get_registry()
    for kind, name, options, key in _component_options(config):
        spec = registry.get(kind, name)
        valid = spec.options() if callable(spec.options) else spec.options
        if valid is None:
            continue
        unknown = sorted(set(options) - set(valid))
        if not unknown:
            continue
        parts = []
        for option in unknown:
            close = difflib.get_close_matches(option, valid, n=1, cutoff=0.6)
            parts.append(repr(option) + (f" (did you mean {close[0]!r}?)" if close else ""))
        table = key.split(".")[0]
        if table == "schedule":
            raise ConfigError(
                f"Unknown option(s) {', '.join(parts)} for objective {spec.name!r} in stage "
                f"{int(key.split('.')[1]) + 1} of the schedule; valid options: "
                f"{', '.join(valid) or '(none)'}. Fix objective_options of that stage."
            )
        raise ConfigError(
            f"Unknown option(s) {', '.join(parts)} for {kind_info(kind).label} {spec.name!r} "
            f"in {table}; valid options: {', '.join(valid) or '(none)'}. Fix "
            f"--{table.replace('_', '-')} or {table} in the configuration file."
        )
    check_context_config(config)
    _check_objectives_fit_the_field(config)


def _check_objectives_fit_the_field(config: TrainConfig) -> None:
    """Each stage's objective against the field (e.g. ``score_matching`` needs a
    probability flow field), before any data is loaded.

    Raises:
        IncompatibleComponentsError: naming the objective, the field and the fix.
    """
    from flowkit.compat import ensure_compatible
    from flowkit.registry import get_registry

    registry = get_registry()
    field = registry.get("vector_field", config.field)
    # the model's trace (the dimension only decides between exact and hutchinson, both fit)
    trace = registry.get("trace_estimator", model_trace(config, 1))
    for name, _, _ in config.stages():
        ensure_compatible(objective=registry.get("objective", name), field=field, trace=trace)


@contextmanager
def _option_values(what: str) -> Iterator[None]:
    """Report a component's refusal of an option value as a :class:`ConfigError`."""
    try:
        yield
    except FlowkitError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"Cannot build the {what} from the configuration: {exc} Fix the option in the "
            "configuration file or on the command line."
        ) from exc


EXACT_TRACE_MAX_DIM = 16
"""Largest dimension for which ``eval_trace = "auto"`` picks the exact trace (O(d) VJPs)."""


def simulation_free(config: TrainConfig) -> bool:
    """Whether every stage of ``config`` trains without solving the ODE (no trace needed)."""
    from flowkit.registry import get_registry

    registry = get_registry()
    return all(
        bool(registry.get("objective", name).capabilities.get("simulation_free", False))
        for name, _, _ in config.stages()
    )


def _field_takes(config: TrainConfig, trace: str) -> bool:
    from flowkit.registry import get_registry

    registry = get_registry()
    needs = registry.get("trace_estimator", trace).capabilities.get("requires_divergence", False)
    has = registry.get("vector_field", config.field).capabilities.get("has_divergence", False)
    return bool(has or not needs)


def model_trace(config: TrainConfig, dim: int) -> str:
    """The trace estimator the CNF of ``config`` is built with.

    The configured ``trace``, except for a run trained only by simulation-free
    objectives whose field cannot take it (``analytic`` with a field without a
    closed-form divergence): training does not use it, so the model gets the
    evaluation trace instead (see :func:`eval_trace`).
    """
    if simulation_free(config) and not _field_takes(config, config.trace):
        return eval_trace(config, dim)
    return config.trace


def eval_trace(config: TrainConfig, dim: int) -> str:
    """The trace estimator of validation and test NLLs (``eval_trace``, resolving ``auto``).

    ``auto`` is the training ``trace`` (so maximum-likelihood runs report the
    numbers they always did); for runs trained only by simulation-free
    objectives it is the training trace when the field takes it, else
    ``exact`` up to :data:`EXACT_TRACE_MAX_DIM` dimensions and ``hutchinson``
    above (its variance grows with the dimension, the exact trace's cost too).
    """
    if config.eval_trace != "auto":
        return config.eval_trace
    if not simulation_free(config) or _field_takes(config, config.trace):
        return config.trace
    return "exact" if dim <= EXACT_TRACE_MAX_DIM else "hutchinson"


def build_model(
    config: TrainConfig, dim: int, *, device: torch.device, dtype: torch.dtype
) -> torch.nn.Module:
    """The :class:`flowkit.cnf.CNF` of ``config`` for data of ``dim`` features.

    A conditional run (``context``) gets a field with ``context_dim`` equal to
    its data's number of classes.

    Components are resolved by name in the registry; unknown names or options
    and incompatible choices raise before any training starts.

    Raises:
        UnknownComponentError, IncompatibleComponentsError: as the CNF raises them.
        ConfigError: an option value a component refuses.
    """
    from flowkit.cnf import CNF
    from flowkit.train.context import model_field_options

    trace = model_trace(config, dim)
    with _option_values("model"):
        model = CNF(
            config.field,
            config.integrator,
            trace,
            config.gradient,
            dim=dim,
            t1=config.t1,
            field_options=model_field_options(config),
            integrator_options=dict(config.integrator_options),
            trace_options=dict(config.trace_options) if trace == config.trace else {},
            gradient_options=dict(config.gradient_options),
            regularizers=tuple(config.regularizers),
            regularizer_options={k: dict(v) for k, v in config.regularizer_options.items()} or None,
        )
    return model.to(device=device, dtype=dtype)


def build_eval_model(model: torch.nn.Module, config: TrainConfig) -> torch.nn.Module:
    """A CNF for reporting: ``model``'s field, the evaluation trace and integrator.

    The field is shared (not copied), so the result follows ``model``'s weights;
    there are no regularizers, and the gradient strategy is backprop (evaluation
    runs without gradients).

    Raises:
        UnknownComponentError: an unknown ``eval_integrator``.
        ConfigError: an unknown option, or an option value the integrator refuses.
    """
    from flowkit.cnf import CNF

    trace = eval_trace(config, model.dim)
    with _option_values("evaluation model"):
        return CNF(
            model.field,
            config.eval_integrator,
            model.trace if trace == model_trace(config, model.dim) else trace,
            "backprop",
            dim=model.dim,
            t0=float(model.t0),
            t1=float(model.t1),
            integrator_options=dict(config.eval_integrator_options),
        )
