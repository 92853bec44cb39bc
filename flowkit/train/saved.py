"""Reusing a finished (or checkpointed) run: its model, its samples, its held-out NLL.

A run directory written by ``flowkit train`` holds ``config.toml`` and
``checkpoint.pt``; :func:`load` rebuilds the trained :class:`flowkit.CNF` from
them. :func:`sample_run` and :func:`evaluate_run` are what ``flowkit sample``
and ``flowkit evaluate`` do: they mix and match integrators and trace
estimators after training.

Decisions:
    * The weights are the *reported* ones: the best validated weights when the
      run validated, else the last (``weights="last"`` asks for the last). They
      are the weights of the run's ``test_nll``.
    * The model comes back with the run's own components (field, training
      integrator, trace estimator, regularizers), on CPU unless ``map_location``
      says otherwise, in evaluation mode.
    * Samples and NLLs are reported in the data's units: the run's data set is
      loaded again from its configuration (same seed, same splits), so a data
      file must still be readable at the path the run was given.
    * A conditional run (trained with ``context``) comes back as a conditional
      model (``context_dim`` = its data's number of classes): it is sampled
      for one class, ``label``, which must be given (there is no silent
      default class), and evaluated by the conditional NLL of each held-out
      point under its own label.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from flowkit.cnf import CNF
from flowkit.data import DataSplits, load_dataset
from flowkit.train.checkpoint import CheckpointError, load_checkpoint
from flowkit.train.config import ConfigError, TrainConfig, load_toml
from flowkit.train.context import context_width, label_context
from flowkit.train.model import build_model, eval_trace, model_trace, resolve_dtype
from flowkit.train.rundir import CHECKPOINT_NAME, CONFIG_NAME, RunDirError

__all__ = ["Evaluation", "SavedRun", "evaluate_run", "load", "load_run", "sample_run"]

Weights = Literal["best", "last"]


@dataclass
class SavedRun:
    """A run directory read back: its configuration, its model and its checkpoint."""

    run_dir: Path
    config: TrainConfig
    model: CNF
    iteration: int

    def data(self) -> DataSplits:
        """The run's data splits, loaded again from its configuration (on the model's device)."""
        return _load_data(self.config, next(self.model.parameters()).device)


def _load_data(c: TrainConfig, device: torch.device) -> DataSplits:
    return load_dataset(
        c.data,
        seed=c.seed,
        n_train=c.n_train,
        n_val=c.n_val,
        n_test=c.n_test,
        val_fraction=c.val_fraction,
        test_fraction=c.test_fraction,
        standardize=c.standardize,
        dtype=resolve_dtype(c.dtype),
        device=device,
        labels=c.context,
    )


def _read_config(run_dir: Path) -> TrainConfig:
    if not run_dir.is_dir():
        raise RunDirError(
            f"Run directory {run_dir} does not exist; pass the --out-dir of a `flowkit train` run."
        )
    path = run_dir / CONFIG_NAME
    if not path.is_file():
        raise RunDirError(
            f"{run_dir} holds no {CONFIG_NAME}, so it is not a `flowkit train` run directory."
        )
    return load_toml(path)


def load_run(
    run_dir: str | Path,
    *,
    map_location: str | torch.device | None = None,
    weights: Weights = "best",
) -> SavedRun:
    """Read the run in ``run_dir``: configuration, rebuilt model and weights.

    Raises:
        RunDirError: a missing directory or one without ``config.toml``.
        CheckpointError: a missing, corrupt or foreign ``checkpoint.pt``, or
            weights that do not fit the configuration's model.
        ConfigError: a corrupt ``config.toml``, or ``weights`` not best/last.
    """
    if weights not in ("best", "last"):
        raise ConfigError(f"weights must be 'best' or 'last', got {weights!r}.")
    run_dir = Path(run_dir)
    config = _read_config(run_dir)
    device = torch.device(map_location) if map_location is not None else torch.device("cpu")
    state = load_checkpoint(run_dir / CHECKPOINT_NAME, map_location=device)
    chosen = state["model"]
    if weights == "best" and state.get("best_model") is not None:
        chosen = state["best_model"]
    dim = int(state.get("dim") or 0)
    if dim <= 0:  # a checkpoint from before the dimension was saved
        dim = _dim_from_data(config)
    torch.manual_seed(config.seed)
    model = build_model(config, dim, device=device, dtype=resolve_dtype(config.dtype))
    try:
        model.load_state_dict(chosen)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(
            f"{run_dir / CHECKPOINT_NAME} does not fit the model of {run_dir / CONFIG_NAME}: "
            f"{str(exc).splitlines()[0]}"
        ) from None
    model.eval()
    return SavedRun(run_dir, config, model, int(state["iteration"]))


def _dim_from_data(config: TrainConfig) -> int:
    return _load_data(config, torch.device("cpu")).dim


def load(
    run_dir: str | Path,
    *,
    map_location: str | torch.device | None = None,
    weights: Weights = "best",
) -> CNF:
    """The trained :class:`flowkit.CNF` of a ``flowkit train`` run directory.

    Arguments:
        run_dir: the run directory (``--out-dir``).
        map_location: the device of the model (default CPU).
        weights: ``"best"`` (the best validated weights, those of the run's
            reported ``test_nll``; the last when the run never validated) or
            ``"last"`` (the weights of the last iteration).

    Returns:
        The model in evaluation mode, with the run's components. It works in
        the run's *model space*: data that the run standardised must be
        standardised the same way (``flowkit sample`` undoes it for you).

    Raises:
        RunDirError, CheckpointError, ConfigError: see :func:`load_run`.
    """
    return load_run(run_dir, map_location=map_location, weights=weights).model


def _eval_model(
    run: SavedRun, integrator: str, integrator_options: dict[str, Any], trace: str | None
) -> CNF:
    from flowkit.train.model import _option_values

    model = run.model
    chosen: Any = trace
    if trace is None:  # the run's evaluation trace: its own instance when it is the model's
        name = eval_trace(run.config, model.dim)
        chosen = model.trace if name == model_trace(run.config, model.dim) else name
    with _option_values("evaluation model"):
        return CNF(
            model.field,
            integrator,
            chosen,
            "backprop",
            dim=model.dim,
            t0=float(model.t0),
            t1=float(model.t1),
            integrator_options=dict(integrator_options),
        )


def sample_run(
    run: SavedRun,
    n: int,
    *,
    integrator: str | None = None,
    integrator_options: dict[str, Any] | None = None,
    seed: int = 0,
    label: int | None = None,
    sampler: str = "ode",
    sampler_options: dict[str, Any] | None = None,
) -> Tensor:
    """``n`` samples of the run's model in the data's units (standardisation undone).

    The solver defaults to the run's evaluation integrator, whose options
    ``integrator_options`` update; another integrator takes only the options given.
    A conditional run's samples are those of class ``label`` (its one-hot context).
    ``sampler`` ``"reverse_sde"`` or ``"pc"`` samples a score model (a run of the
    ``probability_flow`` field) with :func:`flowkit.sde.sample`, its options in
    ``sampler_options`` and its noise seeded by ``seed``; ``"ode"`` (default) is
    the CNF's own sampling.

    Raises:
        ConfigError: ``n`` not positive, an option value the integrator refuses,
            a ``label`` missing for a conditional run, given for an unconditional
            one, or outside the run's classes; an SDE sampler on a run that is not
            a score model, or given an ODE integrator.
        SamplerOptionError: a sampler option :func:`flowkit.sde.sample` refuses.
        UnknownComponentError: an unknown integrator.
    """
    if n <= 0:
        raise ConfigError(f"-n must be a positive number of samples, got {n}.")
    c = run.config
    width = context_width(c)
    if width is None and label is not None:
        raise ConfigError(
            f"--label {label}: the run in {run.run_dir} was trained without --context, so its "
            "model takes no label; drop --label."
        )
    if width is not None and label is None:
        raise ConfigError(
            f"The run in {run.run_dir} is conditional (trained with --context on {c.data!r}); "
            f"pass --label K with K in 0..{width - 1} to sample that class."
        )
    if width is not None and label is not None and not 0 <= label < width:
        raise ConfigError(
            f"--label {label} is out of range: {c.data!r} has {width} classes, labels "
            f"0..{width - 1}."
        )
    if sampler != "ode":
        return _sample_score_run(run, n, sampler, sampler_options, seed, label, integrator)
    options = dict(integrator_options or {})
    if integrator is None or integrator == c.eval_integrator:
        options = {**c.eval_integrator_options, **options}
    model = _eval_model(run, integrator or c.eval_integrator, options, None)
    model.eval()
    torch.manual_seed(seed)
    with torch.no_grad():
        z = model.sample_base(n)
        context = _label_context(c, n, label, z)
        x = model.transform(z, context)
    return run.data().to_data_space(x)


def _label_context(c: TrainConfig, n: int, label: int | None, like: Tensor) -> Tensor | None:
    width = context_width(c)
    if width is None or label is None:
        return None
    labels = torch.full((n,), label, dtype=torch.long, device=like.device)
    return label_context(labels, width, like)


def _sample_score_run(
    run: SavedRun,
    n: int,
    sampler: str,
    sampler_options: dict[str, Any] | None,
    seed: int,
    label: int | None,
    integrator: str | None,
) -> Tensor:
    """``sample_run`` with the reverse-SDE or predictor-corrector sampler of a score model."""
    from flowkit.sde import ProbabilityFlow, sample

    model = run.model
    if not isinstance(model.field, ProbabilityFlow):
        raise ConfigError(
            f"--sampler {sampler} needs a score model, but the run in {run.run_dir} trained "
            f"the field {run.config.field!r}, not a probability flow; sample it with "
            "--sampler ode, or train a score model (--field probability_flow)."
        )
    if integrator is not None:
        raise ConfigError(
            f"--integrator {integrator} is the ODE integrator of --sampler ode; the {sampler} "
            "sampler takes --sde-integrator (reverse_sde) and --steps."
        )
    model.eval()
    dtype, device = model.dtype_and_device()
    like = torch.empty(0, dtype=dtype, device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    context = _label_context(run.config, n, label, like)
    options = dict(sampler_options or {})
    x = sample(model, n, sampler=sampler, context=context, generator=generator, **options)
    return run.data().to_data_space(x.samples)


@dataclass
class Evaluation:
    """The NLL of one split under chosen components (see :func:`evaluate_run`)."""

    split: str
    samples: int
    nll: float
    nll_data: float
    bits_per_dim: float | None
    integrator: str
    integrator_options: dict[str, Any]
    trace: str
    conditional: bool = False

    def to_json(self) -> str:
        """One JSON object (non-finite numbers as null)."""
        values = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in self.__dict__.items()
        }
        return json.dumps(values, sort_keys=True)


def evaluate_run(
    run: SavedRun,
    *,
    split: str = "test",
    integrator: str | None = None,
    integrator_options: dict[str, Any] | None = None,
    trace: str | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
) -> Evaluation:
    """Mean NLL of a held-out split under any integrator and trace estimator.

    For a conditional run it is the conditional NLL, each point under its own
    label (``conditional`` is then true).

    Defaults: the run's evaluation integrator (with its options, updated by
    ``integrator_options``), the run's evaluation trace estimator, its evaluation batch
    size and its evaluation seed (``seed + 5``, as during training), so that
    with no choices given the result is the run's own ``test_nll``.

    Raises:
        ConfigError: a split other than val/test, or an option value refused.
        UnknownComponentError, IncompatibleComponentsError: a bad choice of
            integrator or trace estimator.
    """
    if split not in ("val", "test"):
        raise ConfigError(f"--split must be 'val' or 'test', got {split!r}.")
    c = run.config
    options = dict(integrator_options or {})
    if integrator is None or integrator == c.eval_integrator:
        options = {**c.eval_integrator_options, **options}
    integrator = integrator or c.eval_integrator
    model = _eval_model(run, integrator, options, trace)
    model.eval()
    data = run.data()
    x = getattr(data, split)
    size = batch_size or c.eval_batch_size
    labels = getattr(data, f"{split}_labels")
    contexts: list[Tensor | None] = [None] * len(x.split(size))
    if c.context and labels is not None and data.n_classes is not None:
        contexts = list(label_context(labels, data.n_classes, x).split(size))
    total = torch.zeros((), dtype=torch.float64)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(c.seed + 5 if seed is None else seed)
        for chunk, context in zip(x.split(size), contexts, strict=True):
            total += -model.log_prob(chunk, context).to(torch.float64).sum().cpu()
    nll = float(total) / len(x)
    trace_name = trace if trace is not None else eval_trace(c, run.model.dim)
    return Evaluation(
        split=split,
        samples=len(x),
        nll=nll,
        nll_data=data.nll_in_data_units(nll),
        bits_per_dim=data.bits_per_dim(nll),
        integrator=integrator,
        integrator_options=options,
        trace=trace_name,
        conditional=c.context,
    )
