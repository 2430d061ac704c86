"""CUDA kernel of the embedding backward: a thread per gradient element, atomicAdd into the weight gradient.

Repeated indices make several threads add to one weight-gradient element, so
the additions are atomic.  CuPy's own scatter-add (``cupyx.scatter_add``)
relies on ``atomicAdd`` for float32 and float64 alike (native on compute
capability 6.0 and later, emulated by CuPy's ``atomics.cuh`` before that), so
both of bpcore's dtypes are covered.  The order of the additions, and so the
last bits of a float sum, may differ from run to run (PyTorch's CUDA
embedding backward has the same property unless deterministic mode is set).

``index`` and ``grad`` are ``raw`` (read and written flat): the operation's
wrapper passes a contiguous 1-D int64 ``index`` and hands a ``grad`` that is
not C-contiguous to the generic version (a parameter's gradient, a view of the
flat gradient buffer, always is); ``gy`` may have any layout, as CuPy's
element index ``i`` is the row-major position whatever the strides.

Importing this module registers the kernel's source (plain data, no CuPy).
"""

from __future__ import annotations

from .cuda_sources import Elementwise, add

add(
    Elementwise(
        "bp_embedding_backward",
        "T gy, raw int64 index, int64 width, int64 padding_idx",
        "raw T grad",
        "const long long row = index[i / width];\n"
        "if (row != padding_idx) atomicAdd(&grad[row * width + i % width], gy);",
    )
)
