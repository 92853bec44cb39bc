"""Training configuration: one dataclass that a TOML file and the command line both fill.

Every field of :class:`TrainConfig` is one command-line option (``--field-name``)
and one key of the TOML file (at the top level or in the section named by its
``group``: ``[data]``, ``[model]``, ``[optim]``, ``[output]``, ``[run]``), so the
two say exactly the same things. Components are chosen by registered name,
with their options as TOML tables (``field_options = {hidden_dims = [64, 64]}``)
or on the command line as ``--field-option hidden_dims=[64,64]``.

The schedule's stages are checked in :mod:`flowkit.train.schedule`, TOML is
written and ``KEY=VALUE`` read in :mod:`flowkit.train.config_io`; their public
names are re-exported here.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from flowkit.train.config_io import dump_toml, parse_assignment
from flowkit.train.config_values import GROUPS, ConfigError, coerce
from flowkit.train.schedule import (
    check_objective_options,
    check_stage,
    is_maximum_likelihood,
    parse_schedule,
)

__all__ = [
    "GROUPS",
    "ConfigError",
    "TrainConfig",
    "config_fields",
    "dump_toml",
    "is_maximum_likelihood",
    "load_toml",
    "parse_assignment",
    "parse_schedule",
]


def _opt(group: str, help: str, default: Any = None) -> Any:
    return field(default=default, metadata={"group": group, "help": help})


def _meta(group: str, help: str) -> dict[str, str]:
    return {"group": group, "help": help}


@dataclass
class TrainConfig:
    """Everything that decides a training run.

    The defaults are the recommended settings for 2-D data, measured with
    ``benchmarks/training.py``: an MLP field (64-64-64, tanh, end time 0.5)
    whose exact divergence comes from one forward pass (``analytic`` trace),
    dopri5 at rtol = atol = 1e-3, backprop through the solver, RNODE's kinetic
    penalty (0.01), Adam at 1e-2 with a cosine decay over 1000 iterations of
    batch 512 on ``8gaussians``. Validation and test NLL use their own, tight
    integrator (dopri5 at 1e-5), so the reported numbers do not profit from
    the loose training tolerance.
    """

    # -- data -----------------------------------------------------------------------
    data: str = _opt(
        "data",
        "Data set: 8gaussians, pinwheel, moons, circles, rings, swissroll, 2spirals, "
        "checkerboard, digits, or a .npy/.csv file of shape (samples, features).",
        "8gaussians",
    )
    n_train: int = _opt("data", "Training samples drawn from a toy density.", 50_000)
    n_val: int = _opt("data", "Validation samples drawn from a toy density.", 2_000)
    n_test: int = _opt("data", "Test samples drawn from a toy density.", 5_000)
    val_fraction: float = _opt("data", "Validation fraction of digits or a file.", 0.1)
    test_fraction: float = _opt("data", "Test fraction of digits or a file.", 0.1)
    standardize: bool = _opt("data", "Standardise a file's features (training statistics).", True)
    context: bool = _opt(
        "data",
        "Conditional training: the data's class labels (toy densities' mixture parts, "
        "the digits' 0-9), one-hot, are the context of the flow; the field's context_dim "
        "is set to the number of classes, and validation and test NLLs are conditional.",
        False,
    )
    # -- model ----------------------------------------------------------------------
    field: str = _opt("model", "Vector field (registered name; see `flowkit list`).", "mlp")
    field_options: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"hidden": [64, 64, 64], "activation": "tanh"},
        metadata=_meta("model", "Vector-field options, KEY=VALUE (TOML values)."),
    )
    integrator: str = _opt("model", "Integrator (registered name).", "dopri5")
    integrator_options: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"rtol": 1e-3, "atol": 1e-3},
        metadata=_meta("model", "Integrator options, KEY=VALUE (TOML values)."),
    )
    trace: str = _opt(
        "model",
        "Trace estimator (registered name); analytic needs a field with a closed-form "
        "divergence (mlp, linear), use exact (or hutchinson) for the others.",
        "analytic",
    )
    trace_options: dict[str, Any] = dataclasses.field(
        default_factory=dict, metadata=_meta("model", "Trace-estimator options, KEY=VALUE.")
    )
    gradient: str = _opt("model", "Gradient strategy (registered name).", "backprop")
    gradient_options: dict[str, Any] = dataclasses.field(
        default_factory=dict, metadata=_meta("model", "Gradient-strategy options, KEY=VALUE.")
    )
    t1: float = _opt("model", "End time of the flow (base at t0 = 0, data at t1).", 0.5)
    regularizers: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"kinetic_energy": 0.01},
        metadata=_meta("model", "Regularizer weights, NAME=WEIGHT (e.g. kinetic_energy=0.01)."),
    )
    regularizer_options: dict[str, dict[str, Any]] = dataclasses.field(
        default_factory=dict, metadata=_meta("model", "Regularizer options, NAME.KEY=VALUE.")
    )
    steer: float = _opt(
        "model",
        "STEER: during training draw the end time uniformly from [t1 - b, t1 + b] "
        "with this b (0 turns it off; must be < t1).",
        0.0,
    )
    # -- objective ------------------------------------------------------------------
    objective: str = _opt(
        "optim",
        "Training objective (registered name): maximum_likelihood (its regularizers and "
        "STEER come from --regularizer and --steer), flow_matching, rectified_flow (its "
        "teacher is a frozen copy of the model at the start of training or of its stage) "
        "or score_matching (with --field probability_flow).",
        "maximum_likelihood",
    )
    objective_options: dict[str, Any] = dataclasses.field(
        default_factory=dict,
        metadata=_meta("optim", "Objective options, KEY=VALUE (e.g. coupling=ot)."),
    )
    schedule: list[dict[str, Any]] = dataclasses.field(
        default_factory=list,
        metadata=_meta(
            "optim",
            "Stages of objectives run one after the other, e.g. "
            "flow_matching:800,maximum_likelihood:200 (NAME:ITERATIONS); per-stage options "
            "in TOML [[schedule]] tables {objective, iterations, objective_options}. "
            "Replaces --objective; --iterations becomes the sum of the stages.",
        ),
    )
    # -- optimisation ---------------------------------------------------------------
    batch_size: int = _opt("optim", "Global batch size (split across processes).", 512)
    iterations: int = _opt(
        "optim",
        "Training iterations (an upper bound with a time budget; the cosine schedule spans them).",
        1000,
    )
    time_budget: float | None = _opt(
        "optim", "Stop after this many seconds of training (evaluation excluded).", None
    )
    lr: float = _opt("optim", "Adam learning rate (the peak, with a schedule).", 1e-2)
    weight_decay: float = _opt("optim", "Adam weight decay.", 1e-5)
    lr_schedule: Literal["constant", "cosine"] = _opt(
        "optim", "Learning-rate schedule over the iterations: constant or cosine.", "cosine"
    )
    warmup: int = _opt("optim", "Linear learning-rate warm-up iterations.", 0)
    grad_clip: float | None = _opt("optim", "Clip the gradient norm to this value.", None)
    val_every: int = _opt("optim", "Validate every this many iterations.", 50)
    val_size: int | None = _opt("optim", "Validation samples used (all if unset).", None)
    patience: int | None = _opt(
        "optim", "Early stopping: validations without improvement before stopping.", None
    )
    eval_batch_size: int = _opt("optim", "Batch size for validation, test and plots.", 5_000)
    eval_integrator: str = _opt(
        "optim",
        "Integrator of validation, test and density plots (registered name); tight by "
        "default so that reported NLLs do not profit from a loose training tolerance.",
        "dopri5",
    )
    eval_integrator_options: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"rtol": 1e-5, "atol": 1e-5},
        metadata=_meta("optim", "Evaluation-integrator options, KEY=VALUE (TOML values)."),
    )
    eval_trace: str = _opt(
        "optim",
        "Trace estimator of validation, test and density plots (registered name), or auto: "
        "the training trace; for a run trained only by simulation-free objectives (flow "
        "matching), whose training needs no trace, the training trace when the field takes "
        "it, else exact up to 16 dimensions and hutchinson above.",
        "auto",
    )
    # -- output ---------------------------------------------------------------------
    out_dir: str | None = _opt("output", "Run directory (default runs/<timestamp>).", None)
    log_format: Literal["csv", "jsonl"] = _opt("output", "Metrics log: csv or jsonl.", "csv")
    tensorboard: bool | None = _opt(
        "output", "TensorBoard logs (default: when the tensorboard package is installed).", None
    )
    checkpoint_every: int = _opt("output", "Write a checkpoint every this many iterations.", 50)
    plots: bool = _opt("output", "Write PNG plots at the end.", True)
    progress: bool = _opt("output", "Show a progress bar.", True)
    # -- run ------------------------------------------------------------------------
    seed: int = _opt("run", "Seed of the data, the model, the probes and the sampler.", 0)
    device: str = _opt("run", "Device: auto, cpu, cuda, cuda:1, ...", "auto")
    dtype: Literal["float32", "float64"] = _opt("run", "Floating-point type.", "float32")
    nproc: int = _opt("run", "Processes for distributed training (gloo on CPU, NCCL on CUDA).", 1)
    threads: int | None = _opt("run", "torch.set_num_threads per process (default: torch's).", None)

    def __post_init__(self) -> None:
        self.validate()

    def stages(self) -> list[tuple[str, dict[str, Any], int]]:
        """``(objective, options, iterations)`` of each stage; one stage without a schedule."""
        if not self.schedule:
            return [(self.objective, dict(self.objective_options), self.iterations)]
        return [
            (s["objective"], dict(s.get("objective_options", {})), int(s["iterations"]))
            for s in self.schedule
        ]

    # -- validation ---------------------------------------------------------------------
    def validate(self) -> None:
        """Check types and ranges of every field.

        Raises:
            ConfigError: naming the field, the value and what is allowed.
        """
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            setattr(self, f.name, coerce(f.name, value, hints[f.name]))
        positive = (
            "n_train",
            "n_val",
            "n_test",
            "batch_size",
            "iterations",
            "val_every",
            "eval_batch_size",
            "checkpoint_every",
            "nproc",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}.")
        for name in ("lr", "t1"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}.")
        for name in ("weight_decay", "steer", "warmup"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be non-negative, got {getattr(self, name)}.")
        for name in ("time_budget", "grad_clip", "val_size", "patience", "threads"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be positive when set, got {value}.")
        for name in ("val_fraction", "test_fraction"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must lie in (0, 1), got {getattr(self, name)}.")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError(
                f"val_fraction + test_fraction = {self.val_fraction + self.test_fraction} "
                "leaves no training data; make them smaller."
            )
        if self.steer >= self.t1:
            raise ConfigError(
                f"steer={self.steer} must be smaller than t1={self.t1}, or the end time "
                "could reach the base time; use e.g. steer = t1 / 2."
            )
        if self.batch_size % self.nproc:
            raise ConfigError(
                f"batch_size={self.batch_size} must be divisible by nproc={self.nproc} so every "
                "process gets an equal share of the global batch."
            )
        if self.context and self.nproc > 1:
            raise ConfigError(
                "--context trains with one process only (the distributed path carries no "
                "labels); use --nproc 1."
            )
        self._validate_objectives()
        for name, weight in self.regularizers.items():
            if not math.isfinite(weight) or weight < 0:
                raise ConfigError(f"regularizers.{name} weight must be >= 0, got {weight}.")
        for name in self.regularizer_options:
            if name not in self.regularizers:
                raise ConfigError(
                    f"regularizer_options given for {name!r}, which is not among the "
                    f"regularizers {sorted(self.regularizers) or '(none)'}; add a weight "
                    f"with --regularizer {name}=WEIGHT."
                )

    def _validate_objectives(self) -> None:
        if self.schedule:
            if self.objective != "maximum_likelihood" or self.objective_options:
                raise ConfigError(
                    "Give either objective (with objective_options) or a schedule of stages, "
                    "not both; put the objective in a stage of the schedule."
                )
            stages = [check_stage(i, stage) for i, stage in enumerate(self.schedule)]
            self.schedule = stages
            self.iterations = sum(int(s["iterations"]) for s in stages)
        for objective, options, _ in self.stages():
            check_objective_options(objective, options)
            if self.nproc > 1 and not is_maximum_likelihood(objective):
                raise ConfigError(
                    f"Only maximum_likelihood trains with several processes, not {objective!r}; "
                    "use --nproc 1."
                )

    # -- conversion ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dictionary of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "configuration") -> TrainConfig:
        """Build from a flat or grouped dictionary (as read from TOML).

        Raises:
            ConfigError: unknown keys (with the closest matches) or bad values.
        """
        flat = _flatten(values, source)
        return cls(**flat)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated)."""
        unknown = sorted(set(changes) - set(config_fields()))
        if unknown:
            raise ConfigError(_unknown_message(unknown, "replace()"))
        return dataclasses.replace(self, **changes)


