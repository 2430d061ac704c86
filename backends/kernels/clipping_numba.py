"""The Numba kernel of gradient clipping by total norm over one flat buffer (compiled on first use).

One call does what took eight array operations on 0-d arrays: the sum of
squares (in float64, four accumulators so that the additions pipeline), the
norm and the coefficient ``min(max_norm / (norm + eps), 1)`` rounded step by
step in the buffer's dtype as the array operations round them, and the
scaling pass.  Serial: the buffers it serves (one network's gradients) are
small; very large ones take the generic version, whose dot product is
threaded (the wrapper beside the declaration, ``backends/ops/clipping.py``,
chooses).  Named after its operation and compiled on first use
(:mod:`.numba_jit`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .numba_jit import serial_kernel


@serial_kernel
def clip_norm_inplace(grad: Any, max_norm: Any, eps: Any, total: Any) -> None:  # pragma: no cover  (compiled)
    n = grad.size
    s0 = s1 = s2 = s3 = 0.0
    tail = n - n % 4
    for i in range(0, tail, 4):
        a, b = np.float64(grad[i]), np.float64(grad[i + 1])
        c, d = np.float64(grad[i + 2]), np.float64(grad[i + 3])
        s0 += a * a
        s1 += b * b
        s2 += c * c
        s3 += d * d
    for i in range(tail, n):
        v = np.float64(grad[i])
        s0 += v * v
    one = total.dtype.type(1)
    # Rounded as out[...] = sum; sqrt(out); (out + eps); max_norm / that; minimum(that, 1) would be.
    squared = total.dtype.type((s0 + s1) + (s2 + s3))
    norm = total.dtype.type(math.sqrt(np.float64(squared)))
    total[0] = norm
    coefficient = max_norm / (norm + eps)
    if coefficient > one:  # NaN stays NaN, as numpy.minimum
        coefficient = one
    factor = np.float64(coefficient)
    for i in range(n):
        grad[i] = grad[i] * factor
