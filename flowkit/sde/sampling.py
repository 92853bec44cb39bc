"""Sampling a score model: the reverse-time SDE, predictor-corrector, or the probability flow ODE.

:func:`sample` draws from a score-based model, a :class:`flowkit.CNF` whose
field is a :class:`~flowkit.sde.ProbabilityFlow` (e.g. the registered
``probability_flow`` field trained with ``score_matching``), with one of
three samplers, chosen by name from :data:`SAMPLERS`:

* ``reverse_sde``: the reverse-time SDE ``dx = (f - g^2 score) ds + g dw``,
  ``ds < 0``, from the model's base (the SDE prior unless the CNF was given
  another) at ``end_time`` down to ``start_time``, solved by any registered
  SDE integrator (``sde_integrator``, default the native ``euler_maruyama``)
  on ``n_steps`` equal steps with real noise drawn from ``generator``.
* ``pc``: predictor-corrector (Song et al. 2021, Alg. 2): at each of the
  ``n_steps`` grid times, ``corrector_steps`` corrector moves
  (:mod:`flowkit.sde.correctors`; ``langevin`` with signal-to-noise ``snr``,
  or ``none``), then one predictor step down to the next time
  (:mod:`flowkit.sde.predictors`; ``reverse_diffusion`` or ``euler_maruyama``).
  Corrector first, as in Song et al.'s code, so that the last update is a
  predictor step.
* ``ode``: the probability flow ODE, i.e. ``CNF.transform`` of base samples
  with the model's integrator (or ``integrator``/``integrator_options``).

Decisions:
    * Noise removal (``denoise=True``, the default, as Song et al.'s
      ``noise_removal``): the stochastic samplers return the *mean* of their
      last step, without its noise, which is of the size of the step's noise
      scale and would otherwise remain in the samples. For ``reverse_sde`` the
      integrator runs the first ``n_steps - 1`` steps and the last one is a
      noise-free Euler-Maruyama step, whatever the integrator.
    * ``n_steps`` (default 1000, Song et al.'s N) counts predictor or
      integrator steps; the grid is ``n_steps`` equal steps from ``end_time``
      to ``start_time``. The integrator's own ``n_steps``/``step_size`` are
      therefore refused in ``sde_integrator_options``.
    * An option that the chosen sampler does not use, set to anything but its
      default (``snr`` for ``reverse_sde``, ``sde_integrator`` for ``pc``,
      ...), is an error, not silently ignored.
    * Everything random (base samples and noise) comes from ``generator``,
      so one seed gives the same samples every time. Sampling runs without
      gradients (``torch.no_grad``).
    * NFE counts score evaluations (score-network calls on the batch); for
      ``ode`` they are the ODE solver's field evaluations.

References:
    Song et al., "Score-Based Generative Modeling through Stochastic
    Differential Equations", ICLR 2021.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor

from flowkit.cnf import CNF
from flowkit.cnf.flow_model import check_count
from flowkit.errors import FlowkitError, IncompatibleComponentsError
from flowkit.registry import Registry, get_registry
from flowkit.sde.correctors import CORRECTORS, NoiseSource
from flowkit.sde.predictors import PREDICTORS, ScoreFunction
from flowkit.sde.probability_flow import ProbabilityFlow
from flowkit.sde.score import ScoreModel

__all__ = [
    "DEFAULT_SAMPLER_STEPS",
    "SAMPLERS",
    "SampleResult",
    "SamplerOptionError",
    "SamplerOptions",
    "sample",
]

DEFAULT_SAMPLER_STEPS = 1000
"""The default number of steps of the stochastic samplers (Song et al.'s N)."""


class SamplerOptionError(FlowkitError, ValueError):
    """A sampler option that cannot be used (unknown name, bad value, unused option)."""


class SampleResult(NamedTuple):
    """Samples, shape ``(n, dim)``, and the number of score evaluations that made them."""

    samples: Tensor
    nfe: int


def _choice(what: str, value: str, choices: Mapping[str, Any] | tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise SamplerOptionError(
            f"Unknown {what} {value!r}; choose one of {', '.join(choices)}.{hint}"
        )
    return value


@dataclass(frozen=True)
class SamplerOptions:
    """The validated options of :func:`sample` (see there for their meaning).

    Raises:
        SamplerOptionError: for an unknown sampler, predictor or corrector, a
            value out of range, or an option the sampler does not use set to
            anything but its default.
    """

    sampler: str = "reverse_sde"
    n_steps: int | None = None
    denoise: bool = True
    sde_integrator: str = "euler_maruyama"
    sde_integrator_options: Mapping[str, Any] = field(default_factory=dict)
    predictor: str = "reverse_diffusion"
    corrector: str = "langevin"
    corrector_steps: int = 1
    snr: float = 0.16
    integrator: str | None = None
    integrator_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _choice("sampler", self.sampler, tuple(SAMPLERS))
        _choice("predictor", self.predictor, PREDICTORS)
        _choice("corrector", self.corrector, CORRECTORS)
        defaults = SamplerOptions.__dataclass_fields__
        for name, users in _USED_BY.items():
            value, default = getattr(self, name), defaults[name].default
            if default is not None and not isinstance(default, (str, bool, int, float)):
                default = {}
            if self.sampler not in users and value != default:
                raise SamplerOptionError(
                    f"{name}={value!r} is an option of the {' and '.join(users)} sampler"
                    f"{'s' if len(users) > 1 else ''}, not of {self.sampler!r}; drop it."
                )
        if self.n_steps is not None and (
            isinstance(self.n_steps, bool) or not isinstance(self.n_steps, int) or self.n_steps < 1
        ):
            raise SamplerOptionError(f"n_steps must be a positive integer, got {self.n_steps!r}.")
        steps = self.corrector_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise SamplerOptionError(
                f"corrector_steps must be a positive integer, got {steps!r}; "
                "for no correction use corrector='none'."
            )
        snr = self.snr
        if isinstance(snr, bool) or not isinstance(snr, (int, float)) or not 0 < snr < float("inf"):
            raise SamplerOptionError(
                f"snr must be a positive finite number, got {snr!r} (Song et al. use 0.16 for "
                "ve and 0.01-0.17 for vp); for no correction use corrector='none'."
            )
        own = sorted({"n_steps", "step_size"} & set(self.sde_integrator_options))
        if own:
            raise SamplerOptionError(
                f"sde_integrator_options {own}: the sampler sets the integrator's steps; "
                "give n_steps to sample() (--steps on the command line) instead."
            )

    @property
    def steps(self) -> int:
        """The number of steps of the stochastic samplers."""
        return self.n_steps if self.n_steps is not None else DEFAULT_SAMPLER_STEPS


_USED_BY: dict[str, tuple[str, ...]] = {
    "n_steps": ("reverse_sde", "pc"),
    "denoise": ("reverse_sde", "pc"),
    "sde_integrator": ("reverse_sde",),
    "sde_integrator_options": ("reverse_sde",),
    "predictor": ("pc",),
    "corrector": ("pc",),
    "corrector_steps": ("pc",),
    "snr": ("pc",),
    "integrator": ("ode",),
    "integrator_options": ("ode",),
}


@dataclass
class _Run:
    """What one call samples with: the CNF, its score model, noise, and the score count."""

    cnf: CNF
    generator: torch.Generator | None
    registry: Registry
    context: Tensor | None = None
    nfe: int = 0

    @property
    def score_model(self) -> ScoreModel:
        return self.cnf.field.score_model  # type: ignore[union-attr, return-value]

    def score(self, x: Tensor, s: Tensor) -> Tensor:
        """The score at ``(x, s)`` with the context bound; counts one evaluation."""
        self.nfe += 1
        return self.score_model.score(x, s, self.context)

    def noise(self, like: Tensor) -> Tensor:
        return torch.randn(
            like.shape, generator=self.generator, dtype=like.dtype, device=like.device
        )

    def grid(self, steps: int, like: Tensor) -> Tensor:
        """``steps + 1`` equal diffusion times from ``end_time`` down to ``start_time``."""
        sde = self.score_model.sde
        return torch.linspace(
            sde.end_time, sde.start_time, steps + 1, dtype=like.dtype, device=like.device
        )


def _as_cnf(model: object, options: SamplerOptions, registry: Registry) -> CNF:
    """The CNF to sample: ``model`` itself, a CNF on a bare score model, or one with the
    ODE integrator asked for."""
    if isinstance(model, ScoreModel):
        clock = model.clock
        return CNF(
            ProbabilityFlow(model),
            options.integrator or "dopri5",
            "exact",
            "backprop",
            dim=model.dim,
            t0=clock.t0,
            t1=clock.t1,
            integrator_options=options.integrator_options,
            registry=registry,
        )
    if not isinstance(model, CNF):
        raise TypeError(
            f"model must be a flowkit.CNF (on a probability flow field) or a "
            f"flowkit.sde.ScoreModel, got {type(model).__name__}."
        )
    if options.sampler != "ode" and not isinstance(model.field, ProbabilityFlow):
        raise IncompatibleComponentsError(
            f"The {options.sampler!r} sampler needs a score model, but this CNF's field is "
            f"{type(model.field).__name__}, not a probability flow. Build the model on the "
            "'probability_flow' field (CNF('probability_flow', ...), trained with the "
            "score_matching objective) or as CNF(flowkit.sde.ProbabilityFlow(score_model), ...); "
            "sample any other CNF with sampler='ode'."
        )
    if options.integrator is None:
        if options.integrator_options:
            raise SamplerOptionError(
                "integrator_options without integrator: name the ODE integrator they are for."
            )
        return model
    return CNF(
        model.field,
        options.integrator,
        model.trace,
        "backprop",
        dim=model.dim,
        base=model.base,
        t0=model.t0,
        t1=model.t1,
        integrator_options=options.integrator_options,
        registry=registry,
    )


def _base_samples(cnf: CNF, n: int, generator: torch.Generator | None) -> Tensor:
    """``n`` draws of the CNF's base in its dtype and device, from ``generator``."""
    dtype, device = cnf.dtype_and_device()
    base = cnf.base
    if "generator" in inspect.signature(base.sample).parameters:
        return base.sample((n,), generator=generator, dtype=dtype, device=device)  # type: ignore[no-any-return]
    # A base without a generator argument (a torch distribution): seed torch's
    # global generator from ``generator`` inside a forked RNG state.
    seed = int(torch.randint(2**62, (), generator=generator))
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        z = base.sample((n,))
    return z.to(dtype=dtype, device=device)  # type: ignore[no-any-return]


def _reverse_sde(run: _Run, z: Tensor, options: SamplerOptions) -> Tensor:
    sde = run.score_model.sde
    steps = options.steps
    grid = run.grid(steps, z)
    noisy = steps - 1 if options.denoise else steps
    x = z
    if noisy > 0:
        integrator = run.registry.create(
            "sde_integrator",
            options.sde_integrator,
            **dict(options.sde_integrator_options),
            n_steps=noisy,
        )
        solution = integrator.integrate(
            lambda s, y: sde.reverse_drift(y, s, run.score(y, s)),
            lambda s, y: sde.diffusion(s) * torch.ones_like(y),
            z,
            grid[[0, noisy]],
            generator=run.generator,
        )
        x = solution.ys[-1]
    if options.denoise:  # the last step without its noise: Euler-Maruyama's mean
        s, h = grid[-2], float(grid[-2] - grid[-1])
        x = x - sde.reverse_drift(x, s, run.score(x, s)) * h
    return x


def _predictor_corrector(run: _Run, z: Tensor, options: SamplerOptions) -> Tensor:
    sde = run.score_model.sde
    predictor = PREDICTORS[options.predictor](sde)
    corrector = CORRECTORS[options.corrector](
        sde, snr=float(options.snr), steps=options.corrector_steps
    )
    grid = run.grid(options.steps, z)
    score: ScoreFunction = run.score
    noise: NoiseSource = run.noise
    x = mean = z
    for k in range(options.steps):
        s, s_next = grid[k], grid[k + 1]
        x, _ = corrector.correct(x, s, s_next, score, noise)
        x, mean = predictor.step(x, s, s_next, score, noise(x))
    return mean if options.denoise else x


def _probability_flow_ode(run: _Run, z: Tensor, options: SamplerOptions) -> Tensor:
    x = run.cnf.transform(z, run.context)
    stats = run.cnf.last_stats
    run.nfe = stats.nfe if stats is not None else 0
    return x


SAMPLERS: dict[str, Callable[[_Run, Tensor, SamplerOptions], Tensor]] = {
    "reverse_sde": _reverse_sde,
    "pc": _predictor_corrector,
    "ode": _probability_flow_ode,
}
"""The samplers of :func:`sample`, by name."""


def sample(
    model: CNF | ScoreModel,
    n: int,
    *,
    sampler: str = "reverse_sde",
    n_steps: int | None = None,
    denoise: bool = True,
    sde_integrator: str = "euler_maruyama",
    sde_integrator_options: Mapping[str, Any] | None = None,
    predictor: str = "reverse_diffusion",
    corrector: str = "langevin",
    corrector_steps: int = 1,
    snr: float = 0.16,
    integrator: str | None = None,
    integrator_options: Mapping[str, Any] | None = None,
    context: Tensor | None = None,
    generator: torch.Generator | None = None,
    registry: Registry | None = None,
) -> SampleResult:
    """``n`` samples of a score model by the reverse SDE, predictor-corrector or the PF ODE.

    See the module docs for the samplers and the decisions behind the options.

    Arguments:
        model: a :class:`flowkit.CNF` whose field is a
            :class:`~flowkit.sde.ProbabilityFlow` (its base is where samples
            start), or a bare :class:`~flowkit.sde.ScoreModel` (starting from
            its SDE's prior). The ``ode`` sampler takes any CNF.
        n: the number of samples.
        sampler: ``"reverse_sde"``, ``"pc"`` or ``"ode"``.
        n_steps: steps of ``reverse_sde`` and ``pc`` (default 1000).
        denoise: return the mean of the last stochastic step (noise removal).
        sde_integrator, sde_integrator_options: the registered SDE integrator
            of ``reverse_sde`` and its options (not its steps).
        predictor: ``"reverse_diffusion"`` or ``"euler_maruyama"`` (``pc``).
        corrector: ``"langevin"`` or ``"none"`` (``pc``).
        corrector_steps: corrector moves per time (``pc``).
        snr: the Langevin corrector's signal-to-noise ratio (``pc``).
        integrator, integrator_options: the ODE integrator of ``ode``
            (default: the model's own; ``dopri5`` for a bare score model).
        context: the context of a conditional model, ``(n, c)`` or ``(c,)``.
        generator: the source of all randomness (``None``: torch's global one).
        registry: where names resolve (default: the global registry).

    Returns:
        :class:`SampleResult` ``(samples (n, dim), nfe)``.

    Raises:
        SamplerOptionError: for an unknown sampler, predictor or corrector, a
            bad option value, or an option the sampler does not use.
        IncompatibleComponentsError: ``reverse_sde`` or ``pc`` on a CNF whose
            field is not a probability flow.
        UnknownComponentError: an unknown ``sde_integrator`` or ``integrator``.
        TypeError: a model of another type, or options a component refuses.
        InvalidInputError: a bad ``n`` or context.

    Example:
        >>> import torch
        >>> from flowkit.plugins.sdes import VPSDE
        >>> from flowkit.sde import GaussianScore
        >>> score = GaussianScore(torch.zeros(2), torch.eye(2), VPSDE())
        >>> g = torch.Generator().manual_seed(0)
        >>> x, nfe = sample(score, 5, sampler="pc", n_steps=50, generator=g)
        >>> x.shape, nfe  # 50 predictor + 50 corrector evaluations
        (torch.Size([5, 2]), 100)
    """
    options = SamplerOptions(
        sampler=sampler,
        n_steps=n_steps,
        denoise=denoise,
        sde_integrator=sde_integrator,
        sde_integrator_options=dict(sde_integrator_options or {}),
        predictor=predictor,
        corrector=corrector,
        corrector_steps=corrector_steps,
        snr=snr,
        integrator=integrator,
        integrator_options=dict(integrator_options or {}),
    )
    n = check_count(n)
    reg = registry if registry is not None else get_registry()
    cnf = _as_cnf(model, options, reg)
    with torch.no_grad():
        z = _base_samples(cnf, n, generator)
        run = _Run(cnf, generator, reg, cnf.check_context(context, z))
        x = SAMPLERS[options.sampler](run, z, options)
    return SampleResult(x, run.nfe)
