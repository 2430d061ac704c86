"""Numba kernels of the recurrent cell steps (see :mod:`bpcore.backends.ops.recurrent`).

One pass over the ``(N, H)`` hidden units per call: each unit reads its gate
pre-activations from the input projection and the recurrent product, applies
every activation and the state update, and writes the saved gates, in one
loop without temporaries.  In float32 the activations use a rational form of
tanh (:func:`tanh_rational`, within 3.5e-7) so that the loops vectorise; float64
calls libm (:func:`cell_tanh` is compiled per dtype, and every constant is
typed as the arrays, so float32 stays float32).  The backward kernels compute
every gate derivative of a unit in the same way.  Serial (a step of a
recurrent layer is a few thousand units; threads would cost more than they
save between two matrix products).  Each kernel is named after its operation
and compiled on first use (:mod:`.numba_jit`), never at import; the
operation's wrapper hands arrays of another layout or dtype to the generic
version.
"""

from __future__ import annotations

import math
from typing import Any

from numba import types
from numba.extending import overload
from numba.np.numpy_support import as_dtype

from .numba_jit import serial_kernel, with_options


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


def cell_tanh(x: float) -> float:
    """tanh as the kernels compute it: :func:`tanh_rational`'s form in float32, libm's in float64."""
    return math.tanh(x)


def cell_sigmoid(x: float) -> float:
    """The logistic function in its tanh form (``1 / (1 + exp(-x))`` overflows for x < -88 in float32)."""
    return 0.5 * cell_tanh(0.5 * x) + 0.5


# Compiled into the kernels, per argument type.  error_model="numpy": a division never raises,
# which is what lets LLVM vectorise the loops; fastmath "contract" (here and on every kernel):
# a * b + c may be one fused multiply-add, which halves the rational tanh's polynomial work
# (an LSTM step's cell 1.4-2x faster) and changes results by a float32 rounding or two, as on
# a GPU, whose compiler contracts by default.  (Numba wants an overload's typing function to
# have its implementation's signature exactly, so neither is annotated.)
_HELPER_OPTIONS: Any = {"error_model": "numpy", "fastmath": {"contract"}}


@overload(cell_tanh, jit_options=_HELPER_OPTIONS)
def _cell_tanh(x):  # type: ignore[no-untyped-def]
    if x == types.float32:
        t = as_dtype(x).type
        limit = t(9.0)  # beyond 9, float32 tanh is 1
        p, q = (tuple(t(c) for c in coefficients) for coefficients in tanh_rational())
        p0, p1, p2, p3, p4, p5, p6 = p
        q0, q1, q2, q3, q4, q5, q6 = q

        def rational(x):  # type: ignore[no-untyped-def]
            if x > limit:
                x = limit
            elif x < -limit:
                x = -limit
            u = x * x
            num = (((((p6 * u + p5) * u + p4) * u + p3) * u + p2) * u + p1) * u + p0
            den = (((((q6 * u + q5) * u + q4) * u + q3) * u + q2) * u + q1) * u + q0
            return x * num / den

        return rational
    if isinstance(x, types.Float):
        return lambda x: math.tanh(x)
    return None


@overload(cell_sigmoid, jit_options=_HELPER_OPTIONS)
def _cell_sigmoid(x):  # type: ignore[no-untyped-def]
    if not isinstance(x, types.Float):
        return None
    half = as_dtype(x).type(0.5)

    def sigmoid(x):  # type: ignore[no-untyped-def]
        return half * cell_tanh(half * x) + half

    return sigmoid


# Each row works on 1-D views (one per gate block): LLVM then sees distinct
# pointers and vectorises the loops, which it does not over one 2-D array.
@serial_kernel
@with_options(fastmath={"contract"})
def rnn_cell_forward(xw, hw, h_prev, mask, relu, h):  # type: ignore[no-untyped-def]
    n, size = h.shape
    zero = h.dtype.type(0)
    for a in range(n):
        x, y, out, prev = xw[a], hw[a], h[a], h_prev[a]
        if mask[a] <= zero:
            out[:] = prev
        elif relu:
            for j in range(size):
                pre = x[j] + y[j]
                out[j] = zero if pre < zero else pre  # NaN stays NaN, as torch.relu
        else:
            for j in range(size):
                out[j] = cell_tanh(x[j] + y[j])


