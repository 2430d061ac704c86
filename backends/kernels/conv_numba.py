"""Numba kernels of the convolution's data movement: im2col, col2im and the channel-major swaps.

The convolution works on the transposed im2col matrix ``cols`` of shape
``(C * kh * kw, N * OH * OW)``: row ``(c, i, j)`` holds, for every output
pixel, the input pixel that kernel tap ``(i, j)`` of channel ``c`` reads
(zero where the window hangs over the padding).  In that layout every row is
gathered from, and scattered back to, runs of one image row, so both loops
walk memory in order; the padding is folded into the loop bounds, so no
padded copy of the images is ever made.

* ``im2col``: one pass writing ``cols`` (rows in parallel);
* ``col2im``: the scatter-add back, one pass per (sample, channel) plane,
  which owns its output: no temporaries and no races;
* ``channels_to_images``: ``(C, N * P)`` matrix product result plus the bias
  into ``(N, C, P)`` images, with a fused ReLU if asked;
* ``images_to_channels``: the reverse for the output gradient (times the
  ReLU's derivative if asked), with the bias gradient (float64 sums) in the
  same pass.

Each is named after its operation and compiled on first use (never at
import) and cached on disk (:mod:`.numba_jit`), in a serial build for the
sizes of the networks we benchmark and a ``prange`` build for large ones.
The kernels walk the arrays' flat memory with unsigned indices (``index``):
Numba wraps a negative signed index around, and that per-access check kept
the copies from vectorising (measured 3-4x slower than NumPy's own strided
copy).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange

from .numba_jit import OPTIONS, kernel, with_options

index = np.uint64


@numba.njit(inline="always", **OPTIONS)
def span(size: int, out: int, stride: int, offset: int) -> tuple[int, int]:  # pragma: no cover  (compiled)
    """The outputs ``o`` in ``[lo, hi)`` whose input ``o * stride + offset`` lies in ``[0, size)``."""
    lo = 0 if offset >= 0 else (-offset + stride - 1) // stride
    hi = 0 if size - 1 - offset < 0 else (size - 1 - offset) // stride + 1
    lo, hi = min(lo, out), min(hi, out)
    return lo, max(lo, hi)


@kernel
def im2col(  # pragma: no cover  (compiled)
    x: Any, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, top: int, left: int, oh: int, ow: int,
    cols: Any,
) -> Any:
    n, c, h, w = x.shape
    p = oh * ow
    source, target = x.ravel(), cols.ravel()
    for r in prange(c * kh * kw):
        ch = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        y_lo, y_hi = span(h, oh, sh, i * dh - top)
        x_lo, x_hi = span(w, ow, sw, j * dw - left)
        count, step = index(x_hi - x_lo), index(sw)
        for a in range(n):
            for y in range(oh):
                row = index((r * n + a) * p + y * ow)
                if y < y_lo or y >= y_hi:
                    for o in range(index(ow)):
                        target[row + o] = 0.0
                    continue
                start = index(((a * c + ch) * h + y * sh + i * dh - top) * w + x_lo * sw + j * dw - left)
                for o in range(index(x_lo)):
                    target[row + o] = 0.0
                first = row + index(x_lo)
                if sw == 1:  # unit stride, spelled out so that the copy vectorises
                    for o in range(count):
                        target[first + o] = source[start + o]
                else:
                    for o in range(count):
                        target[first + o] = source[start + o * step]
                for o in range(index(x_hi), index(ow)):
                    target[row + o] = 0.0
    return cols


@kernel
def col2im(  # pragma: no cover  (compiled)
    cols: Any, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, top: int, left: int, oh: int, ow: int,
    grad: Any,
) -> Any:
    n, c, h, w = grad.shape
    p = oh * ow
    source, target = cols.ravel(), grad.ravel()
    for q in prange(n * c):
        a = q // c
        ch = q % c
        plane = index(q * h * w)
        for k in range(index(h * w)):
            target[plane + k] = 0.0
        for i in range(kh):
            y_lo, y_hi = span(h, oh, sh, i * dh - top)
            for j in range(kw):
                r = (ch * kh + i) * kw + j
                x_lo, x_hi = span(w, ow, sw, j * dw - left)
                count, step = index(x_hi - x_lo), index(sw)
                for y in range(y_lo, y_hi):
                    start = index((r * n + a) * p + y * ow + x_lo)
                    first = plane + index((y * sh + i * dh - top) * w + x_lo * sw + j * dw - left)
                    if sw == 1:  # unit stride, spelled out so that the add vectorises
                        for o in range(count):
                            target[first + o] += source[start + o]
                    else:
                        for o in range(count):
                            target[first + o * step] += source[start + o]
    return grad


@kernel
def channels_to_images(z: Any, bias: Any, out: Any, relu: bool) -> Any:  # pragma: no cover  (compiled)
    n, c = out.shape[0], out.shape[1]
    p = out.size // max(n * c, 1)
    source, target = z.ravel(), out.ravel()
    for q in prange(n * c):
        a = q // c
        ch = q % c
        b = bias[ch]
        start, first = index((ch * n + a) * p), index(q * p)
        if relu:
            for k in range(index(p)):
                value = source[start + k] + b
                target[first + k] = 0.0 if value < 0 else value  # NaN stays NaN, as in NumPy's maximum
        else:
            for k in range(index(p)):
                target[first + k] = source[start + k] + b
    return out


# The bias-gradient sums may be reassociated (float64 partial sums in any
# order): without it the sum is one serial chain of dependent adds, 5-10x
# slower than the swap it rides on.
@kernel
@with_options(fastmath={"reassoc"})
def images_to_channels(  # pragma: no cover  (compiled)
    gy: Any, y: Any, g: Any, bias_grad: Any, relu: bool, with_bias: bool, accumulate: bool
) -> Any:
    n, c = gy.shape[0], gy.shape[1]
    p = gy.size // max(n * c, 1)
    source, saved, target = gy.ravel(), y.ravel(), g.ravel()
    for ch in prange(c):
        total = 0.0
        for a in range(n):
            start, first = index((a * c + ch) * p), index((ch * n + a) * p)
            if relu:
                for k in range(index(p)):
                    value = source[start + k] if saved[start + k] > 0 else 0.0
                    target[first + k] = value
                    total += value
            else:
                for k in range(index(p)):
                    value = source[start + k]
                    target[first + k] = value
                    total += value
        if with_bias:
            if accumulate:
                bias_grad[ch] += total
            else:
                bias_grad[ch] = total
    return g

