"""One-pass CPU kernels, compiled by Numba (imported only when Numba is wanted).

Each kernel is named after the operation it serves (``relu_backward``,
``adam_step``, ...) and is compiled only when that operation is first used
(see :mod:`.numba_jit`): a serial version for small arrays, where starting
the thread pool would cost more than the work (about 10 µs per parallel
region on two cores), and a ``parallel=True`` version whose ``prange`` loops
spread large arrays over the cores.  Both are compiled lazily, per dtype,
and cached on disk (``cache=True``), so a second process pays no compile
time.  The operation's wrapper (declared with it in
``bpcore.backends.ops``) picks the version by size.

The per-element math of activation ``a`` is ``a_forward_at`` /
``a_backward_at``, mirroring ``bp_a_forward_at`` / ``bp_a_backward_at`` in
``bpcore_math.cuh`` (the CUDA kernels' header) and the generic versions.
The activations and losses compute float32 values in float64 registers and
round once on store (as accurate as the generic float32 path or more; their
libm calls do not vectorise anyway).  The optimiser kernels compute in the
arrays' dtype, which vectorises, and flush subnormal state values to zero
(``tiny`` is the dtype's smallest normal number, passed in by the caller).

Arrays reach these kernels flat (1-D, C-contiguous) or as explicit row and
column counts; the wrappers make sure of that.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba import prange
from numba import types as nbtypes
from numba.extending import overload

from .numba_jit import OPTIONS, KernelPair, element, kernel, serial_kernel

__all__ = ["KernelPair", "kernel", "serial_kernel"]

GELU_ERF_SCALE = 0.7071067811865476  # sqrt(1 / 2)
GELU_DENSITY = 0.3989422804014327  # 1 / sqrt(2 pi)


# --- per-element math ----------------------------------------------------------
@element
def sigmoid(x: float) -> float:
    e = math.exp(-abs(x))
    r = 1.0 / (1.0 + e)
    return r if x >= 0.0 else e * r


@element
def softplus(x: float) -> float:
    return (x if x > 0.0 else 0.0) + math.log1p(math.exp(-abs(x)))


@element
def identity_forward_at(x: float, p: float) -> float:
    return x


@element
def sigmoid_forward_at(x: float, p: float) -> float:
    return sigmoid(x)


@element
def relu_forward_at(x: float, p: float) -> float:
    return 0.0 if x < 0.0 else x


@element
def leaky_relu_forward_at(x: float, p: float) -> float:
    return x if x > 0.0 else x * p


@element
def elu_forward_at(x: float, p: float) -> float:
    return x if x > 0.0 else p * math.expm1(x)


@element
def gelu_erf_forward_at(x: float, p: float) -> float:
    return x * (math.erf(x * GELU_ERF_SCALE) + 1.0) * 0.5


@element
def silu_forward_at(x: float, p: float) -> float:
    return x * sigmoid(x)


@element
def softplus_forward_at(x: float, p: float) -> float:
    return softplus(x)


@element
def sigmoid_backward_at(gy: float, y: float, p: float) -> float:
    return gy * y * (1.0 - y)


@element
def tanh_backward_at(gy: float, y: float, p: float) -> float:
    return gy * (1.0 - y * y)


@element
def relu_backward_at(gy: float, y: float, p: float) -> float:
    return 0.0 if y <= 0.0 else gy  # torch's threshold_backward: NaN y passes gy


@element
def leaky_relu_backward_at(gy: float, x: float, p: float) -> float:
    return gy if x > 0.0 else gy * p


@element
def elu_backward_at(gy: float, y: float, p: float) -> float:
    return gy * (y + p) if y <= 0.0 else gy


@element
def gelu_erf_backward_at(gy: float, x: float, p: float) -> float:
    density = math.exp(-0.5 * x * x) * GELU_DENSITY
    return gy * (0.5 * (1.0 + math.erf(x * GELU_ERF_SCALE)) + x * density)


@element
def silu_backward_at(gy: float, x: float, p: float) -> float:
    s = sigmoid(x)
    return gy * (s * (1.0 + x * (1.0 - s)))


@element
def softplus_backward_at(gy: float, x: float, p: float) -> float:
    return gy * sigmoid(x)


# --- activations -----------------------------------------------------------------
# ``a_forward(x, out, p)``: a flat loop; ``bias_a_forward(z, b, out, p, cols)``:
# rows of ``cols`` elements, ``z`` receives the pre-activation ``z + b``;
# ``a_backward(gy, s, out, p)``.  No test inside a loop, so that LLVM can
# vectorise what has no libm call.


@kernel
def bias_identity_forward(z, b, out, p, cols):  # type: ignore[no-untyped-def]
    for r in prange(z.size // cols):
        base = r * cols
        for c in range(cols):
            v = z[base + c] + b[c]
            z[base + c] = v
            out[base + c] = v


@kernel
def relu_forward(x, out, p):  # type: ignore[no-untyped-def]
    zero = x.dtype.type(0)
    for i in prange(x.size):
        v = x[i]
        out[i] = zero if v < zero else v


@kernel
def bias_relu_forward(z, b, out, p, cols):  # type: ignore[no-untyped-def]
    zero = z.dtype.type(0)
    for r in prange(z.size // cols):
        base = r * cols
        for c in range(cols):
            v = z[base + c] + b[c]
            z[base + c] = v
            out[base + c] = zero if v < zero else v


@kernel
def sigmoid_backward(gy, s, out, p):  # type: ignore[no-untyped-def]
    one = s.dtype.type(1)
    for i in prange(s.size):
        out[i] = gy[i] * s[i] * (one - s[i])


@kernel
def tanh_backward(gy, s, out, p):  # type: ignore[no-untyped-def]
    one = s.dtype.type(1)
    for i in prange(s.size):
        out[i] = gy[i] * (one - s[i] * s[i])


@kernel
def relu_backward(gy, s, out, p):  # type: ignore[no-untyped-def]
    zero = s.dtype.type(0)
    for i in prange(s.size):
        out[i] = zero if s[i] <= zero else gy[i]  # as torch: 0 where y <= 0 (even for a NaN gy), else gy


# The activations whose math is a libm call compute in float64 registers
# through their per-element function; each kernel is one template compiled
# once per activation (``AT`` bound per copy, see _specialise).
AT = identity_forward_at


def _specialise(template: Callable[..., Any], name: str, **bindings: Any) -> Callable[..., Any]:
    """A copy of ``template`` named ``name`` whose globals bind ``bindings``."""
    namespace = {**template.__globals__, **bindings}
    copy = types.FunctionType(template.__code__, namespace, name, template.__defaults__)
    copy.__qualname__ = name
    copy.__module__ = template.__module__
    return copy


def _forward_template(x, out, p):  # type: ignore[no-untyped-def]
    for i in prange(x.size):
        out[i] = AT(np.float64(x[i]), p)


def _bias_forward_template(z, b, out, p, cols):  # type: ignore[no-untyped-def]
    for r in prange(z.size // cols):
        base = r * cols
        for c in range(cols):
            v = z[base + c] + b[c]
            z[base + c] = v
            out[base + c] = AT(np.float64(v), p)


def _backward_template(gy, s, out, p):  # type: ignore[no-untyped-def]
    for i in prange(s.size):
        out[i] = AT(np.float64(gy[i]), np.float64(s[i]), p)


# (tanh and the tanh GELU have none: NumPy's SIMD tanh is faster, see ops/activations.py)
for _name in ("sigmoid", "leaky_relu", "elu", "gelu_erf", "silu", "softplus"):
    _at = globals()[f"{_name}_forward_at"]
    kernel(_specialise(_forward_template, f"{_name}_forward", AT=_at))
    kernel(_specialise(_bias_forward_template, f"bias_{_name}_forward", AT=_at))
for _name in ("leaky_relu", "elu", "gelu_erf", "silu", "softplus"):
    kernel(_specialise(_backward_template, f"{_name}_backward", AT=globals()[f"{_name}_backward_at"]))


# --- optimiser updates (torch.optim's rules; state flushed) ---------------------
# Computed in the arrays' dtype, as the generic and the CUDA versions do: the
# caller passes every scalar already converted to that dtype, and the
# complements (1 - dampening, 1 - alpha, 1 - beta) computed in double before
# that rounding, as torch does: 1 - float32(0.999) is 1.3e-5 off 0.001.
@kernel
def sgd_step(param, grad, buf, lr, momentum, keep, wd, use_momentum, nesterov, first_step, tiny):  # type: ignore[no-untyped-def]
    # keep = 1 - dampening.
    zero = param.dtype.type(0)
    for i in prange(param.size):
        p = param[i]
        g = grad[i] + wd * p
        if use_momentum:
            b = g if first_step else momentum * buf[i] + keep * g
            b = zero if abs(b) < tiny else b
            buf[i] = b
            g = g + momentum * b if nesterov else b
        param[i] = p - lr * g


@kernel
def adagrad_step(param, grad, state_sum, clr, wd, eps, tiny):  # type: ignore[no-untyped-def]
    zero = param.dtype.type(0)
    for i in prange(param.size):
        p = param[i]
        g = grad[i] + wd * p
        s = state_sum[i] + g * g
        s = zero if abs(s) < tiny else s
        state_sum[i] = s
        param[i] = p - clr * g / (np.sqrt(s) + eps)


@kernel
def rmsprop_step(
    param,
    grad,
    square_avg,
    grad_avg,
    buf,
    lr,
    alpha,
    alpha_c,
    eps,
    wd,
    momentum,
    centered,
    use_momentum,
    tiny,
):  # type: ignore[no-untyped-def]
    zero = param.dtype.type(0)
    for i in prange(param.size):
        p = param[i]
        g = grad[i] + wd * p
        sq = alpha * square_avg[i] + alpha_c * (g * g)
        sq = zero if abs(sq) < tiny else sq
        square_avg[i] = sq
        if centered:
            ga = grad_avg[i] + alpha_c * (g - grad_avg[i])
            ga = zero if abs(ga) < tiny else ga
            grad_avg[i] = ga
            avg = np.sqrt(sq - ga * ga) + eps
        else:
            avg = np.sqrt(sq) + eps
        if use_momentum:
            b = momentum * buf[i] + g / avg
            b = zero if abs(b) < tiny else b
            buf[i] = b
            param[i] = p - lr * b
        else:
            param[i] = p - lr * (g / avg)


@kernel
def adam_step(
    param, grad, m, v, vmax, shrink, l2, beta1_c, beta2, beta2_c, eps, step_size, bc2_sqrt, amsgrad, tiny
):  # type: ignore[no-untyped-def]
    # shrink = 1 - lr*wd for AdamW (else 1), l2 = wd for Adam (else 0), and
    # one loop per AMSGrad setting: no branch inside a loop, so LLVM
    # vectorises it.  beta1_c = 1 - beta1 and beta2_c = 1 - beta2.
    zero = param.dtype.type(0)
    if amsgrad:
        for i in prange(param.size):
            p = param[i]
            g = grad[i] + l2 * p
            mi = m[i] + beta1_c * (g - m[i])
            mi = zero if abs(mi) < tiny else mi
            vi = beta2 * v[i] + beta2_c * (g * g)
            vi = zero if abs(vi) < tiny else vi
            m[i] = mi
            v[i] = vi
            vm = vmax[i]
            vm = vm if (vm > vi or vm != vm) else vi  # numpy.maximum: a NaN on either side wins
            vmax[i] = vm
            param[i] = p * shrink - step_size * (mi / (np.sqrt(vm) / bc2_sqrt + eps))
    else:
        for i in prange(param.size):
            p = param[i]
            g = grad[i] + l2 * p
            mi = m[i] + beta1_c * (g - m[i])
            mi = zero if abs(mi) < tiny else mi
            vi = beta2 * v[i] + beta2_c * (g * g)
            vi = zero if abs(vi) < tiny else vi
            m[i] = mi
            v[i] = vi
            param[i] = p * shrink - step_size * (mi / (np.sqrt(vi) / bc2_sqrt + eps))


@kernel
def l1_l2_grad(grad, param, mask, out, l1, l2):  # type: ignore[no-untyped-def]
    for i in prange(grad.size):
        p = np.float64(param[i])
        sign = 1.0 if p > 0.0 else (-1.0 if p < 0.0 else p * 0.0)
        out[i] = grad[i] + mask[i] * (l1 * sign + l2 * p)


@kernel
def grad_norm_sq(x, partial):  # type: ignore[no-untyped-def]
    # ``partial`` has one float64 slot per chunk; the chunks run in parallel.
    n = x.size
    chunks = partial.size
    size = (n + chunks - 1) // chunks
    for c in prange(chunks):
        total = 0.0
        for i in range(c * size, min(n, (c + 1) * size)):
            v = np.float64(x[i])
            total += v * v
        partial[c] = total


@kernel
def scale_inplace(x, factor):  # type: ignore[no-untyped-def]
    for i in prange(x.size):
        x[i] = x[i] * factor


# --- losses --------------------------------------------------------------------
def shifted_exp(x: float, like: Any) -> float:
    """``exp(x)`` for ``x = logit - max <= 0`` (or NaN), in float64, accurate to the dtype of ``like``.

    float64 logits: libm's exp.  float32 logits: ``exp(x / 256) ** 256`` with
    a degree-9 Taylor polynomial on ``[-0.41, 0]`` (x clamped at -104, below
    which float32 rounds exp to 0), within 1e-8 relative before the float32
    store: multiplies and adds only, so that a loop over it vectorises where
    libm's exp does not (about 4x faster over a row of class scores).
    """
    return math.exp(x)


@overload(shifted_exp, jit_options={"error_model": "numpy"})
def _shifted_exp(x, like):  # type: ignore[no-untyped-def]
    if like != nbtypes.float32:
        return lambda x, like: math.exp(x)
    coefficients = tuple(1.0 / math.factorial(n) for n in range(9, -1, -1))
    c9, c8, c7, c6, c5, c4, c3, c2, c1, c0 = coefficients

    def taylor(x, like):  # type: ignore[no-untyped-def]
        if x < -104.0:
            x = -104.0
        y = x * 0.00390625  # 1 / 256, exact
        p = (((((c9 * y + c8) * y + c7) * y + c6) * y + c5) * y + c4) * y + c3
        p = ((p * y + c2) * y + c1) * y + c0
        for _ in range(8):
            p = p * p
        return p

    return taylor


@numba.njit(**OPTIONS, fastmath={"reassoc"})  # the sum only: its additions may be reordered
def row_sum(values):  # type: ignore[no-untyped-def]
    # A float64 sum of a row in vector lanes (one chain of dependent adds would wait on each).
    total = 0.0
    for j in range(values.size):
        total += np.float64(values[j])
    return total


@element
def row_max(x):  # type: ignore[no-untyped-def]
    # The largest value of a row in its own dtype (exact), in eight independent chains: one chain of
    # max() waits on each comparison (LLVM does not vectorise that reduction without fast-math), 40 %
    # of the softmax cross-entropy's time at 2048 x 65 in float32 (measured: max plus exponentials
    # 404 us with one chain, 292 us with eight).  A NaN logit may or may not come out as the max; it
    # makes its row NaN through its exponential either way.
    k = x.size
    a = b = c = d = e = f = g = h = x[0]
    j = 1
    while j + 8 <= k:
        a = max(a, x[j])
        b = max(b, x[j + 1])
        c = max(c, x[j + 2])
        d = max(d, x[j + 3])
        e = max(e, x[j + 4])
        f = max(f, x[j + 5])
        g = max(g, x[j + 6])
        h = max(h, x[j + 7])
        j += 8
    while j < k:
        a = max(a, x[j])
        j += 1
    return max(max(max(a, b), max(c, d)), max(max(e, f), max(g, h)))


# fastmath "contract": the exponential's polynomial in fused multiply-adds (the exponentials 274 ->
# 179 us at 2048 x 65 in float32; computed in float64, so the float32 results hardly change).
@numba.njit(**OPTIONS, fastmath={"contract"})
def softmax_row(logits, probs, base, k):  # type: ignore[no-untyped-def]
    # One row: max, log-sum-exp and the probabilities; returns (max, log-sum).  Each pass is a
    # short loop over a contiguous slice (measured 1.5-3x faster than one loop over flat indices
    # with four hand-split chains, at 65-128 classes).
    x = logits[base : base + k]
    p = probs[base : base + k]
    mx = np.float64(row_max(x))
    # One exponential per element, in a loop of its own (no reduction in it, so it vectorises for
    # float32), then the sum and one scaling pass: the exponentials are most of the kernel's time.
    first = x[0]
    for j in range(k):
        p[j] = shifted_exp(np.float64(x[j]) - mx, first)
    total = row_sum(p)
    log_sum = math.log(total)
    scale = 1.0 / total
    for j in range(k):
        p[j] = np.float64(p[j]) * scale
    return mx, log_sum


@kernel
def softmax_cross_entropy_forward(logits, target, probs, losses, k):  # type: ignore[no-untyped-def]
    for r in prange(losses.size):
        base = r * k
        mx, log_sum = softmax_row(logits, probs, base, k)
        loss = 0.0
        for j in range(k):
            loss -= target[base + j] * ((logits[base + j] - mx) - log_sum)
        losses[r] = loss


@kernel
def softmax_cross_entropy_index_forward(logits, labels, probs, losses, k):  # type: ignore[no-untyped-def]
    for r in prange(losses.size):
        base = r * k
        mx, log_sum = softmax_row(logits, probs, base, k)
        label = labels[r]
        # A negative label is an ignored position (CrossEntropy's ignore_index): no loss.
        if label < 0:
            losses[r] = 0.0
        else:
            losses[r] = mx - logits[base + label] + log_sum if label < k else math.nan


@serial_kernel
def softmax_cross_entropy_backward(probs, target, out, scale):  # type: ignore[no-untyped-def]
    for i in prange(out.size):
        out[i] = (np.float64(probs[i]) - target[i]) * scale


@serial_kernel
def softmax_cross_entropy_index_backward(probs, labels, out, scale, k):  # type: ignore[no-untyped-def]
    for r in prange(labels.size):
        base = r * k
        label = labels[r]
        if label < 0:  # an ignored row (CrossEntropy's ignore_index): no gradient
            for j in range(k):
                out[base + j] = 0.0
        else:
            for j in range(k):
                out[base + j] = np.float64(probs[base + j]) * scale
            if label < k:
                out[base + label] = np.float64(probs[base + label]) * scale - scale


@serial_kernel
def binary_cross_entropy_logits_forward(z, target, losses):  # type: ignore[no-untyped-def]
    for i in prange(z.size):
        v = np.float64(z[i])
        losses[i] = math.log1p(math.exp(-abs(v))) + (v if v > 0.0 else 0.0) - v * target[i]


@serial_kernel
def binary_cross_entropy_logits_backward(z, target, out, scale):  # type: ignore[no-untyped-def]
    for i in prange(z.size):
        out[i] = (sigmoid(np.float64(z[i])) - target[i]) * scale


@serial_kernel
def binary_cross_entropy_backward(p, target, out, scale, eps):  # type: ignore[no-untyped-def]
    for i in prange(p.size):
        v = np.float64(p[i])
        den = (1.0 - v) * v
        if den < eps:
            den = eps
        out[i] = (v - target[i]) / den * scale


# --- dropout and batch normalisation ---------------------------------------------
@kernel
def dropout_forward(x, uniform, out, mask, p, keep_scale):  # type: ignore[no-untyped-def]
    for i in prange(x.size):
        s = keep_scale if uniform[i] >= p else 0.0
        mask[i] = s
        out[i] = x[i] * mask[i]


@kernel
def dropout_backward(a, b, out):  # type: ignore[no-untyped-def]
    for i in prange(out.size):
        out[i] = a[i] * b[i]


@kernel
def batchnorm_forward_train(
    x, gamma, beta, running_mean, running_var, momentum, eps, out, xhat, inv_std, n, f
):  # type: ignore[no-untyped-def]
    # Pass 1 (per block of features, rows outermost so that reads are
    # contiguous): shifted sums in float64, shifted by the first row so that a
    # large common offset does not cancel.  Pass 2: normalise and write.
    blocks = (f + 63) // 64
    for blk in prange(blocks):
        lo = blk * 64
        hi = min(f, lo + 64)
        width = hi - lo
        s1 = np.zeros(width)
        s2 = np.zeros(width)
        for r in range(n):
            base = r * f
            for j in range(width):
                d = np.float64(x[base + lo + j]) - x[lo + j]
                s1[j] += d
                s2[j] += d * d
        for j in range(width):
            mean_shift = s1[j] / n
            var = max(s2[j] / n - mean_shift * mean_shift, 0.0)
            mean = x[lo + j] + mean_shift
            inv_std[lo + j] = 1.0 / math.sqrt(var + eps)
            running_mean[lo + j] = (1.0 - momentum) * running_mean[lo + j] + momentum * mean
            running_var[lo + j] = (1.0 - momentum) * running_var[lo + j] + momentum * var * n / (n - 1)
            s1[j] = mean
        for r in range(n):
            base = r * f
            for j in range(width):
                h = (x[base + lo + j] - s1[j]) * inv_std[lo + j]
                xhat[base + lo + j] = h
                out[base + lo + j] = h * gamma[lo + j] + beta[lo + j]


@kernel
def batchnorm_backward(gy, xhat, gamma, inv_std, grad_gamma, grad_beta, out, accumulate, n, f):  # type: ignore[no-untyped-def]
    blocks = (f + 63) // 64
    for blk in prange(blocks):
        lo = blk * 64
        hi = min(f, lo + 64)
        width = hi - lo
        sb = np.zeros(width)
        sg = np.zeros(width)
        for r in range(n):
            base = r * f
            for j in range(width):
                g = np.float64(gy[base + lo + j])
                sb[j] += g
                sg[j] += g * xhat[base + lo + j]
        for j in range(width):
            if accumulate:
                grad_beta[lo + j] += sb[j]
                grad_gamma[lo + j] += sg[j]
            else:
                grad_beta[lo + j] = sb[j]
                grad_gamma[lo + j] = sg[j]
        for r in range(n):
            base = r * f
            for j in range(width):
                k = gamma[lo + j] * inv_std[lo + j]
                out[base + lo + j] = (gy[base + lo + j] - (sb[j] + xhat[base + lo + j] * sg[j]) / n) * k
