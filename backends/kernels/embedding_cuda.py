"""CUDA kernel of the embedding backward: a thread per gradient element, atomicAdd into the weight gradient.

Repeated indices make several threads add to one weight-gradient element, so
the additions are atomic.  CuPy's own scatter-add (``cupyx.scatter_add``)
relies on ``atomicAdd`` for float32 and float64 alike (native on compute
capability 6.0 and later, emulated by CuPy's ``atomics.cuh`` before that), so
both of bpcore's dtypes are covered.  The order of the additions, and so the
last bits of a float sum, may differ from run to run (PyTorch's CUDA
embedding backward has the same property unless deterministic mode is set).

The wrapper passes ``index`` as a contiguous 1-D int64 array and needs a
C-contiguous ``grad`` (a parameter's gradient, a view of the flat gradient
buffer, always is); ``gy`` may have any layout: CuPy's element index ``i``
is the row-major position whatever the strides.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .cuda_sources import NVRTC_OPTIONS, Elementwise

SCATTER_ADD_ROWS = Elementwise(
    "bpcore_embedding_scatter_add",
    "T gy, raw int64 index, int64 width, int64 padding_idx",
    "raw T grad",
    "const long long row = index[i / width];\n"
    "if (row != padding_idx) atomicAdd(&grad[row * width + i % width], gy);",
)

_lock = threading.Lock()
_built: dict[str, Any] = {}


def scatter_add_kernel() -> Any:
    """The ``cupy.ElementwiseKernel`` of :data:`SCATTER_ADD_ROWS`, made once (also used by the tests)."""
    with _lock:
        kernel = _built.get("scatter_add")
        if kernel is None:
            import cupy

            spec = SCATTER_ADD_ROWS
            kernel = cupy.ElementwiseKernel(
                spec.in_params, spec.out_params, spec.body, spec.name, options=NVRTC_OPTIONS
            )
            _built["scatter_add"] = kernel
    return kernel


def make_embedding_backward(kernel: Any) -> Callable[..., Any]:
    """The ``embedding_backward`` operation launching ``kernel`` (the real one, or a test's stand-in)."""

    def embedding_backward(gy: Any, index: Any, padding_idx: int, grad: Any) -> Any:
        if not grad.flags.c_contiguous:
            import cupy

            from ..ops.embedding import embedding_backward as generic

            return generic(cupy, gy, index, padding_idx, grad)
        if gy.size:
            flat_index = index if index.flags.c_contiguous else index.copy()  # a raw array is read flat
            kernel(gy, flat_index, gy.shape[1], padding_idx, grad)
        return grad

    return embedding_backward


def build() -> Callable[..., Any]:
    """The ``cuda=`` builder: the operation over the real CuPy kernel."""
    return make_embedding_backward(scatter_add_kernel())
