"""Numba kernels of max pooling: the forward saves each window's argmax, the backward scatters from it.

One pass over the output pixels each, no temporaries.  Each is named after
its operation, compiled on first use (never at import) and cached on disk,
like the other Numba kernels (:mod:`.numba_jit`).
"""

from __future__ import annotations

from typing import Any

from .numba_jit import serial_kernel


@serial_kernel
def max_pool2d_forward(image: Any, kh: int, kw: int, sh: int, sw: int, out: Any, index: Any) -> Any:
    n, c, oh, ow = out.shape
    for a in range(n):
        for b in range(c):
            for y in range(oh):
                for x in range(ow):
                    best = image[a, b, y * sh, x * sw]
                    where = 0
                    for i in range(kh):
                        for j in range(kw):
                            value = image[a, b, y * sh + i, x * sw + j]
                            if value > best or value != value:  # a NaN wins, the last one
                                best, where = value, i * kw + j
                    out[a, b, y, x] = best
                    index[a, b, y, x] = where
    return out


@serial_kernel
def max_pool2d_backward(gy: Any, index: Any, kh: int, kw: int, sh: int, sw: int, grad: Any) -> Any:
    grad[...] = 0.0
    n, c, oh, ow = gy.shape
    for a in range(n):
        for b in range(c):
            for y in range(oh):
                for x in range(ow):
                    where = index[a, b, y, x]
                    grad[a, b, y * sh + where // kw, x * sw + where % kw] += gy[a, b, y, x]
    return grad
