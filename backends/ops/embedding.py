"""The embedding's hot step: the backward scatter-add of gradient rows into the weight gradient.

* ``embedding_backward(gy, index, padding_idx, grad)``: ``gy`` (m, d) float,
  ``index`` (m,) int64 in ``[0, v)``, ``grad`` (v, d) of ``gy``'s dtype;
  adds row ``r`` of ``gy`` to row ``index[r]`` of ``grad`` for every ``r``
  (repeated indices add up), skipping the rows whose index equals
  ``padding_idx`` (``-1``: none).  ``grad`` is updated in place and returned.

The generic version groups equal indices by one stable sort and sums each
group with ``add.reduceat`` (memory of one gathered copy of ``gy``; NumPy's
unbuffered ``add.at`` is several times slower); Numba (CPU) and an
``atomicAdd`` kernel (CUDA) do it in one pass.
"""

from __future__ import annotations

from typing import Any

from ..kernels import embedding_cuda
from ..kernels.embedding_numba import embedding_kernel
from .registry import declare


@declare(
    "embedding_backward",
    "grad[index[r]] += gy[r] for every row r, padding row skipped",
    cpu=embedding_kernel("embedding_backward"),
    cuda=embedding_cuda.build,
)
def embedding_backward(xp: Any, gy: Any, index: Any, padding_idx: int, grad: Any) -> Any:
    if index.shape[0] == 0:
        return grad
    order = xp.argsort(index, kind="stable")
    ordered = index[order]
    starts = xp.flatnonzero(ordered[1:] != ordered[:-1]) + 1
    starts = xp.concatenate((xp.zeros(1, dtype=starts.dtype), starts))
    rows = ordered[starts]
    sums = xp.add.reduceat(gy[order], starts, axis=0)
    if padding_idx >= 0:
        keep = rows != padding_idx
        rows, sums = rows[keep], sums[keep]
    grad[rows] += sums
    return grad
