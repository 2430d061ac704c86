"""Numba kernels of the recurrent cell steps (see :mod:`bpcore.backends.ops.recurrent`).

One pass over the ``(N, H)`` hidden units per call: each unit reads its gate
pre-activations from the input projection and the recurrent product, applies
every activation and the state update, and writes the saved gates, in one
loop without temporaries.  The backward kernels compute every gate derivative
of a unit in the same way.  Serial (a step of a recurrent layer is a few
thousand units; threads would cost more than they save between two matrix
products), compiled on first use and cached on disk like the other Numba
kernels.  The arrays must be C-contiguous (the wrappers fall back to the
generic versions otherwise).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from .built_once import BuiltOnce
from .layout import flat_or_generic


def _make(name: str) -> Callable[..., Any]:
    import math

    import numba

    jit = numba.njit(cache=True, nogil=True)

    @jit
    def sigmoid(x):  # type: ignore[no-untyped-def]  # pragma: no cover
        if x >= 0:
            return 1.0 / (1.0 + math.exp(-x))
        e = math.exp(x)
        return e / (1.0 + e)

    @jit
    def rnn_forward(xw, hw, h_prev, mask, relu, h):  # type: ignore[no-untyped-def]  # pragma: no cover
        n, size = h.shape
        for a in range(n):
            if mask[a] > 0:
                for j in range(size):
                    pre = xw[a, j] + hw[a, j]
                    if relu:
                        h[a, j] = pre if pre > 0 else 0.0
                    else:
                        h[a, j] = math.tanh(pre)
            else:
                for j in range(size):
                    h[a, j] = h_prev[a, j]
        return h

    @jit
    def rnn_backward(dy, dh_rec, dh, h, mask, relu, dgates):  # type: ignore[no-untyped-def]  # pragma: no cover
        n, size = h.shape
        for a in range(n):
            if mask[a] > 0:
                for j in range(size):
                    total = dy[a, j] + dh_rec[a, j] + dh[a, j]
                    value = h[a, j]
                    if relu:
                        dgates[a, j] = total if value > 0 else 0.0
                    else:
                        dgates[a, j] = total * (1.0 - value * value)
                    dh[a, j] = 0.0
            else:
                for j in range(size):
                    dgates[a, j] = 0.0
                    dh[a, j] = dh_rec[a, j] + dh[a, j]
        return dgates

    @jit
    def lstm_forward(xw, hw, c_prev, h_prev, mask, gates, c, h):  # type: ignore[no-untyped-def]  # pragma: no cover
        n, size = h.shape
        for a in range(n):
            real = mask[a] > 0
            for j in range(size):
                i = sigmoid(xw[a, j] + hw[a, j])
                f = sigmoid(xw[a, size + j] + hw[a, size + j])
                g = math.tanh(xw[a, 2 * size + j] + hw[a, 2 * size + j])
                o = sigmoid(xw[a, 3 * size + j] + hw[a, 3 * size + j])
                gates[a, j] = i
                gates[a, size + j] = f
                gates[a, 2 * size + j] = g
                gates[a, 3 * size + j] = o
                if real:
                    cell = f * c_prev[a, j] + i * g
                    c[a, j] = cell
                    h[a, j] = o * math.tanh(cell)
                else:
                    c[a, j] = c_prev[a, j]
                    h[a, j] = h_prev[a, j]
        return h

    @jit
    def lstm_backward(dy, dh_rec, dh, dc, gates, c_prev, c, mask, dgates):  # type: ignore[no-untyped-def]  # pragma: no cover
        n, size = c.shape
        for a in range(n):
            if mask[a] > 0:
                for j in range(size):
                    i = gates[a, j]
                    f = gates[a, size + j]
                    g = gates[a, 2 * size + j]
                    o = gates[a, 3 * size + j]
                    total = dy[a, j] + dh_rec[a, j] + dh[a, j]
                    tanh_c = math.tanh(c[a, j])
                    dct = dc[a, j] + total * o * (1.0 - tanh_c * tanh_c)
                    dgates[a, j] = dct * g * i * (1.0 - i)
                    dgates[a, size + j] = dct * c_prev[a, j] * f * (1.0 - f)
                    dgates[a, 2 * size + j] = dct * i * (1.0 - g * g)
                    dgates[a, 3 * size + j] = total * tanh_c * o * (1.0 - o)
                    dc[a, j] = dct * f
                    dh[a, j] = 0.0
            else:
                for j in range(size):
                    for k in range(4):
                        dgates[a, k * size + j] = 0.0
                    dh[a, j] = dh_rec[a, j] + dh[a, j]
        return dgates

    @jit
    def gru_forward(xw, hw, b_hh, h_prev, mask, gates, h):  # type: ignore[no-untyped-def]  # pragma: no cover
        n, size = h.shape
        for a in range(n):
            real = mask[a] > 0
            for j in range(size):
                r = sigmoid(xw[a, j] + hw[a, j] + b_hh[j])
                z = sigmoid(xw[a, size + j] + hw[a, size + j] + b_hh[size + j])
                hn = hw[a, 2 * size + j] + b_hh[2 * size + j]
                candidate = math.tanh(xw[a, 2 * size + j] + r * hn)
                gates[a, j] = r
                gates[a, size + j] = z
                gates[a, 2 * size + j] = candidate
                gates[a, 3 * size + j] = hn
                if real:
                    h[a, j] = (1.0 - z) * candidate + z * h_prev[a, j]
                else:
                    h[a, j] = h_prev[a, j]
        return h

    @jit
    def gru_backward(dy, dh_rec, dh, gates, h_prev, mask, dgx, dgh):  # type: ignore[no-untyped-def]  # pragma: no cover
        n, size = h_prev.shape
        for a in range(n):
            if mask[a] > 0:
                for j in range(size):
                    r = gates[a, j]
                    z = gates[a, size + j]
                    candidate = gates[a, 2 * size + j]
                    hn = gates[a, 3 * size + j]
                    total = dy[a, j] + dh_rec[a, j] + dh[a, j]
                    dn = total * (1.0 - z) * (1.0 - candidate * candidate)
                    dr = dn * hn * r * (1.0 - r)
                    dz = total * (h_prev[a, j] - candidate) * z * (1.0 - z)
                    dgx[a, j] = dr
                    dgx[a, size + j] = dz
                    dgx[a, 2 * size + j] = dn
                    dgh[a, j] = dr
                    dgh[a, size + j] = dz
                    dgh[a, 2 * size + j] = dn * r
                    dh[a, j] = total * z
            else:
                for j in range(size):
                    for k in range(3):
                        dgx[a, k * size + j] = 0.0
                        dgh[a, k * size + j] = 0.0
                    dh[a, j] = dh_rec[a, j] + dh[a, j]
        return dgx

    kernels: dict[str, Callable[..., Any]] = {
        "rnn_cell_forward": rnn_forward,
        "rnn_cell_backward": rnn_backward,
        "lstm_cell_forward": lstm_forward,
        "lstm_cell_backward": lstm_backward,
        "gru_cell_forward": gru_forward,
        "gru_cell_backward": gru_backward,
    }
    return flat_or_generic(kernels[name], _generic(name))


def _generic(name: str) -> Callable[..., Any]:
    import numpy as np

    from ..ops.registry import OPERATIONS

    return functools.partial(OPERATIONS[name].generic, np)


build = BuiltOnce(_make)
recurrent_cpu_kernel = build.builder
