"""Max pooling's commonest window, 2x2 with stride 2, as straight-line Numba kernels.

The general kernels (:mod:`.pooling_numba`) loop over every window position
with a data-dependent branch; for the 2x2 window with stride 2 that almost
every CNN uses, the four candidates are compared with selects instead (no
branch, 3-4x faster on the LeNet shapes), and the backward writes every
input pixel exactly once (the gradient or zero, as masked bit patterns), so
it needs no zeroing pass where the windows tile the image.  Same results as the general kernels:
the first maximum on ties, the last NaN of a window that holds one, window positions ``i * 2 + j``.

:func:`max_pool2d_forward_2x2` and :func:`max_pool2d_backward_2x2` take the
operations' arguments; the operations' CPU wrappers
(:mod:`bpcore.backends.ops.pooling`) run them for that window (:func:`applies`)
and the general kernels for any other.  Imported, like every kernel module,
only when a backend first resolves the operations; compiled on first call
and cached on disk.
"""

from __future__ import annotations

from typing import Any

import numpy
from numba import prange

from .numba_jit import KernelPair

# Output positions per block of the forward: the positions are first written to a small int32
# buffer, then widened into the int64 ``index``.  Selecting int64 positions in the comparison loop
# kept it from vectorising: 34-52 -> 26-30 us at the digits CNN's 64x16x8x8 (one thread, CPU time).
BLOCK = 2048


def _forward(image: Any, out: Any, index: Any) -> Any:  # pragma: no cover  (compiled)
    n, c, oh, ow = out.shape
    h, w = image.shape[2], image.shape[3]
    # Flat memory and unsigned offsets, as in the backward; one loop over the pairs of image rows
    # that the output rows read (a plane and row loop cost more than the work at 4-wide rows).
    source, best, where_at = image.ravel(), out.ravel(), index.ravel()
    rows = n * c * oh
    per_block = max(1, BLOCK // max(ow, 1))
    for block in prange((rows + per_block - 1) // per_block):
        first = block * per_block
        last = min(rows, first + per_block)
        chosen = numpy.empty((last - first) * ow, numpy.int32)
        plane, y = first // oh, first % oh  # counted on below: no division per row
        for pair in range(first, last):
            row = numpy.uint64(pair * ow)
            at = numpy.uint64((pair - first) * ow)
            upper = numpy.uint64((plane * h + 2 * y) * w)
            lower = upper + numpy.uint64(w)
            y += 1
            if y == oh:
                plane, y = plane + 1, 0
            for x in range(numpy.uint64(ow)):
                left = x + x
                p, q = source[upper + left], source[upper + left + numpy.uint64(1)]
                u, v = source[lower + left], source[lower + left + numpy.uint64(1)]
                right = (q > p) | (q != q)  # the later one wins if NaN (PyTorch's choice)
                top = q if right else p
                top_at = numpy.int32(right)
                right = (v > u) | (v != v)
                bottom = v if right else u
                bottom_at = numpy.int32(right) + numpy.int32(2)
                low = (bottom > top) | (bottom != bottom)
                best[row + x] = bottom if low else top
                chosen[at + x] = bottom_at if low else top_at
        offset = numpy.uint64(first * ow)
        for k in range(numpy.uint64(chosen.size)):
            where_at[offset + k] = chosen[k]
    return out


def _backward(gy_bits: Any, index: Any, grad_bits: Any) -> Any:  # pragma: no cover  (compiled)
    n, c, oh, ow = gy_bits.shape
    h, w = grad_bits.shape[2], grad_bits.shape[3]
    if h != 2 * oh or w != 2 * ow:
        grad_bits[...] = 0  # an odd row or column no window covers
    # The values travel as their bit patterns (integer views), masked by
    # -(position == tap): all ones or zero.  Exact for every value (NaN
    # included), and, unlike a float select against an int64 index, it
    # vectorises (measured 0.9 ms instead of 2.9 ms at 64x32x28x28).
    # Flat memory and unsigned offsets: Numba's wrap-around of negative
    # signed indices would also keep the loop from vectorising.  One loop over
    # the output rows, as in the forward: 38-60 -> 28-32 us at 64x16x8x8.
    source, where_at, target = gy_bits.ravel(), index.ravel(), grad_bits.ravel()
    tiles = h == 2 * oh
    for pair in prange(n * c * oh):
        row = numpy.uint64(pair * ow)
        upper = numpy.uint64(2 * pair * w if tiles else (pair // oh * h + 2 * (pair % oh)) * w)
        lower = upper + numpy.uint64(w)
        for x in range(numpy.uint64(ow)):
            g, where = source[row + x], where_at[row + x]
            left = x + x
            target[upper + left] = g & -(where == 0)
            target[upper + left + numpy.uint64(1)] = g & -(where == 1)
            target[lower + left] = g & -(where == 2)
            target[lower + left + numpy.uint64(1)] = g & -(where == 3)
    return grad_bits


# Serial and prange builds, as the registered kernels have (the wrappers pick one by size).
FORWARD, BACKWARD = KernelPair(_forward), KernelPair(_backward)


def max_pool2d_forward_2x2(
    image: Any, kh: int, kw: int, sh: int, sw: int, out: Any, index: Any, build: Any = None
) -> Any:
    """``max_pool2d_forward`` for the 2x2 window with stride 2 (C-contiguous arrays).

    ``build``: one of :data:`FORWARD`'s two builds (default: the serial one).
    """
    return (build or FORWARD.serial)(image, out, index)


def max_pool2d_backward_2x2(
    gy: Any, index: Any, kh: int, kw: int, sh: int, sw: int, grad: Any, build: Any = None
) -> Any:
    """``max_pool2d_backward`` for the 2x2 window with stride 2 (C-contiguous arrays of one dtype).

    ``build``: one of :data:`BACKWARD`'s two builds (default: the serial one).
    """
    bits = numpy.dtype(f"int{8 * grad.dtype.itemsize}")
    (build or BACKWARD.serial)(gy.view(bits), index, grad.view(bits))
    return grad


def applies(kh: int, kw: int, sh: int, sw: int, *arrays: Any) -> bool:
    """Whether the 2x2 kernels take this call: the 2x2 stride-2 window over C-contiguous arrays."""
    return kh == kw == sh == sw == 2 and all(a.flags.c_contiguous for a in arrays)