@serial_kernel
@with_options(fastmath={"contract"})
def rnn_cell_backward(dy, dh_rec, dh, h, mask, relu, dgates):  # type: ignore[no-untyped-def]
    n, size = h.shape
    zero, one = h.dtype.type(0), h.dtype.type(1)
    for a in range(n):
        up, rec, carry, value, out = dy[a], dh_rec[a], dh[a], h[a], dgates[a]
        if mask[a] <= zero:
            for j in range(size):
                out[j] = zero
                carry[j] = rec[j] + carry[j]
        elif relu:
            for j in range(size):
                total = up[j] + rec[j] + carry[j]
                out[j] = zero if value[j] <= zero else total
                carry[j] = zero
        else:
            for j in range(size):
                total = up[j] + rec[j] + carry[j]
                out[j] = total * (one - value[j] * value[j])
                carry[j] = zero


@serial_kernel
@with_options(fastmath={"contract"})
def lstm_cell_forward(xw, hw, c_prev, h_prev, mask, gates, c, h):  # type: ignore[no-untyped-def]
    n, size = h.shape
    zero = h.dtype.type(0)
    for a in range(n):
        # Short loops, each one kind of work over contiguous memory (measured 0-35% faster than one
        # loop doing all five activations of a unit): the pre-activations, the sigmoid gates i and f
        # (adjacent), the tanh gate g, the sigmoid gate o, then the state update.
        x, y, row = xw[a], hw[a], gates[a]
        for k in range(4 * size):
            row[k] = x[k] + y[k]
        i, f, g, o = row[:size], row[size : 2 * size], row[2 * size : 3 * size], row[3 * size :]
        for k in range(2 * size):
            row[k] = cell_sigmoid(row[k])
        for j in range(size):
            g[j] = cell_tanh(g[j])
        for j in range(size):
            o[j] = cell_sigmoid(o[j])
        cell, out, cp, hp = c[a], h[a], c_prev[a], h_prev[a]
        for j in range(size):
            value = f[j] * cp[j] + i[j] * g[j]
            cell[j] = value
            out[j] = o[j] * cell_tanh(value)
        if mask[a] <= zero:  # padding: the state stays (the gates are kept all the same)
            cell[:] = cp
            out[:] = hp


@serial_kernel
@with_options(fastmath={"contract"})
def lstm_cell_backward(dy, dh_rec, dh, dc, gates, c_prev, c, mask, dgates):  # type: ignore[no-untyped-def]
    n, size = c.shape
    zero, one = c.dtype.type(0), c.dtype.type(1)
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
            tanh_c = cell_tanh(cell[j])
            dct = dcell[j] + total * o[j] * (one - tanh_c * tanh_c)
            di[j] = dct * g[j] * i[j] * (one - i[j])
            df[j] = dct * cp[j] * f[j] * (one - f[j])
            dg[j] = dct * i[j] * (one - g[j] * g[j])
            do[j] = total * tanh_c * o[j] * (one - o[j])
            dcell[j] = dct * f[j]
            carry[j] = zero


@serial_kernel
@with_options(fastmath={"contract"})
def gru_cell_forward(xw, hw, b_hh, h_prev, mask, gates, h):  # type: ignore[no-untyped-def]
    n, size = h.shape
    zero, one = h.dtype.type(0), h.dtype.type(1)
    b_n = b_hh[2 * size :]
    for a in range(n):
        x, y, row = xw[a], hw[a], gates[a]
        for k in range(2 * size):
            row[k] = cell_sigmoid(x[k] + (y[k] + b_hh[k]))  # the generic version's order of sums
        r, z, cand, hn = row[:size], row[size : 2 * size], row[2 * size : 3 * size], row[3 * size :]
        x_n, y_n = x[2 * size :], y[2 * size :]
        for j in range(size):
            value = y_n[j] + b_n[j]
            hn[j] = value
            cand[j] = cell_tanh(x_n[j] + r[j] * value)
        out, prev = h[a], h_prev[a]
        if mask[a] > zero:
            for j in range(size):
                out[j] = (one - z[j]) * cand[j] + z[j] * prev[j]
        else:
            out[:] = prev


@serial_kernel
@with_options(fastmath={"contract"})
def gru_cell_backward(dy, dh_rec, dh, gates, h_prev, mask, dgx, dgh):  # type: ignore[no-untyped-def]
    n, size = h_prev.shape
    zero, one = h_prev.dtype.type(0), h_prev.dtype.type(1)
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
