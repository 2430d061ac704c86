"""Constraints on parameter values, applied in place after an update.

:func:`clamp_parameters` is the weight clipping of the Wasserstein GAN paper
(every critic weight clamped to ``[-c, c]`` after each critic update),
``torch``'s ``p.data.clamp_(low, high)`` over all parameters at once.
"""

from __future__ import annotations

from typing import Any

from .. import checks
from .params import ParameterSet, flat_store


def clamp_parameters(params: Any, low: float, high: float) -> None:
    """Clamp every entry of ``params`` to ``[low, high]``, in place.

    One pass over the flat parameter buffer when ``params`` are a whole
    network's (``network.parameters()``), else one per parameter.  Frozen
    parameters are clamped too: this is a constraint on values, not an
    update.  NaN entries stay NaN.
    """
    lower = checks.real(low, "low", finite=False)
    upper = checks.real(high, "high", finite=False)
    if lower > upper:
        raise ValueError(f"low, high: expected low <= high, got low={low!r}, high={high!r}")
    store = flat_store(params)  # network.parameters(): the flat buffer, without per-parameter checks
    if store is not None:
        store.backend.ops.clamp_inplace(store.data, lower, upper)
        return
    selected = ParameterSet(params, allow_empty=True)
    for backend, data, _grad in selected.units():
        backend.ops.clamp_inplace(data, lower, upper)
