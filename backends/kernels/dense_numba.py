"""The Numba kernel of a Dense layer's forward pass at a tiny inner size (imported only when Numba is wanted).

``small_dense_forward``: ``out = x @ weight + bias``, then ReLU if asked, in
one pass per row for an inner size of 2 to 4 (the first layer of a network
on a few state variables or 2-D points), where BLAS spends more on starting
the product than on computing it.  The products are accumulated as BLAS
accumulates them on the machines we measured (a fused multiply-add chain
from the first product, in the inner index order), so the values have its
bits there; the bias add and the ReLU are then those of the fused
bias-activation kernel.  Serial, named after its operation, compiled on
first use (:mod:`.numba_jit`).

``relu_bias_backward``: a fused ReLU's backward ``out = 0 where y <= 0, else gy`` and
the bias gradient ``grad_bias = out.sum(axis=0)`` in one pass, with the
bits of ``relu_backward`` and ``column_sums`` (the first row stored, the
others added in row order).
"""

from __future__ import annotations

import numpy as np

from .numba_jit import serial_kernel, with_options


@serial_kernel
@with_options(fastmath={"contract"})  # a * b + c as one fused multiply-add, as BLAS computes it
def small_dense_forward(x, weight, bias, out, relu):  # type: ignore[no-untyped-def]
    # Per row: the first products into a scratch row, then one loop per inner size
    # adding the others as fused multiply-adds in order (the scratch value is a load,
    # so no other pairing is possible), the bias and the ReLU, storing each element
    # once: loops over the columns that LLVM vectorises.
    rows, inner = x.shape
    cols = out.shape[1]
    zero = out.dtype.type(0)
    first = np.empty(cols, out.dtype)
    for r in range(rows):
        x0, x1 = x[r, 0], x[r, 1]
        for c in range(cols):
            first[c] = x0 * weight[0, c]
        if inner == 2:
            for c in range(cols):
                v = (first[c] + x1 * weight[1, c]) + bias[c]
                out[r, c] = zero if relu and v < zero else v  # ReLU: NaN stays NaN
        elif inner == 3:
            x2 = x[r, 2]
            for c in range(cols):
                v = ((first[c] + x1 * weight[1, c]) + x2 * weight[2, c]) + bias[c]
                out[r, c] = zero if relu and v < zero else v
        else:
            x2, x3 = x[r, 2], x[r, 3]
            for c in range(cols):
                v = (((first[c] + x1 * weight[1, c]) + x2 * weight[2, c]) + x3 * weight[3, c]) + bias[c]
                out[r, c] = zero if relu and v < zero else v


@serial_kernel
def relu_bias_backward(gy, y, out, grad_bias):  # type: ignore[no-untyped-def]
    rows, cols = out.shape
    zero = y.dtype.type(0)
    for c in range(cols):
        value = zero if y[0, c] <= zero else gy[0, c]  # as torch's threshold_backward
        out[0, c] = value
        grad_bias[c] = value
    for r in range(1, rows):
        for c in range(cols):
            value = zero if y[r, c] <= zero else gy[r, c]
            out[r, c] = value
            grad_bias[c] += value
