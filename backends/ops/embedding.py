"""The embedding's hot step: the backward scatter-add of gradient rows into the weight gradient.

* ``embedding_backward(gy, index, padding_idx, grad)``: ``gy`` (m, d) float,
  ``index`` (m,) int64 in ``[0, v)``, ``grad`` (v, d) of ``gy``'s dtype;
  adds row ``r`` of ``gy`` to row ``index[r]`` of ``grad`` for every ``r``
  (repeated indices add up), skipping the rows whose index equals
  ``padding_idx`` (``-1``: none).  ``grad`` is updated in place and returned.

The generic version groups equal indices by one stable sort and sums each
group with ``add.reduceat`` (in float64 on CuPy; memory of one gathered copy of ``gy``; NumPy's
unbuffered ``add.at`` is several times slower); Numba (CPU) and an
``atomicAdd`` kernel (CUDA) do it in one pass.  The Numba kernel runs
behind the one layout guard (an F-ordered or strided argument gets the
generic version); the CUDA wrapper gives the generic version a ``grad`` that
is not C-contiguous.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..kernels import cpu as kcpu
from ..kernels import embedding_cuda  # noqa: F401  (registers the CUDA kernel's source)
from .registry import Cuda, Numba, declare

# The Numba kernel is in backends/kernels/embedding_numba.py, the CUDA one in embedding_cuda.py.


def _embedding_cpu(kernel: Any, generic: Any) -> Any:
    # Behind the layout guard: every argument is C-contiguous here.  One serial build.
    def embedding_backward(gy, index, padding_idx, grad):  # type: ignore[no-untyped-def]
        kcpu.pick(kernel, gy.size, "cheap")(gy, index, padding_idx, grad)
        return grad

    return embedding_backward


def _embedding_cuda(kernels: Any, generic: Any) -> Any:
    # gy is indexed through its strides; index and grad are read flat ("raw"), so a grad
    # of another layout goes to the generic version and a strided index is copied.
    kernel = kernels()

    def embedding_backward(gy, index, padding_idx, grad):  # type: ignore[no-untyped-def]
        if not grad.flags.c_contiguous:
            return generic(gy, index, padding_idx, grad)
        if gy.size:
            flat_index = index if index.flags.c_contiguous else index.copy()
            kernel(gy, flat_index, gy.shape[1], padding_idx, grad)
        return grad

    return embedding_backward


@declare(
    "embedding_backward",
    "grad[index[r]] += gy[r] for every row r, padding row skipped",
    cpu=Numba(_embedding_cpu, "embedding_numba"),
    cuda=Cuda(_embedding_cuda),
)
def embedding_backward(xp: Any, gy: Any, index: Any, padding_idx: int, grad: Any) -> Any:
    if index.shape[0] == 0:
        return grad
    order = xp.argsort(index, kind="stable")
    ordered = index[order]
    starts = xp.flatnonzero(ordered[1:] != ordered[:-1]) + 1
    starts = xp.concatenate((xp.zeros(1, dtype=starts.dtype), starts))
    rows = ordered[starts]
    # CuPy's reduceat subtracts prefix sums over the whole array, whose float32 rounding grows with the
    # array's length, not with a group's sum: summed in float64 there.  NumPy sums each group in turn.
    accumulate = None if xp is np else xp.float64
    sums = xp.add.reduceat(gy[order], starts, axis=0, dtype=accumulate).astype(gy.dtype, copy=False)
    if padding_idx >= 0:
        keep = rows != padding_idx
        rows, sums = rows[keep], sums[keep]
    grad[rows] += sums
    return grad
