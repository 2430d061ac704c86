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

import types
from collections.abc import Callable
from typing import Any

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


# The kernels below call ``span`` and loop with ``prange``; :func:`_compile`
# binds them to the compiled ``_span`` and to ``numba.prange`` (parallel
# build) or ``range`` (serial build).  As plain Python they run unchanged.
span = _span
prange = range


def im2col(  # pragma: no cover  (compiled)
    x: Any, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, top: int, left: int, oh: int, ow: int,
    cols: Any,
) -> Any:
    n, c, h, w = x.shape
    p = oh * ow
    for r in prange(c * kh * kw):
        ch = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        y_lo, y_hi = span(h, oh, sh, i * dh - top)
        x_lo, x_hi = span(w, ow, sw, j * dw - left)
        for a in range(n):
            base = a * p
            for y in range(oh):
                row = base + y * ow
                if y < y_lo or y >= y_hi:
                    for o in range(ow):
                        cols[r, row + o] = 0.0
                    continue
                src = y * sh + i * dh - top
                shift = j * dw - left
                for o in range(x_lo):
                    cols[r, row + o] = 0.0
                if sw == 1:  # unit stride, spelled out so that the copy vectorises
                    for o in range(x_lo, x_hi):
                        cols[r, row + o] = x[a, ch, src, o + shift]
                else:
                    for o in range(x_lo, x_hi):
                        cols[r, row + o] = x[a, ch, src, o * sw + shift]
                for o in range(x_hi, ow):
                    cols[r, row + o] = 0.0
    return cols


def col2im(  # pragma: no cover  (compiled)
    cols: Any, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, top: int, left: int, oh: int, ow: int,
    grad: Any,
) -> Any:
    n, c, h, w = grad.shape
    p = oh * ow
    for q in prange(n * c):
        a = q // c
        ch = q % c
        for yy in range(h):
            for xx in range(w):
                grad[a, ch, yy, xx] = 0.0
        base = a * p
        for i in range(kh):
            y_lo, y_hi = span(h, oh, sh, i * dh - top)
            for j in range(kw):
                r = (ch * kh + i) * kw + j
                x_lo, x_hi = span(w, ow, sw, j * dw - left)
                shift = j * dw - left
                for y in range(y_lo, y_hi):
                    dst = y * sh + i * dh - top
                    row = base + y * ow
                    if sw == 1:  # unit stride, spelled out so that the add vectorises
                        for o in range(x_lo, x_hi):
                            grad[a, ch, dst, o + shift] += cols[r, row + o]
                    else:
                        for o in range(x_lo, x_hi):
                            grad[a, ch, dst, o * sw + shift] += cols[r, row + o]
    return grad


def channels_to_images(z: Any, bias: Any, out: Any, relu: bool) -> Any:  # pragma: no cover  (compiled)
    n, c, p = out.shape
    for q in prange(n * c):
        a = q // c
        ch = q % c
        b = bias[ch]
        base = a * p
        if relu:
            for k in range(p):
                value = z[ch, base + k] + b
                out[a, ch, k] = value if value > 0 else 0.0
        else:
            for k in range(p):
                out[a, ch, k] = z[ch, base + k] + b
    return out


def images_to_channels(  # pragma: no cover  (compiled)
    gy: Any, y: Any, g: Any, bias_grad: Any, relu: bool, with_bias: bool, accumulate: bool
) -> Any:
    n, c, p = gy.shape
    for ch in prange(c):
        total = 0.0
        for a in range(n):
            base = a * p
            if relu:
                for k in range(p):
                    value = gy[a, ch, k] if y[a, ch, k] > 0 else 0.0
                    g[ch, base + k] = value
                    total += value
            else:
                for k in range(p):
                    value = gy[a, ch, k]
                    g[ch, base + k] = value
                    total += value
        if with_bias:
            if accumulate:
                bias_grad[ch] += total
            else:
                bias_grad[ch] = total
    return g


def _as_planes(images: Any) -> Any:
    """A C-contiguous (N, C, H, W) array as its (N, C, H * W) view."""
    return images.reshape(images.shape[0], images.shape[1], -1)


_KERNELS: dict[str, Callable[..., Any]] = {
    "im2col": im2col,
    "col2im": col2im,
    "channels_to_images": channels_to_images,
    "images_to_channels": images_to_channels,
}


# The bias-gradient sums may be reassociated (float64 partial sums in any
# order): without it the sum is one serial chain of dependent adds, 5-10x
# slower than the swap it rides on.
_FASTMATH: dict[str, Any] = {"images_to_channels": {"reassoc"}}


def _compile(function: Callable[..., Any], parallel: bool, span: Any, numba: Any) -> Any:
    # A copy with its own name per build: Numba's disk cache is keyed by the
    # qualified name, not the flags, so the two builds must not share one.
    suffix = "parallel" if parallel else "serial"
    scope = dict(function.__globals__, prange=numba.prange if parallel else range, span=span)
    copy = types.FunctionType(function.__code__, scope, f"{function.__name__}_{suffix}")
    copy.__qualname__ = f"{function.__qualname__}_{suffix}"
    copy.__module__ = function.__module__
    fastmath = _FASTMATH.get(function.__name__, False)
    return numba.njit(parallel=parallel, cache=True, nogil=True, error_model="numpy", fastmath=fastmath)(copy)


def _make(name: str) -> Callable[..., Any]:
    import numba  # ImportError here means: use the generic version

    span = numba.njit(cache=True, nogil=True, inline="always")(_span)
    serial = _compile(_KERNELS[name], False, span, numba)
    parallel = _compile(_KERNELS[name], True, span, numba)

    def pick(size: int) -> Any:
        return parallel if size >= PARALLEL_MIN else serial

    if name == "channels_to_images":

        def to_images(z: Any, bias: Any, out: Any, relu: bool) -> Any:
            pick(z.size)(z, bias, _as_planes(out), relu)
            return out

        return to_images
    if name == "images_to_channels":

        def to_channels(
            gy: Any, y: Any, g: Any, bias_grad: Any, relu: bool, with_bias: bool, accumulate: bool
        ) -> Any:
            return pick(g.size)(_as_planes(gy), _as_planes(y), g, bias_grad, relu, with_bias, accumulate)

        return to_channels
    if name == "im2col":
        return lambda *args: pick(args[-1].size)(*args)
    return lambda *args: pick(args[0].size)(*args)


conv_kernel = BuiltOnce(_make).builder
