"""Numba kernel of the embedding backward: a scatter-add of gradient rows into the weight gradient.

One pass over the gradient rows, no temporaries: row ``r`` of ``gy`` is added
to row ``index[r]`` of ``grad`` (repeated indices add up), except for the
padding row.  Serial only: rows with a repeated index would race in a
parallel loop over rows.  Named after its operation and compiled on first
use (:mod:`.numba_jit`), never at import.
"""

from __future__ import annotations

from .numba_jit import serial_kernel


@serial_kernel
def embedding_backward(gy, index, padding_idx, grad):  # type: ignore[no-untyped-def]
    rows, width = gy.shape
    for r in range(rows):
        row = index[r]
        if row == padding_idx:
            continue
        for c in range(width):
            grad[row, c] += gy[r, c]
