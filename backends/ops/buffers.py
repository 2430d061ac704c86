"""Whole-buffer operations of custom training loops, and per-row gathering.

* ``polyak_update(target, source, tau)``: ``target = (1 - tau) * target + tau * source``
  (a soft target-network update; ``tau = 1`` is a plain copy), computed in
  the arrays' dtype as ``target *= 1 - tau; target += tau * source``.
* ``clamp_inplace(x, low, high)``: ``x = min(max(x, low), high)`` in place
  (WGAN weight clipping); ``low`` and ``high`` are rounded to ``x``'s dtype.
* ``gather_rows(values, index, out)``: ``out[i] = values[i, index[i]]`` for a
  2-D ``values`` and integer ``index`` of shape (n,) (``torch.gather(values, 1,
  index[:, None])[:, 0]``).
* ``scatter_rows(grad, index, out)``: the backward of ``gather_rows``:
  ``out[i, j] = grad[i] if j == index[i] else 0`` (``out`` is fully written).

Indices are trusted here (the caller checks them once); the compiled
versions do each operation in one pass without allocating.
"""

from __future__ import annotations

from typing import Any

from ..kernels.buffer_kernels import cpu_buffer_kernel, cuda_buffer_kernel
from .registry import declare


@declare(
    "polyak_update",
    "target = (1 - tau) * target + tau * source (soft target update)",
    cpu=cpu_buffer_kernel("polyak_update"),
    cuda=cuda_buffer_kernel("polyak_update"),
)
def polyak_update(xp: Any, target: Any, source: Any, tau: float) -> Any:
    target *= 1.0 - tau
    target += tau * source
    return target


@declare(
    "clamp_inplace",
    "x = min(max(x, low), high) in place (weight clipping)",
    cpu=cpu_buffer_kernel("clamp_inplace"),
    cuda=cuda_buffer_kernel("clamp_inplace"),
)
def clamp_inplace(xp: Any, x: Any, low: float, high: float) -> Any:
    xp.maximum(x, low, out=x)
    xp.minimum(x, high, out=x)
    return x


@declare(
    "gather_rows",
    "out[i] = values[i, index[i]]",
    cpu=cpu_buffer_kernel("gather_rows"),
    cuda=cuda_buffer_kernel("gather_rows"),
)
def gather_rows(xp: Any, values: Any, index: Any, out: Any) -> Any:
    out[...] = values[xp.arange(values.shape[0]), index]
    return out


@declare(
    "scatter_rows",
    "out[i, j] = grad[i] where j == index[i], else 0",
    cpu=cpu_buffer_kernel("scatter_rows"),
    cuda=cuda_buffer_kernel("scatter_rows"),
)
def scatter_rows(xp: Any, grad: Any, index: Any, out: Any) -> Any:
    out.fill(0)
    out[xp.arange(out.shape[0]), index] = grad
    return out
