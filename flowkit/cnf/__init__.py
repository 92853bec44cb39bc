"""The continuous normalizing flow models.

:class:`CNF` (:mod:`~flowkit.cnf.model`) is one flow with pluggable field,
integrator, trace estimator and gradient strategy; :class:`CNFSequence`
(:mod:`~flowkit.cnf.sequence`) composes CNF blocks. Both share the density and
sampling API of :class:`~flowkit.cnf.flow_model.FlowModel`; the default base
is :class:`StandardNormal` (:mod:`~flowkit.cnf.base_density`).
"""

from __future__ import annotations

from flowkit.cnf.base_density import StandardNormal
from flowkit.cnf.flow_model import FlowModel, FlowResult
from flowkit.cnf.model import CNF
from flowkit.cnf.sequence import CNFSequence, compose

__all__ = ["CNF", "CNFSequence", "FlowModel", "FlowResult", "StandardNormal", "compose"]
