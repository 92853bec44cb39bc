"""Building the CNF a training configuration describes, from registered components."""

from __future__ import annotations

import torch

from flowkit.train.config import TrainConfig

__all__ = ["build_eval_model", "build_model", "resolve_device"]


def resolve_device(name: str, *, rank: int = 0) -> torch.device:
    """The device ``name`` means: ``auto`` is CUDA when available (one GPU per rank), else CPU.

    Raises:
        ValueError: a CUDA device asked for on a machine without CUDA.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available here; use --device cpu.")
        if device.index is None:
            device = torch.device("cuda", rank % torch.cuda.device_count())
    return device


def build_model(
    config: TrainConfig, dim: int, *, device: torch.device, dtype: torch.dtype
) -> torch.nn.Module:
    """The :class:`flowkit.cnf.CNF` of ``config`` for data of ``dim`` features.

    Components are resolved by name in the registry; unknown names or options
    and incompatible choices raise before any training starts.
    """
    from flowkit.cnf import CNF

    model = CNF(
        config.field,
        config.integrator,
        config.trace,
        config.gradient,
        dim=dim,
        t1=config.t1,
        field_options=dict(config.field_options),
        integrator_options=dict(config.integrator_options),
        trace_options=dict(config.trace_options),
        gradient_options=dict(config.gradient_options),
        regularizers=tuple(config.regularizers),
        regularizer_options={k: dict(v) for k, v in config.regularizer_options.items()} or None,
    )
    return model.to(device=device, dtype=dtype)


def build_eval_model(model: torch.nn.Module, config: TrainConfig) -> torch.nn.Module:
    """A CNF for reporting: ``model``'s field and trace with the evaluation integrator.

    The field is shared (not copied), so the result follows ``model``'s weights;
    there are no regularizers, and the gradient strategy is backprop (evaluation
    runs without gradients).

    Raises:
        TypeError, RegistryError: an unknown ``eval_integrator`` or option.
    """
    from flowkit.cnf import CNF

    return CNF(
        model.field,
        config.eval_integrator,
        model.trace,
        "backprop",
        dim=model.dim,
        t0=float(model.t0),
        t1=float(model.t1),
        integrator_options=dict(config.eval_integrator_options),
    )
