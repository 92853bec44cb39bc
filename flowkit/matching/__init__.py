"""The mathematics of flow matching: paths, couplings, losses and reflow pairs.

Pure functions on tensors, with no dependence on the registry or on
:class:`flowkit.CNF`; objective plugins are built on them. Base samples sit at
``t = 0`` and data at ``t = 1``, as in flowkit's CNFs.

* :mod:`~flowkit.matching.paths`: the straight conditional path of width ``sigma``.
* :mod:`~flowkit.matching.couplings`: ``independent`` and minibatch-OT couplings.
* :mod:`~flowkit.matching.losses`: the flow-matching loss and per-sample-time evaluation.
* :mod:`~flowkit.matching.reflow`: rectified flow's reflow pairs and loss.

References:
    Lipman et al., "Flow Matching for Generative Modeling", ICLR 2023.
    Tong et al., "Improving and generalizing flow-based generative models with
    minibatch optimal transport", TMLR 2024.
    Liu et al., "Flow Straight and Fast", ICLR 2023.

Example:
    >>> import torch
    >>> from flowkit.matching import flow_matching_loss
    >>> x0, x1 = torch.zeros(4, 2), torch.ones(4, 2)
    >>> flow_matching_loss(lambda t, x: torch.ones_like(x), x0, x1, coupling="ot").item()
    0.0
"""

from __future__ import annotations

from flowkit.matching.couplings import COUPLINGS, Coupled, check_batch, couple, ot_assignment
from flowkit.matching.losses import REDUCTIONS, Field, evaluate_field, flow_matching_loss
from flowkit.matching.paths import check_sigma, sample_times, straight_path
from flowkit.matching.reflow import ReflowPairs, Sampler, rectified_flow_loss, reflow_pairs

__all__ = [
    "COUPLINGS",
    "REDUCTIONS",
    "Coupled",
    "Field",
    "ReflowPairs",
    "Sampler",
    "check_batch",
    "check_sigma",
    "couple",
    "evaluate_field",
    "flow_matching_loss",
    "ot_assignment",
    "rectified_flow_loss",
    "reflow_pairs",
    "sample_times",
    "straight_path",
]
