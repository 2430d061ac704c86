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

import numba
import numpy as np
from numba import prange

from .numba_jit import OPTIONS, kernel, with_options

index = np.uint64


@numba.njit(**OPTIONS)
def quads_order(ph: int, pw: int, inverse: bool) -> Any:  # pragma: no cover  (compiled)
    """Per pixel of a (2 * ph, 2 * pw) plane in image order, its place in quads order; or, with
    ``inverse``, per place in quads order the pixel in image order.

    Quads order lays a plane out as four quarter planes, one per position (i, j) of the 2x2 window:
    pixel (2 * y + i, 2 * x + j) at ``(i * 2 + j) * ph * pw + y * pw + x``.  A pooled pixel's four
    candidates are then the same offset in four runs.
    """
    ow, pp = 2 * pw, ph * pw
    order = np.empty(4 * pp, dtype=np.uint32)
    for y in range(2 * ph):
        for x in range(ow):
            quad = ((y & 1) * 2 + (x & 1)) * pp + (y >> 1) * pw + (x >> 1)
            if inverse:
                order[quad] = y * ow + x
            else:
                order[y * ow + x] = quad
    return order


# Both swaps go through one plane in quads order (quads_order), in a scratch buffer that stays in
# the L1 cache: a gather by a table of positions, and whole-plane loops, which vectorise.  Walking
# the image rows instead, in rows of ``pw`` pooled pixels (14 and 7 at the LeNet shapes, too short
# for the vector units), ran scalar code with four loads or stores an iteration.  CPU time, one
# thread, batch 64, 32 channels of 28x28: channels_to_pooled 1.5 -> 0.9 ms, pooled_to_channels
# 2.7 -> 0.75 ms; 64 channels of 14x14: 1.0 -> 0.5 ms and 1.3 -> 0.6 ms.  (Keeping the product
# itself in quads order, with the im2col matrix's columns gathered so, saved the table's gather
# but slowed the im2col gather more: 0.08 -> 0.36 ms at LeNet's first convolution.)
@kernel
def channels_to_pooled(z: Any, bias: Any, out: Any, where: Any) -> Any:  # pragma: no cover  (compiled)
    n, c, ph, pw = out.shape
    pp = ph * pw
    p = 4 * pp
    source, best, where_at = z.ravel(), out.ravel(), where.ravel()
    pixel_of = quads_order(ph, pw, True)
    for ch in prange(c):
        b = bias[ch]
        plane = np.empty(p, dtype=z.dtype)
        for a in range(n):
            start = index((ch * n + a) * p)
            for k in range(index(p)):
                plane[k] = source[start + pixel_of[k]]
            row = index((a * c + ch) * pp)
            for k in range(index(pp)):
                # The bias-add and ReLU of channels_to_images (NaN stays NaN), then the 2x2 pool's selects.
                s = plane[k] + b
                t = plane[index(pp) + k] + b
                u = plane[index(2 * pp) + k] + b
                v = plane[index(3 * pp) + k] + b
                s = 0.0 if s < 0 else s
                t = 0.0 if t < 0 else t
                u = 0.0 if u < 0 else u
                v = 0.0 if v < 0 else v
                right = (t > s) | (t != t)  # the later one wins if NaN (PyTorch's choice)
                top = t if right else s
                top_at = 1 if right else 0
                right = (v > u) | (v != v)
                bottom = v if right else u
                bottom_at = 3 if right else 2
                low = (bottom > top) | (bottom != bottom)
                best[row + k] = bottom if low else top
                where_at[row + k] = bottom_at if low else top_at
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
    pp = index(ph * pw)
    p = 4 * ph * pw
    source, bits, saved = gy.ravel(), gy_bits.ravel(), y.ravel()
    where_at, target = where.ravel(), g_bits.ravel()
    quad_of = quads_order(ph, pw, False)
    for ch in prange(c):
        total = 0.0
        quads = np.empty(p, dtype=g_bits.dtype)
        for a in range(n):
            first = index((ch * n + a) * p)
            plane = index(a * c + ch) * pp
            if with_bias:
                for k in range(pp):
                    total += source[plane + k] if not saved[plane + k] <= 0 else 0.0  # a NaN output counts
            for position in range(4):  # a loop per quarter plane: four stores in one did not vectorise
                quarter = index(position) * pp
                for k in range(pp):
                    value = bits[plane + k] & -(not saved[plane + k] <= 0)
                    quads[quarter + k] = value & -(where_at[plane + k] == position)
            for k in range(index(p)):
                target[first + k] = quads[quad_of[k]]
        if with_bias:
            if accumulate:
                bias_grad[ch] += total
            else:
                bias_grad[ch] = total
    return g_bits
