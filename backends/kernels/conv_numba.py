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

Each kernel is compiled on first use (never at import) and cached on disk,
in a serial build for the sizes of the networks we benchmark and a
``prange`` build for large ones (see :data:`PARALLEL_MIN`).
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from .built_once import BuiltOnce

# Elements from which the parallel build runs.  Right after a matrix product
# the BLAS threads still spin, and a parallel region started then fights them
# for the cores (see the note in :mod:`.cpu`), so only large arrays use it.
PARALLEL_MIN = 1 << 22


def _span(size: int, out: int, stride: int, offset: int) -> tuple[int, int]:
    """The outputs ``o`` in ``[lo, hi)`` whose input ``o * stride + offset`` lies in ``[0, size)``."""
    lo = 0 if offset >= 0 else (-offset + stride - 1) // stride
    hi = 0 if size - 1 - offset < 0 else (size - 1 - offset) // stride + 1
    lo, hi = min(lo, out), min(hi, out)
    return lo, max(lo, hi)


# The kernels below call ``span``, loop with ``prange`` and index with
# ``index``; :func:`_compile` binds them to the compiled ``_span``, to
# ``numba.prange`` (parallel build) or ``range`` (serial build) and to
# ``numpy.uint64``.  They walk the arrays' flat memory with unsigned indices:
# Numba wraps a negative signed index around, and that per-access check kept
# the copies from vectorising (measured 3-4x slower than NumPy's own strided
# copy).  As plain Python they run unchanged.
span = _span
prange = range
index = int


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


_KERNELS: dict[str, Callable[..., Any]] = {
    "im2col": im2col,
    "col2im": col2im,
    "channels_to_images": channels_to_images,
    "images_to_channels": images_to_channels,
}
# Per kernel: the positions of the arrays it reads (made C-contiguous first)
# and of those it writes (which must be: otherwise the generic version runs),
# and of the array whose size picks the build.
_READS = {"im2col": (0,), "col2im": (0,), "channels_to_images": (0, 1), "images_to_channels": (0, 1)}
_WRITES = {"im2col": (11,), "col2im": (11,), "channels_to_images": (2,), "images_to_channels": (2, 3)}
_SIZE_OF = {"im2col": 11, "col2im": 0, "channels_to_images": 0, "images_to_channels": 2}

# The bias-gradient sums may be reassociated (float64 partial sums in any
# order): without it the sum is one serial chain of dependent adds, 5-10x
# slower than the swap it rides on.
_FASTMATH: dict[str, Any] = {"images_to_channels": {"reassoc"}}


def _compile(function: Callable[..., Any], parallel: bool, span: Any, numba: Any) -> Any:
    # A copy with its own name per build: Numba's disk cache is keyed by the
    # qualified name, not the flags, so the two builds must not share one.
    suffix = "parallel" if parallel else "serial"
    scope = dict(function.__globals__, prange=numba.prange if parallel else range, span=span, index=np.uint64)
    copy = types.FunctionType(function.__code__, scope, f"{function.__name__}_{suffix}")
    copy.__qualname__ = f"{function.__qualname__}_{suffix}"
    copy.__module__ = function.__module__
    fastmath = _FASTMATH.get(function.__name__, False)
    return numba.njit(parallel=parallel, cache=True, nogil=True, error_model="numpy", fastmath=fastmath)(copy)


def _make(name: str) -> Callable[..., Any]:
    import numba  # ImportError here means: use the generic version

    from ..ops.registry import OPERATIONS

    span = numba.njit(cache=True, nogil=True, inline="always")(_span)
    serial = _compile(_KERNELS[name], False, span, numba)
    parallel = _compile(_KERNELS[name], True, span, numba)
    generic = functools.partial(OPERATIONS[name].generic, np)
    reads, writes, size_of = _READS[name], _WRITES[name], _SIZE_OF[name]

    def run(*args: Any) -> Any:
        if not all(args[position].flags.c_contiguous for position in writes):
            return generic(*args)
        given = list(args)
        for position in reads:
            given[position] = np.ascontiguousarray(given[position])
        kernel = parallel if given[size_of].size >= PARALLEL_MIN else serial
        return kernel(*given)

    run.__name__ = name
    return run


conv_kernel = BuiltOnce(_make).builder
