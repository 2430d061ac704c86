"""Numba kernels of the convolution's data movement: im2col, col2im and the channel-major swaps.

The convolution works on the transposed im2col matrix ``cols`` of shape
``(C * kh * kw, N * OH * OW)``: row ``(c, i, j)`` holds, for every output
pixel, the input pixel that kernel tap ``(i, j)`` of channel ``c`` reads
(zero where the window hangs over the padding).  In that layout every row is
gathered from, and scattered back to, runs of one image row, so both loops
walk memory in order; the padding is folded into the loop bounds, so no
padded copy of the images is ever made.

* ``im2col``: one pass writing ``cols`` (rows in parallel);
* ``col2im``: the scatter-add back, one pass per channel over its planes,
  which it owns: no temporaries and no races;

With unit strides and an output as wide as the input (a "same" convolution)
a tap's pixels of one plane are one run of the image, copied or added as
such, a mask dropping the pixels that wrap around into the padding columns:
at the small images of the benchmark CNNs (rows of 4-28 pixels) the per-row
loops cost more than the data they moved.  For planes of at most
``SMALL_PLANE`` pixels the gather goes further: one loop per plane over the
tap's shifted run, masked by the tap's whole window.
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


@numba.njit(**OPTIONS)
def inside(  # pragma: no cover  (compiled)
    kw: int, dw: int, left: int, w: int, oh: int, ow: int, merged: bool, dtype: Any
) -> Any:
    """Per column tap ``j``, over the output pixels: 1 where the input column lies in the image, else 0.

    Empty unless ``merged`` (unit strides, output as wide as the input): a tap's
    pixels of one plane are then one run of the image, which also takes the
    pixels that wrap around from the next or previous image row where the
    window hangs over the left or right padding; this mask drops those.
    """
    mask = np.zeros((kw if merged else 0, oh * ow), dtype=dtype)
    for j in range(mask.shape[0]):
        x_lo, x_hi = span(w, ow, 1, j * dw - left)
        for y in range(oh):
            for o in range(x_lo, x_hi):
                mask[j, y * ow + o] = 1.0
    return mask.ravel()


@numba.njit(**OPTIONS)
def taps_inside(  # pragma: no cover  (compiled)
    kh: int, kw: int, dh: int, dw: int, top: int, left: int, h: int, w: int, oh: int, ow: int, dtype: Any
) -> Any:
    """Per kernel tap ``(i, j)``, over the output pixels: 1 where the pixel it reads lies in the image.

    For the gather of a "same"-width convolution (unit strides, ``ow == w``):
    a tap's pixels of one plane are then the run of the flat images that
    starts at the plane plus the tap's shift, and this mask zeroes the ones
    that fall in the padding (rows above or below, columns wrapped around).
    """
    mask = np.zeros((kh * kw, oh * ow), dtype=dtype)
    for i in range(kh):
        for j in range(kw):
            for y in range(oh):
                for o in range(ow):
                    row, column = y + i * dh - top, o + j * dw - left
                    if 0 <= row < h and 0 <= column < w:
                        mask[i * kw + j, y * ow + o] = 1.0
    return mask.ravel()


# Output planes of at most this many pixels (8x8) are gathered, in the merged case, as one loop per
# plane over the tap's shifted run of the images, masked by the tap's whole window (rows and
# columns) instead of zeros, run and zeros in three loops: at such planes the three loops' set-up
# cost more than their work.  CPU time, one thread, the digits CNN's second convolution
# (16 channels of 4x4, 3x3 taps): batch 64 101-113 -> 54 us, batch 128 129-195 -> 93-108 us.  At
# LeNet's 14x14 and 28x28 planes the one loop was not faster, so they keep the three.
SMALL_PLANE = 64


@kernel
def im2col(  # pragma: no cover  (compiled)
    x: Any, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, top: int, left: int, oh: int, ow: int,
    cols: Any,
) -> Any:
    n, c, h, w = x.shape
    p = oh * ow
    source, target = x.ravel(), cols.ravel()
    merged = sh == 1 and sw == 1 and ow == w
    small = merged and p <= SMALL_PLANE
    taps = taps_inside(kh, kw, dh, dw, top, left, h, w, oh if small else 0, ow, cols.dtype)
    mask = inside(kw, dw, left, w, oh, ow, merged and not small, cols.dtype)
    last = source.size - 1
    for r in prange(c * kh * kw):
        ch = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        y_lo, y_hi = span(h, oh, sh, i * dh - top)
        x_lo, x_hi = span(w, ow, sw, j * dw - left)
        if small:  # one masked run per plane (see SMALL_PLANE)
            shift = (i * dh - top) * w + j * dw - left
            tap = index((i * kw + j) * p)
            for a in range(n):
                row = index((r * n + a) * p)
                start = (a * c + ch) * h * w + shift
                if start >= 0 and start + p - 1 <= last:
                    first = index(start)
                    for k in range(index(p)):
                        target[row + k] = source[first + k] if taps[tap + k] > 0 else 0.0
                else:  # the run reaches past the ends of the images: only masked pixels lie there
                    for k in range(p):
                        at = min(max(start + k, 0), last)
                        target[row + index(k)] = source[index(at)] if taps[tap + index(k)] > 0 else 0.0
            continue
        if merged:  # one run per plane, the wrapped-around pixels masked
            lo = index(y_lo * ow + x_lo) if y_lo < y_hi and x_lo < x_hi else index(0)
            hi = index((y_hi - 1) * ow + x_hi) if y_lo < y_hi and x_lo < x_hi else index(0)
            column = index(j * p)
            for a in range(n):
                row = index((r * n + a) * p)
                for k in range(lo):
                    target[row + k] = 0.0
                if hi > lo:
                    start = index((a * c + ch) * h * w + (y_lo + i * dh - top) * w + x_lo + j * dw - left)
                    for k in range(hi - lo):
                        target[row + lo + k] = source[start + k] if mask[column + lo + k] > 0 else 0.0
                for k in range(max(lo, hi), index(p)):
                    target[row + k] = 0.0
            continue
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
    p, hw = oh * ow, h * w
    source, target = cols.ravel(), grad.ravel()
    merged = sh == 1 and sw == 1 and ow == w
    mask = inside(kw, dw, left, w, oh, ow, merged, grad.dtype)
    # One channel's planes at a time, tap by tap, sample by sample: the tap's
    # geometry is worked out once per channel, not once per plane.
    for ch in prange(c):
        for a in range(n):
            plane = index((a * c + ch) * hw)
            for k in range(index(hw)):
                target[plane + k] = 0.0
        for i in range(kh):
            y_lo, y_hi = span(h, oh, sh, i * dh - top)
            for j in range(kw):
                r = (ch * kh + i) * kw + j
                x_lo, x_hi = span(w, ow, sw, j * dw - left)
                if y_lo >= y_hi or x_lo >= x_hi:  # the tap sees only padding
                    continue
                if merged:
                    lo, hi = index(y_lo * ow + x_lo), index((y_hi - 1) * ow + x_hi)
                    offset = (y_lo + i * dh - top) * w + x_lo + j * dw - left
                    column = index(j * p) + lo
                    wraps = x_lo > 0 or x_hi < ow
                    for a in range(n):
                        start = index((r * n + a) * p) + lo
                        first = index((a * c + ch) * hw + offset)
                        if wraps:
                            for k in range(hi - lo):
                                # adding zero leaves every sum as it is (the plane starts at +0.0)
                                target[first + k] += source[start + k] if mask[column + k] > 0 else 0.0
                        else:
                            for k in range(hi - lo):
                                target[first + k] += source[start + k]
                    continue
                count, step = index(x_hi - x_lo), index(sw)
                for a in range(n):
                    plane = index((a * c + ch) * hw)
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
                    value = 0.0 if saved[start + k] <= 0 else source[start + k]
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

