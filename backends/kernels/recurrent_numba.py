"""Numba kernels of the recurrent cell steps (see :mod:`bpcore.backends.ops.recurrent`).

One pass over the ``(N, H)`` hidden units per call: each unit reads its gate
pre-activations from the input projection and the recurrent product, applies
every activation and the state update, and writes the saved gates, in one
loop without temporaries.  In float32 the activations use a rational form of
tanh (:func:`tanh_rational`, within 3.5e-7) so that the loops vectorise; float64
calls libm.  The backward kernels compute every gate derivative
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

import numpy as np

from .built_once import BuiltOnce
from .layout import flat_or_generic


def tanh_rational(terms: int = 12) -> tuple[list[float], list[float]]:
    """Coefficients (lowest power first) of ``tanh(x) ~ x * p(x*x) / q(x*x)``, with ``q(0) = 1``.

    The convergent of Lambert's continued fraction ``tanh x = x / (1 + x^2 / (3 + x^2 / (5 + ...))))``
    cut after ``terms`` levels, rewritten as one rational function.  With 12
    levels it is within 3.5e-7 of tanh on [-9, 9] when evaluated in float32
    (about 6 float32 ulps; beyond 9, float32 tanh is 1), and it is a few
    multiply-adds and one division: loops over it vectorise, where a loop
    over libm's tanh does not.
    """
    from numpy.polynomial import polynomial

    numerator, denominator = [2.0 * terms + 1.0], [1.0]
    for level in range(terms - 1, -1, -1):
        scaled = [(2 * level + 1) * c for c in numerator]
        numerator, denominator = list(polynomial.polyadd(scaled, polynomial.polymulx(denominator))), numerator
    scale = numerator[0]
    return [c / scale for c in denominator], [c / scale for c in numerator]


def _make(name: str) -> Callable[..., Any]:
    by_dtype = {dtype: _kernels(np.dtype(dtype))[name] for dtype in (np.float32, np.float64)}
    generic = _generic(name)

    result = -2 if name == "gru_cell_backward" else -1  # the array the generic version returns

    def dispatch(*args: Any) -> Any:
        kernel = by_dtype.get(args[-1].dtype.type)  # (dtype.name is slow to compute)
        if kernel is None:
            return generic(*args)
        kernel(*args)
        return args[result]

    return flat_or_generic(dispatch, generic)


@functools.cache
def _kernels(dtype: Any) -> dict[str, Callable[..., Any]]:
    """The six cell kernels for one dtype (their constants typed as the arrays, so float32 stays float32).

    float32 uses :func:`tanh_rational` (vectorised); float64 keeps libm's tanh,
    so that float64 gradient checks see full precision.
    """
    import math

    import numba

    # error_model="numpy": a division never raises, which is what lets LLVM vectorise the loops.
    jit = numba.njit(cache=True, nogil=True, error_model="numpy")
    t = dtype.type
    zero, half, one, limit = t(0.0), t(0.5), t(1.0), t(9.0)
    p, q = (tuple(t(c) for c in coefficients) for coefficients in tanh_rational())
    p0, p1, p2, p3, p4, p5, p6 = p
    q0, q1, q2, q3, q4, q5, q6 = q

    if dtype == np.float32:

        @jit
        def tanh(x):  # type: ignore[no-untyped-def]  # pragma: no cover
            if x > limit:
                x = limit
            elif x < -limit:
                x = -limit
            u = x * x
            num = (((((p6 * u + p5) * u + p4) * u + p3) * u + p2) * u + p1) * u + p0
            den = (((((q6 * u + q5) * u + q4) * u + q3) * u + q2) * u + q1) * u + q0
            return x * num / den

    else:

        @jit
        def tanh(x):  # type: ignore[no-untyped-def]  # pragma: no cover
            return math.tanh(x)

    @jit
    def sigmoid(x):  # type: ignore[no-untyped-def]  # pragma: no cover
        return half * tanh(half * x) + half

    @jit
    def rnn_forward(xw, hw, h_prev, mask, relu, h):  # type: ignore[no-untyped-def]  # pragma: no cover
        n, size = h.shape
        for a in range(n):
            if mask[a] > zero:
                if relu:
                    for j in range(size):
                        pre = xw[a, j] + hw[a, j]
                        h[a, j] = pre if pre > zero else zero
                else:
                    for j in range(size):
                        h[a, j] = tanh(xw[a, j] + hw[a, j])
            else:
                for j in range(size):
                    h[a, j] = h_prev[a, j]
        return None

    @jit
    def rnn_backward(dy, dh_rec, dh, h, mask, relu, dgates):  # type: ignore[no-untyped-def]  # pragma: no cover
        n, size = h.shape
        for a in range(n):
            if mask[a] > zero:
                for j in range(size):
                    total = dy[a, j] + dh_rec[a, j] + dh[a, j]
                    value = h[a, j]
                    if relu:
                        dgates[a, j] = total if value > zero else zero
                    else:
                        dgates[a, j] = total * (one - value * value)
                    dh[a, j] = zero
            else:
                for j in range(size):
                    dgates[a, j] = zero
                    dh[a, j] = dh_rec[a, j] + dh[a, j]
        return None

    @jit
    def lstm_forward(xw, hw, c_prev, h_prev, mask, gates, c, h):  # type: ignore[no-untyped-def]  # pragma: no cover
        n, size = h.shape
        for a in range(n):
            # One branch-free loop over the row's 4H gates: sigmoid(x) = tanh(x/2)/2 + 1/2, g = tanh(x).
            for k in range(4 * size):
                s = one if 2 * size <= k < 3 * size else half
                gates[a, k] = s * tanh(s * (xw[a, k] + hw[a, k])) + (one - s)
            if mask[a] > zero:
                for j in range(size):
                    cell = gates[a, size + j] * c_prev[a, j] + gates[a, j] * gates[a, 2 * size + j]
                    c[a, j] = cell
                    h[a, j] = gates[a, 3 * size + j] * tanh(cell)
            else:
                for j in range(size):
                    c[a, j] = c_prev[a, j]
                    h[a, j] = h_prev[a, j]
        return None

    @jit
    def lstm_backward(dy, dh_rec, dh, dc, gates, c_prev, c, mask, dgates):  # type: ignore[no-untyped-def]  # pragma: no cover
        n, size = c.shape
        for a in range(n):
            if mask[a] > zero:
                for j in range(size):
                    i = gates[a, j]
                    f = gates[a, size + j]
                    g = gates[a, 2 * size + j]
                    o = gates[a, 3 * size + j]
                    total = dy[a, j] + dh_rec[a, j] + dh[a, j]
                    tanh_c = tanh(c[a, j])
                    dct = dc[a, j] + total * o * (one - tanh_c * tanh_c)
                    dgates[a, j] = dct * g * i * (one - i)
                    dgates[a, size + j] = dct * c_prev[a, j] * f * (one - f)
                    dgates[a, 2 * size + j] = dct * i * (one - g * g)
                    dgates[a, 3 * size + j] = total * tanh_c * o * (one - o)
                    dc[a, j] = dct * f
                    dh[a, j] = zero
            else:
                for j in range(4 * size):
                    dgates[a, j] = zero
                for j in range(size):
                    dh[a, j] = dh_rec[a, j] + dh[a, j]
        return None

    @jit
    def gru_forward(xw, hw, b_hh, h_prev, mask, gates, h):  # type: ignore[no-untyped-def]  # pragma: no cover
        n, size = h.shape
        for a in range(n):
            for k in range(2 * size):
                gates[a, k] = sigmoid(xw[a, k] + hw[a, k] + b_hh[k])
            for j in range(size):
                hn = hw[a, 2 * size + j] + b_hh[2 * size + j]
                gates[a, 3 * size + j] = hn
                gates[a, 2 * size + j] = tanh(xw[a, 2 * size + j] + gates[a, j] * hn)
            if mask[a] > zero:
                for j in range(size):
                    z = gates[a, size + j]
                    h[a, j] = (one - z) * gates[a, 2 * size + j] + z * h_prev[a, j]
            else:
                for j in range(size):
                    h[a, j] = h_prev[a, j]
        return None

    @jit
    def gru_backward(dy, dh_rec, dh, gates, h_prev, mask, dgx, dgh):  # type: ignore[no-untyped-def]  # pragma: no cover
        n, size = h_prev.shape
        for a in range(n):
            if mask[a] > zero:
                for j in range(size):
                    r = gates[a, j]
                    z = gates[a, size + j]
                    candidate = gates[a, 2 * size + j]
                    hn = gates[a, 3 * size + j]
                    total = dy[a, j] + dh_rec[a, j] + dh[a, j]
                    dn = total * (one - z) * (one - candidate * candidate)
                    dr = dn * hn * r * (one - r)
                    dz = total * (h_prev[a, j] - candidate) * z * (one - z)
                    dgx[a, j] = dr
                    dgx[a, size + j] = dz
                    dgx[a, 2 * size + j] = dn
                    dgh[a, j] = dr
                    dgh[a, size + j] = dz
                    dgh[a, 2 * size + j] = dn * r
                    dh[a, j] = total * z
            else:
                for j in range(3 * size):
                    dgx[a, j] = zero
                    dgh[a, j] = zero
                for j in range(size):
                    dh[a, j] = dh_rec[a, j] + dh[a, j]
        return None

    return {
        "rnn_cell_forward": rnn_forward,
        "rnn_cell_backward": rnn_backward,
        "lstm_cell_forward": lstm_forward,
        "lstm_cell_backward": lstm_backward,
        "gru_cell_forward": gru_forward,
        "gru_cell_backward": gru_backward,
    }


def _generic(name: str) -> Callable[..., Any]:
    from ..ops.registry import OPERATIONS

    return functools.partial(OPERATIONS[name].generic, np)


build = BuiltOnce(_make)
recurrent_cpu_kernel = build.builder
