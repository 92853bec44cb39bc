"""Conditional training (``--context``): class labels as the one-hot context of the flow.

With ``context = true`` a run loads the class labels of its data (the toy
densities' mixture parts, the digits' 0-9), gives the vector field a
``context_dim`` equal to the number of classes, and passes each sample's
one-hot label as its context to the objective, to validation and to the test
NLL, which are then *conditional* NLLs, ``-log p(x | label)``.

Decisions:
    * The number of classes comes from the data set's name (:data:`TOY_CLASSES`,
      10 for digits), so :func:`flowkit.load` rebuilds a conditional model from
      the saved configuration alone, without loading the data.
    * A ``context_dim`` given in ``field_options`` must equal that number;
      another value is refused rather than silently replaced.
    * Plots of a conditional run show the marginal model,
      ``p(x) = sum_k pi_k p(x | k)`` with ``pi`` the training labels' proportions
      (:class:`MarginalModel`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from flowkit.data import TOY_CLASSES, DataSplits, one_hot
from flowkit.train.config import ConfigError, TrainConfig

__all__ = [
    "MarginalModel",
    "check_context_config",
    "check_labelled_data",
    "context_width",
    "label_context",
    "labelled_data_sets",
    "model_field_options",
]

_DIGIT_CLASSES = 10


def labelled_data_sets() -> tuple[str, ...]:
    """The data sets that have class labels (usable with ``--context``)."""
    return (*TOY_CLASSES, "digits")


def context_width(config: TrainConfig) -> int | None:
    """The context's width (number of classes) of a conditional run, ``None`` without ``context``.

    Raises:
        ConfigError: ``context`` for a data set without class labels.
    """
    if not config.context:
        return None
    key = str(config.data)
    if key in TOY_CLASSES:
        return TOY_CLASSES[key]
    if key == "digits":
        return _DIGIT_CLASSES
    raise ConfigError(
        f"--context needs class labels, but the data {key!r} has none; labelled data sets: "
        f"{', '.join(labelled_data_sets())}. Drop --context or choose one of them."
    )


def check_context_config(config: TrainConfig) -> None:
    """Check a conditional configuration before any data is loaded.

    Raises:
        ConfigError: data without labels, a field that takes no ``context_dim``,
            or a ``context_dim`` in ``field_options`` other than the number of classes.
    """
    width = context_width(config)
    if width is None:
        return
    from flowkit.registry import get_registry

    spec = get_registry().get("vector_field", config.field)
    valid = spec.options() if callable(spec.options) else spec.options
    if valid is not None and "context_dim" not in valid:
        raise ConfigError(
            f"--context needs a vector field that takes a context (a context_dim option); "
            f"{spec.name!r} does not. Use e.g. --field mlp, or drop --context."
        )
    given = config.field_options.get("context_dim")
    if given is not None and given != width:
        raise ConfigError(
            f"field_options context_dim={given!r} does not match the {width} classes of "
            f"{config.data!r}; drop context_dim (--context sets it) or set it to {width}."
        )


def model_field_options(config: TrainConfig) -> dict[str, Any]:
    """The run model's field options: ``field_options`` fitted to the field
    (:func:`flowkit.train.field_options.run_field_options`), plus ``context_dim`` if
    conditional."""
    from flowkit.train.field_options import run_field_options

    options = run_field_options(config)
    width = context_width(config)
    if width is not None:
        options["context_dim"] = width
    return options


def check_labelled_data(config: TrainConfig, data: DataSplits) -> None:
    """Check that ``data`` carries the labels a conditional run needs.

    Raises:
        ConfigError: splits without labels, or a number of classes other than
            the data set's.
    """
    width = context_width(config)
    if width is None:
        return
    if data.n_classes is None or any(
        getattr(data, f"{split}_labels") is None for split in ("train", "val", "test")
    ):
        raise ConfigError(
            "--context needs data loaded with labels=True (train_labels, val_labels, "
            "test_labels and n_classes); pass such data or drop --context."
        )
    if data.n_classes != width:
        raise ConfigError(
            f"The data have {data.n_classes} classes but {config.data!r} has {width}; "
            "load the data set the configuration names."
        )


def label_context(labels: Tensor, n_classes: int, like: Tensor) -> Tensor:
    """One-hot rows of ``labels`` in ``like``'s dtype and on its device (the flow's context)."""
    return one_hot(labels.to(like.device), n_classes, dtype=like.dtype)


class MarginalModel(nn.Module):
    """The marginal of a conditional model, ``p(x) = sum_k pi_k p(x | k)``, for plots.

    Arguments:
        model: a conditional CNF whose context is a one-hot class label.
        class_weights: the class probabilities ``pi``, shape ``(n_classes,)``.
    """

    def __init__(self, model: nn.Module, class_weights: Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("log_weights", class_weights.log())
        self.dim = model.dim

    @property
    def n_classes(self) -> int:
        """The number of classes."""
        return int(self.log_weights.shape[0])

    def log_prob(self, x: Tensor) -> Tensor:
        """``log sum_k pi_k p(x | k)``, shape ``(batch,)``."""
        terms = []
        for k in range(self.n_classes):
            labels = torch.full((len(x),), k, dtype=torch.long, device=x.device)
            context = label_context(labels, self.n_classes, x)
            terms.append(self.log_weights[k].to(x.dtype) + self.model.log_prob(x, context))
        return torch.logsumexp(torch.stack(terms), dim=0)

    def sample_labels(self, n: int) -> Tensor:
        """``n`` labels drawn with the class probabilities (global torch generator)."""
        weights = self.log_weights.exp().float().cpu()
        return torch.multinomial(weights, n, replacement=True).to(self.log_weights.device)

    def sample(self, n: int) -> Tensor:
        """``n`` samples of the marginal: labels drawn by ``pi``, then the conditional model."""
        z = self.model.sample_base(n)
        return self.model.transform(z, label_context(self.sample_labels(n), self.n_classes, z))
