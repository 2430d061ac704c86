"""Gradient clipping by total norm as one hot operation over a flat gradient buffer.

* ``clip_norm_inplace(grad, max_norm, total)``: ``total[()] = ||grad||_2``
  (the squares summed in float64, the norm stored in ``grad``'s dtype), then
  ``grad *= min(max_norm / (total + 1e-6), 1)`` (torch's
  ``clip_grad_norm_`` rule).  ``total`` is a 0-d array on the device, so
  the norm never has to be read back.

The generic version is the sequence of array operations
:func:`bpcore.optim.clip_grad_norm` runs for any selection of parameters;
the CPU kernel does the same in one call (a sum pass and a scaling pass).
"""

from __future__ import annotations

from typing import Any

from ..kernels import cpu as kcpu
from .registry import Numba, declare

NORM_EPS = 1e-6  # torch: clip_coef = max_norm / (total_norm + 1e-6)
#: From this many elements the generic version (a threaded BLAS dot product) is faster.
SERIAL_MAX = 1 << 21


def _clip_norm_cpu(kernel: Any, generic: Any) -> Any:
    """The CPU wrapper: the one-call kernel (backends/kernels/clipping_numba.py) on a flat buffer."""

    def clip_norm_inplace(grad: Any, max_norm: float, total: Any) -> Any:
        if grad.ndim != 1 or grad.size >= SERIAL_MAX or total.shape != () or total.dtype != grad.dtype:
            return generic(grad, max_norm, total)
        scalar = grad.dtype.type
        kcpu.pick(kernel, grad.size, "cheap")(grad, scalar(max_norm), scalar(NORM_EPS), total.reshape(1))
        return total

    return clip_norm_inplace


@declare(
    "clip_norm_inplace",
    "total = ||grad||_2; grad *= min(max_norm / (total + 1e-6), 1)",
    cpu=Numba(_clip_norm_cpu, "clipping_numba"),
)
def clip_norm_inplace_generic(xp: Any, grad: Any, max_norm: float, total: Any) -> Any:
    flat = grad.reshape(-1)
    wide = flat if flat.dtype == xp.float64 else flat.astype(xp.float64)
    total[...] = xp.dot(wide, wide)
    xp.sqrt(total, out=total)
    coefficient = xp.empty((), total.dtype)
    xp.add(total, NORM_EPS, out=coefficient)
    xp.divide(max_norm, coefficient, out=coefficient)
    xp.minimum(coefficient, 1.0, out=coefficient)
    grad *= coefficient
    return total
