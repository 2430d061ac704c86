"""Numba kernel of the embedding backward: a scatter-add of gradient rows into the weight gradient.

One pass over the gradient rows, no temporaries: row ``r`` of ``gy`` is added
to row ``index[r]`` of ``grad`` (repeated indices add up), except for the
padding row.  Compiled on first use (never at import) and cached on disk,
like the other Numba kernels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .built_once import BuiltOnce


def _make(name: str) -> Callable[..., Any]:
    if name != "embedding_backward":
        raise ImportError(f"no CPU kernel for operation {name!r}")
    import numba

    @numba.njit(cache=True, nogil=True)
    def scatter_add_rows(gy: Any, index: Any, padding_idx: int, grad: Any) -> Any:  # pragma: no cover
        rows, width = gy.shape
        for r in range(rows):
            row = index[r]
            if row == padding_idx:
                continue
            for c in range(width):
                grad[row, c] += gy[r, c]
        return grad

    def embedding_backward(gy: Any, index: Any, padding_idx: int, grad: Any) -> Any:
        return scatter_add_rows(gy, index, padding_idx, grad)

    return embedding_backward


embedding_kernel = BuiltOnce(_make).builder
