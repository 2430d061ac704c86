"""Gradient clipping with torch.nn.utils' semantics, over the flat gradient buffer when possible.

:func:`clip_grad_norm` rescales all gradients together so that their
combined norm is at most ``max_norm``, and :func:`clip_grad_value` clamps
each gradient entry to ``[-clip_value, clip_value]``.  Neither reads a
value back from the device: the norm is returned as a 0-d array and the
scaling factor never leaves the device.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import checks
from ..backends import Backend, device_scope
from ..backends.kernels.layout import unguarded
from .params import ParameterSet, flat_store

NORM_EPS = 1e-6  # torch: clip_coef = max_norm / (total_norm + 1e-6)


def _norm_type(norm_type: Any) -> float:
    if isinstance(norm_type, str) and norm_type.lower() == "inf":
        return math.inf
    return checks.real(norm_type, "norm_type", above=0.0, finite=False, expected="a number > 0 or inf")


def _total_norm(backend: Backend, grads: list[Any], norm_type: float, flat: bool) -> Any:
    """The ``norm_type``-norm of all gradient entries together, a 0-d array of their dtype."""
    xp = backend.xp
    dtype = grads[0].dtype
    if norm_type == 2.0:
        if flat:  # the flat gradient buffer and a new 0-d array: C-contiguous by construction
            total = backend.zeros((), dtype)
            unguarded(backend.ops.grad_norm_sq)(grads[0], total)
        else:
            squares = backend.zeros((len(grads),), dtype)
            for index, grad in enumerate(grads):
                backend.ops.grad_norm_sq(grad, squares[index : index + 1])
            total = xp.asarray(squares.sum())
        return xp.sqrt(total, out=total)
    if norm_type == math.inf:
        return xp.asarray(xp.stack([xp.abs(grad).max() for grad in grads]).max(), dtype=dtype)
    powers = xp.stack([(xp.abs(grad) ** norm_type).sum() for grad in grads])
    return xp.asarray(powers.sum() ** (1.0 / norm_type), dtype=dtype)


def clip_grad_norm(
    params: Any, max_norm: float, norm_type: float | str = 2.0, *, error_if_nonfinite: bool = False
) -> Any:
    """Scale the gradients in place so that their total norm is at most ``max_norm``.

    torch's rule: ``total = ||all gradients||_p``;
    ``grads *= min(max_norm / (total + 1e-6), 1)``.  Returns the total norm
    before clipping as a 0-d array on the parameters' device (no
    synchronisation).  ``norm_type`` is ``p > 0`` or ``inf``.  With
    ``error_if_nonfinite=True`` a NaN or infinite norm raises RuntimeError
    instead, which costs one synchronisation.
    """
    limit = checks.non_negative(max_norm, "max_norm")
    order = 2.0 if type(norm_type) is float and norm_type == 2.0 else _norm_type(norm_type)
    store = flat_store(params)  # network.parameters(), every step: no per-parameter checks needed
    if store is not None and order == 2.0 and not error_if_nonfinite:
        # The common case: norm, coefficient and scaling in one operation over the flat buffer.
        total = store.backend.zeros((), store.dtype)
        return store.backend.ops.clip_norm_inplace(store.grad, limit, total)
    if store is not None:
        backend, grads, flat = store.backend, [store.grad], True
    else:
        parameters = ParameterSet(params, allow_empty=True)
        if not parameters.params:
            return np.zeros((), dtype=np.float32)
        backend = parameters.single_backend("clip_grad_norm(params)")
        grads = [grad for _backend, _data, grad in parameters.units()]
        flat = parameters.flat
    with device_scope(backend):  # the parameters' GPU current, whichever the calling thread has
        return _clip_to_norm(backend, grads, limit, order, flat, error_if_nonfinite)


def _clip_to_norm(backend: Backend, grads: list[Any], limit: float, order: float, flat: bool,
                  error_if_nonfinite: bool) -> Any:
    total = _total_norm(backend, grads, order, flat)
    if error_if_nonfinite and not bool(backend.xp.isfinite(total)):
        raise RuntimeError(
            f"The total norm of order {order} for gradients from `parameters` is non-finite, "
            "so it cannot be clipped. To disable this error and scale the gradients by the "
            "non-finite norm anyway, set `error_if_nonfinite=False`"
        )
    xp = backend.xp
    coefficient = backend.empty((), total.dtype)
    xp.add(total, NORM_EPS, out=coefficient)
    xp.divide(limit, coefficient, out=coefficient)
    xp.minimum(coefficient, 1.0, out=coefficient)
    for grad in grads:
        backend.ops.scale_inplace(grad, coefficient)
    return total


def clip_grad_value(params: Any, clip_value: float) -> None:
    """Clamp every gradient entry to ``[-clip_value, clip_value]`` in place (torch's rule)."""
    parameters = ParameterSet(params, allow_empty=True)
    limit = checks.non_negative(clip_value, "clip_value")
    for backend, _data, grad in parameters.units():
        with device_scope(backend):
            backend.xp.clip(grad, -limit, limit, out=grad)
