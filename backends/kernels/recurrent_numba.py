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

    # Each row works on 1-D views (one per gate block): LLVM then sees distinct
    # pointers and vectorises the loops, which it does not over one 2-D array.
    @jit
    def rnn_forward(xw, hw, h_prev, mask, relu, h):  # type: ignore[no-untyped-def]  # pragma: no cover
        n, size = h.shape
        for a in range(n):
            x, y, out, prev = xw[a], hw[a], h[a], h_prev[a]
            if mask[a] <= zero:
                out[:] = prev
            elif relu:
                for j in range(size):
                    pre = x[j] + y[j]
                    out[j] = pre if pre > zero else zero
            else:
                for j in range(size):
                    out[j] = tanh(x[j] + y[j])
        return None

    @jit
    def rnn_backward(dy, dh_rec, dh, h, mask, relu, dgates):  # type: ignore[no-untyped-def]  # pragma: no cover
        n, size = h.shape
        for a in range(n):
            up, rec, carry, value, out = dy[a], dh_rec[a], dh[a], h[a], dgates[a]
            if mask[a] <= zero:
                for j in range(size):
                    out[j] = zero
                    carry[j] = rec[j] + carry[j]
            elif relu:
                for j in range(size):
                    total = up[j] + rec[j] + carry[j]
                    out[j] = total if value[j] > zero else zero
                    carry[j] = zero
            else:
                for j in range(size):
                    total = up[j] + rec[j] + carry[j]
                    out[j] = total * (one - value[j] * value[j])
                    carry[j] = zero
        return None

    @jit
    def lstm_forward(xw, hw, c_prev, h_prev, mask, gates, c, h):  # type: ignore[no-untyped-def]  # pragma: no cover
        n, size = h.shape
        for a in range(n):
            x, y, row = xw[a], hw[a], gates[a]
            i, f, g, o = row[:size], row[size : 2 * size], row[2 * size : 3 * size], row[3 * size :]
            xi, xf, xg, xo = x[:size], x[size : 2 * size], x[2 * size : 3 * size], x[3 * size :]
            yi, yf, yg, yo = y[:size], y[size : 2 * size], y[2 * size : 3 * size], y[3 * size :]
            cell, out, cp, hp = c[a], h[a], c_prev[a], h_prev[a]
            for j in range(size):  # all five activations of a unit in one vectorised loop
                gi = sigmoid(xi[j] + yi[j])
                gf = sigmoid(xf[j] + yf[j])
                gg = tanh(xg[j] + yg[j])
                go = sigmoid(xo[j] + yo[j])
                i[j], f[j], g[j], o[j] = gi, gf, gg, go
                value = gf * cp[j] + gi * gg
                cell[j] = value
                out[j] = go * tanh(value)
            if mask[a] <= zero:  # padding: the state stays (the gates are kept all the same)
                cell[:] = cp
                out[:] = hp
        return None

    @jit
    def lstm_backward(dy, dh_rec, dh, dc, gates, c_prev, c, mask, dgates):  # type: ignore[no-untyped-def]  # pragma: no cover
        n, size = c.shape
        for a in range(n):
            up, rec, carry, dcell, out = dy[a], dh_rec[a], dh[a], dc[a], dgates[a]
            if mask[a] <= zero:
                out[:] = zero
                for j in range(size):
                    carry[j] = rec[j] + carry[j]
                continue
            row, cp, cell = gates[a], c_prev[a], c[a]
            i, f, g, o = row[:size], row[size : 2 * size], row[2 * size : 3 * size], row[3 * size :]
            di, df, dg, do = out[:size], out[size : 2 * size], out[2 * size : 3 * size], out[3 * size :]
            for j in range(size):
                total = up[j] + rec[j] + carry[j]
                tanh_c = tanh(cell[j])
                dct = dcell[j] + total * o[j] * (one - tanh_c * tanh_c)
                di[j] = dct * g[j] * i[j] * (one - i[j])
                df[j] = dct * cp[j] * f[j] * (one - f[j])
                dg[j] = dct * i[j] * (one - g[j] * g[j])
                do[j] = total * tanh_c * o[j] * (one - o[j])
                dcell[j] = dct * f[j]
                carry[j] = zero
        return None

    @jit
    def gru_forward(xw, hw, b_hh, h_prev, mask, gates, h):  # type: ignore[no-untyped-def]  # pragma: no cover
        n, size = h.shape
        b_n = b_hh[2 * size :]
        for a in range(n):
            x, y, row = xw[a], hw[a], gates[a]
            for k in range(2 * size):
                row[k] = sigmoid(x[k] + y[k] + b_hh[k])
            r, z, cand, hn = row[:size], row[size : 2 * size], row[2 * size : 3 * size], row[3 * size :]
            x_n, y_n = x[2 * size :], y[2 * size :]
            for j in range(size):
                value = y_n[j] + b_n[j]
                hn[j] = value
                cand[j] = tanh(x_n[j] + r[j] * value)
            out, prev = h[a], h_prev[a]
            if mask[a] > zero:
                for j in range(size):
                    out[j] = (one - z[j]) * cand[j] + z[j] * prev[j]
            else:
                out[:] = prev
        return None

    @jit
    def gru_backward(dy, dh_rec, dh, gates, h_prev, mask, dgx, dgh):  # type: ignore[no-untyped-def]  # pragma: no cover
        n, size = h_prev.shape
        for a in range(n):
            up, rec, carry, gx, gh = dy[a], dh_rec[a], dh[a], dgx[a], dgh[a]
            if mask[a] <= zero:
                gx[:] = zero
                gh[:] = zero
                for j in range(size):
                    carry[j] = rec[j] + carry[j]
                continue
            row, prev = gates[a], h_prev[a]
            r, z, cand, hn = row[:size], row[size : 2 * size], row[2 * size : 3 * size], row[3 * size :]
            gx_r, gx_z, gx_n = gx[:size], gx[size : 2 * size], gx[2 * size :]
            gh_r, gh_z, gh_n = gh[:size], gh[size : 2 * size], gh[2 * size :]
            for j in range(size):
                total = up[j] + rec[j] + carry[j]
                dn = total * (one - z[j]) * (one - cand[j] * cand[j])
                dr = dn * hn[j] * r[j] * (one - r[j])
                dz = total * (prev[j] - cand[j]) * z[j] * (one - z[j])
                gx_r[j] = dr
                gx_z[j] = dz
                gx_n[j] = dn
                gh_r[j] = dr
                gh_z[j] = dz
                gh_n[j] = dn * r[j]
                carry[j] = total * z[j]
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