def config_fields() -> dict[str, dataclasses.Field[Any]]:
    """The fields of :class:`TrainConfig`, by name, in declaration order."""
    return {f.name: f for f in dataclasses.fields(TrainConfig)}


def _unknown_message(unknown: list[str], source: str) -> str:
    names = list(config_fields())
    parts = []
    for key in unknown:
        sub = key.rpartition(".")[2]  # "optim.lrr": match the key, not the section
        close = difflib.get_close_matches(sub, names, n=2, cutoff=0.6)
        parts.append(
            f"{key!r}" + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else "")
        )
    return (
        f"Unknown configuration key(s) in {source}: {', '.join(parts)}. "
        f"Valid keys: {', '.join(names)}."
    )


def _flatten(values: dict[str, Any], source: str) -> dict[str, Any]:
    known = config_fields()
    flat: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in values.items():
        if key in GROUPS and isinstance(value, dict):  # a section ([data] is also a key)
            for sub, subvalue in value.items():
                f = known.get(sub)
                if f is None:
                    unknown.append(f"{key}.{sub}")
                    continue
                if f.metadata["group"] != key:
                    raise ConfigError(
                        f"{source}: {sub!r} belongs in [{f.metadata['group']}], not [{key}]."
                    )
                flat[sub] = subvalue
        elif key in known:
            flat[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise ConfigError(_unknown_message(unknown, source))
    return flat


# -- TOML --------------------------------------------------------------------------------
def load_toml(path: str | Path) -> TrainConfig:
    """Read a configuration file.

    Raises:
        ConfigError: a missing or malformed file, unknown keys, bad values.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Configuration file {path} does not exist.")
    try:
        values = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}.") from None
    return TrainConfig.from_dict(values, source=str(path))
