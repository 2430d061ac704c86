"""Numba kernels of a convolution fused with its ReLU and a 2x2 stride-2 max pooling.

A convolution's product ``z`` is channel-major, ``(C, N * OH * OW)``.  When a
ReLU and a 2x2 max pooling with stride 2 follow, the full-size activation
``(N, C, OH, OW)`` is needed by nothing but the pooling, so these kernels go
from ``z`` to the pooled images and back without it:

* ``channels_to_pooled``: ``out[n, c, y, x]`` = the maximum of the window
  ``relu(z + bias)`` at ``(2y, 2x)`` of image ``n``, ``index`` (uint8) its
  position ``i * 2 + j``; each value is the bias-add and ReLU of
  ``channels_to_images`` and the comparisons are those of the 2x2 max pool
  (:mod:`.max_pool_numba`), so value and position are the unfused ones;
* ``pooled_to_channels``: ``g`` (``z``'s layout) = each pooled gradient at its
  window's chosen position where the pooled output is positive (the ReLU's
  derivative there), zero everywhere else; the bias gradient (float64 sums)
  in the same pass, as ``images_to_channels`` does.

At the LeNet shapes this skips writing and reading back the full-size
activation and its gradient (four passes over four times the pooled size).
Compiled on first use and cached on disk, a serial and a ``prange`` build,
flat memory walked with unsigned offsets as in :mod:`.conv_numba`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange

from .numba_jit import kernel, with_options

index = np.uint64


@kernel
def channels_to_pooled(z: Any, bias: Any, out: Any, where: Any) -> Any:  # pragma: no cover  (compiled)
    n, c, ph, pw = out.shape
    ow = 2 * pw
    p = 4 * ph * pw
    source, best, where_at = z.ravel(), out.ravel(), where.ravel()
    one = index(1)
    for q in prange(n * c):
        a = q // c
        ch = q % c
        b = bias[ch]
        start = index((ch * n + a) * p)
        for y in range(ph):
            upper = start + index(2 * y * ow)
            lower = upper + index(ow)
            row = index((q * ph + y) * pw)
            for x in range(index(pw)):
                left = x + x
                # The bias-add and ReLU of channels_to_images (NaN stays NaN), then the 2x2 pool's selects.
                s = source[upper + left] + b
                t = source[upper + left + one] + b
                u = source[lower + left] + b
                v = source[lower + left + one] + b
                s = 0.0 if s < 0 else s
                t = 0.0 if t < 0 else t
                u = 0.0 if u < 0 else u
                v = 0.0 if v < 0 else v
                right = t > s
                top = t if right else s
                top_at = 1 if right else 0
                right = v > u
                bottom = v if right else u
                bottom_at = 3 if right else 2
                low = bottom > top
                best[row + x] = bottom if low else top
                where_at[row + x] = bottom_at if low else top_at
    return out


# The values travel as their bit patterns (integer views), masked by
# -(condition): all ones or zero.  Exact for every value, and, unlike float
# selects against the positions, it vectorises (as in max_pool_numba; measured
# 0.9 ms -> 0.3 ms at 32x32x28x28).  The bias-gradient sums read the floats
# of the pooled gradient, reassociated as in images_to_channels.
@kernel
@with_options(fastmath={"reassoc"})
def pooled_to_channels(  # pragma: no cover  (compiled)
    gy: Any, gy_bits: Any, y: Any, where: Any, g_bits: Any, bias_grad: Any, with_bias: bool, accumulate: bool
) -> Any:
    n, c, ph, pw = gy.shape
    ow = 2 * pw
    p = 4 * ph * pw
    plane_size = index(ph * pw)
    source, bits, saved = gy.ravel(), gy_bits.ravel(), y.ravel()
    where_at, target = where.ravel(), g_bits.ravel()
    one = index(1)
    for ch in prange(c):
        total = 0.0
        for a in range(n):
            first = index((ch * n + a) * p)
            plane = index((a * c + ch) * ph * pw)
            if with_bias:
                for k in range(plane_size):
                    total += source[plane + k] if saved[plane + k] > 0 else 0.0
            for row in range(ph):
                upper = first + index(2 * row * ow)
                lower = upper + index(ow)
                at = plane + index(row * pw)
                for x in range(index(pw)):
                    k = at + x
                    value = bits[k] & -(saved[k] > 0)
                    chosen = where_at[k]
                    left = x + x
                    target[upper + left] = value & -(chosen == 0)
                    target[upper + left + one] = value & -(chosen == 1)
                    target[lower + left] = value & -(chosen == 2)
                    target[lower + left + one] = value & -(chosen == 3)
        if with_bias:
            if accumulate:
                bias_grad[ch] += total
            else:
                bias_grad[ch] = total
    return g_bits
