"""One-pass CPU kernels, compiled by Numba (imported only when Numba is wanted).

Each kernel is written once and compiled twice: a serial version for small
arrays, where starting the thread pool would cost more than the work (about
10 µs per parallel region on two cores), and a ``parallel=True`` version
whose ``prange`` loops spread large arrays over the cores.  Both are compiled
lazily, per dtype, and cached on disk (``cache=True``), so a second process
pays no compile time.  :mod:`.cpu` picks the version by size.

The per-element math mirrors ``bpcore_math.cuh`` (the CUDA kernels' header)
and the generic versions in ``bpcore.backends.ops``.  The activations
and losses compute float32 values in float64 registers and round once on
store (as accurate as the generic float32 path or more; their libm calls do
not vectorise anyway).  The optimiser kernels compute in the arrays' dtype,
which vectorises, and flush subnormal state values to zero (``tiny`` is the
dtype's smallest normal number, passed in by the caller).

Arrays reach these kernels flat (1-D, C-contiguous) or as explicit row and
column counts; the wrappers in :mod:`.cpu` make sure of that.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba import prange

GELU_K = 0.7978845608028654  # sqrt(2 / pi)
GELU_C = 0.044715

# error_model="numpy": division by zero gives inf/NaN as in NumPy instead of
# raising, which also removes the per-element check that stops LLVM from
# vectorising the loops (measured: Adam over 235k float32 values 1.7 ms -> 0.14 ms).
_OPTIONS: dict[str, Any] = {"cache": True, "nogil": True, "error_model": "numpy"}
_element = numba.njit(**_OPTIONS)


class KernelPair:
    """The serial and the parallel compilation of one kernel.

    Kernels whose work is small in practice (per-sample losses, ...) get no
    parallel build: ``parallel`` is then the serial one, and compile time
    is saved.
    """

    def __init__(self, function: Callable[..., Any], *, parallel: bool = True) -> None:
        self.name = function.__name__
        self.serial = _variant(function, "serial", parallel=False)
        self.parallel = _variant(function, "parallel", parallel=True) if parallel else self.serial

    @property
    def has_parallel(self) -> bool:
        return self.parallel is not self.serial


def _variant(function: Callable[..., Any], suffix: str, *, parallel: bool) -> Any:
    # Numba's on-disk cache is keyed by the function's qualified name, not by
    # its compile flags: the two versions need distinct names or one would
    # load the other's machine code.
    copy = types.FunctionType(
        function.__code__, function.__globals__, f"{function.__name__}_{suffix}", function.__defaults__
    )
    copy.__qualname__ = f"{function.__qualname__}_{suffix}"
    copy.__module__ = function.__module__
    return numba.njit(parallel=parallel, **_OPTIONS)(copy)


KERNELS: dict[str, KernelPair] = {}


def kernel(function: Callable[..., Any]) -> Callable[..., Any]:
    """Register ``function`` as a kernel with a serial and a parallel build."""
    KERNELS[function.__name__] = KernelPair(function)
    return function


def serial_kernel(function: Callable[..., Any]) -> Callable[..., Any]:
    """Register ``function`` as a kernel with a serial build only."""
    KERNELS[function.__name__] = KernelPair(function, parallel=False)
    return function


# --- per-element math ----------------------------------------------------------
@_element
def sigmoid(x: float) -> float:
    e = math.exp(-abs(x))
    r = 1.0 / (1.0 + e)
    return r if x >= 0.0 else e * r


@_element
def softplus(x: float) -> float:
    return (x if x > 0.0 else 0.0) + math.log1p(math.exp(-abs(x)))


@_element
def act_identity(x: float, p: float) -> float:
    return x


@_element
def act_sigmoid(x: float, p: float) -> float:
    return sigmoid(x)


@_element
def act_relu(x: float, p: float) -> float:
    return 0.0 if x < 0.0 else x


@_element
def act_leaky_relu(x: float, p: float) -> float:
    return x if x > 0.0 else x * p


@_element
def act_elu(x: float, p: float) -> float:
    return x if x > 0.0 else p * math.expm1(x)


@_element
def act_gelu(x: float, p: float) -> float:
    t = math.tanh(GELU_K * (x + GELU_C * x * x * x))
    return x * (t + 1.0) * 0.5


@_element
def act_silu(x: float, p: float) -> float:
    return x * sigmoid(x)


@_element
def act_softplus(x: float, p: float) -> float:
    return softplus(x)


@_element
def grad_sigmoid(gy: float, y: float, p: float) -> float:
    return gy * y * (1.0 - y)


@_element
def grad_tanh(gy: float, y: float, p: float) -> float:
    return gy * (1.0 - y * y)


@_element
def grad_relu(gy: float, y: float, p: float) -> float:
    return gy * (1.0 if y > 0.0 else 0.0)


@_element
def grad_leaky_relu(gy: float, x: float, p: float) -> float:
    return gy if x > 0.0 else gy * p


@_element
def grad_elu(gy: float, y: float, p: float) -> float:
    return gy if y > 0.0 else gy * (y + p)


@_element
def grad_gelu(gy: float, x: float, p: float) -> float:
    x2 = x * x
    t = math.tanh(GELU_K * x * (1.0 + GELU_C * x2))
    du = GELU_K * (1.0 + 3.0 * GELU_C * x2)
    return gy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)


@_element
def grad_silu(gy: float, x: float, p: float) -> float:
    s = sigmoid(x)
    return gy * (s * (1.0 + x * (1.0 - s)))


@_element
def grad_softplus(gy: float, x: float, p: float) -> float:
    return gy * sigmoid(x)


# --- activations -----------------------------------------------------------------
# Forward kernels serve both ``<act>_forward`` (has_bias False: a flat loop)
# and ``bias_<act>_forward`` (rows of ``cols`` elements; ``z`` receives the
# pre-activation ``z + b``).  Each branch is its own loop, with no test inside,
# so that LLVM can vectorise what has no libm call.


@kernel
def fwd_identity(z, b, out, p, cols, has_bias):  # type: ignore[no-untyped-def]
    if has_bias:
        for r in prange(z.size // cols):
            base = r * cols
            for c in range(cols):
                v = z[base + c] + b[c]
                z[base + c] = v
                out[base + c] = v
    else:
        for i in prange(z.size):
            v = z[i]
            out[i] = v


@kernel
def fwd_relu(z, b, out, p, cols, has_bias):  # type: ignore[no-untyped-def]
    zero = z.dtype.type(0)
    if has_bias:
        for r in prange(z.size // cols):
            base = r * cols
            for c in range(cols):
                v = z[base + c] + b[c]
                z[base + c] = v
                out[base + c] = zero if v < zero else v
    else:
        for i in prange(z.size):
            v = z[i]
            out[i] = zero if v < zero else v


@kernel
def bwd_sigmoid(gy, s, out, p):  # type: ignore[no-untyped-def]
    one = s.dtype.type(1)
    for i in prange(s.size):
        out[i] = gy[i] * s[i] * (one - s[i])


@kernel
def bwd_tanh(gy, s, out, p):  # type: ignore[no-untyped-def]
    one = s.dtype.type(1)
    for i in prange(s.size):
        out[i] = gy[i] * (one - s[i] * s[i])


@kernel
def bwd_relu(gy, s, out, p):  # type: ignore[no-untyped-def]
    zero, one = s.dtype.type(0), s.dtype.type(1)
    for i in prange(s.size):
        out[i] = gy[i] * (one if s[i] > zero else zero)  # gy * (y > 0): a NaN gradient stays NaN


# The activations whose math is a libm call compute in float64 registers
# through their per-element function; each kernel is one template compiled
# once per activation (``ACT``/``GRAD`` bound per copy, see _specialise).
ACT = act_identity
GRAD = grad_relu


def _specialise(template: Callable[..., Any], name: str, **bindings: Any) -> Callable[..., Any]:
    """A copy of ``template`` named ``name`` whose globals bind ``bindings``."""
    namespace = {**template.__globals__, **bindings}
    copy = types.FunctionType(template.__code__, namespace, name, template.__defaults__)
    copy.__qualname__ = name
    copy.__module__ = template.__module__
    return copy


def _forward_template(z, b, out, p, cols, has_bias):  # type: ignore[no-untyped-def]
    if has_bias:
        for r in prange(z.size // cols):
            base = r * cols
            for c in range(cols):
                v = z[base + c] + b[c]
                z[base + c] = v
                out[base + c] = ACT(np.float64(v), p)
    else:
        for i in prange(z.size):
            out[i] = ACT(np.float64(z[i]), p)


def _backward_template(gy, s, out, p):  # type: ignore[no-untyped-def]
    for i in prange(s.size):
        out[i] = GRAD(np.float64(gy[i]), np.float64(s[i]), p)


for _name in ("sigmoid", "leaky_relu", "elu", "gelu", "silu", "softplus"):
    kernel(_specialise(_forward_template, f"fwd_{_name}", ACT=globals()[f"act_{_name}"]))
for _name in ("leaky_relu", "elu", "gelu", "silu", "softplus"):
    kernel(_specialise(_backward_template, f"bwd_{_name}", GRAD=globals()[f"grad_{_name}"]))


# --- optimiser updates (torch.optim's rules; state flushed) ---------------------
# Computed in the arrays' dtype, as the generic and the CUDA versions do: the
# caller passes every scalar already converted to that dtype.
@kernel
def sgd(param, grad, buf, lr, momentum, dampening, wd, use_momentum, nesterov, first_step, tiny):  # type: ignore[no-untyped-def]
    one = param.dtype.type(1)
    zero = param.dtype.type(0)
    for i in prange(param.size):
        p = param[i]
        g = grad[i] + wd * p
        if use_momentum:
            b = g if first_step else momentum * buf[i] + (one - dampening) * g
            b = zero if abs(b) < tiny else b
            buf[i] = b
            g = g + momentum * b if nesterov else b
        param[i] = p - lr * g


@kernel
def adagrad(param, grad, state_sum, clr, wd, eps, tiny):  # type: ignore[no-untyped-def]
    zero = param.dtype.type(0)
    for i in prange(param.size):
        p = param[i]
        g = grad[i] + wd * p
        s = state_sum[i] + g * g
        s = zero if abs(s) < tiny else s
        state_sum[i] = s
        param[i] = p - clr * g / (np.sqrt(s) + eps)


@kernel
def rmsprop(
    param, grad, square_avg, grad_avg, buf, lr, alpha, eps, wd, momentum, centered, use_momentum, tiny
):  # type: ignore[no-untyped-def]
    one = param.dtype.type(1)
    zero = param.dtype.type(0)
    for i in prange(param.size):
        p = param[i]
        g = grad[i] + wd * p
        sq = alpha * square_avg[i] + (one - alpha) * (g * g)
        sq = zero if abs(sq) < tiny else sq
        square_avg[i] = sq
        if centered:
            ga = grad_avg[i] + (one - alpha) * (g - grad_avg[i])
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
def adam(param, grad, m, v, vmax, shrink, l2, beta1, beta2, eps, step_size, bc2_sqrt, amsgrad, tiny):  # type: ignore[no-untyped-def]
    # shrink = 1 - lr*wd for AdamW (else 1), l2 = wd for Adam (else 0), and
    # one loop per AMSGrad setting: no branch inside a loop, so LLVM
    # vectorises it.
    one = param.dtype.type(1)
    zero = param.dtype.type(0)
    if amsgrad:
        for i in prange(param.size):
            p = param[i]
            g = grad[i] + l2 * p
            mi = m[i] + (one - beta1) * (g - m[i])
            mi = zero if abs(mi) < tiny else mi
            vi = beta2 * v[i] + (one - beta2) * (g * g)
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
            mi = m[i] + (one - beta1) * (g - m[i])
            mi = zero if abs(mi) < tiny else mi
            vi = beta2 * v[i] + (one - beta2) * (g * g)
            vi = zero if abs(vi) < tiny else vi
            m[i] = mi
            v[i] = vi
            param[i] = p * shrink - step_size * (mi / (np.sqrt(vi) / bc2_sqrt + eps))


@kernel
def l1_l2(grad, param, mask, out, l1, l2):  # type: ignore[no-untyped-def]
    for i in prange(grad.size):
        p = np.float64(param[i])
        sign = 1.0 if p > 0.0 else (-1.0 if p < 0.0 else p * 0.0)
        out[i] = grad[i] + mask[i] * (l1 * sign + l2 * p)


@kernel
def sum_squares(x, partial):  # type: ignore[no-untyped-def]
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
def scale(x, factor):  # type: ignore[no-untyped-def]
    for i in prange(x.size):
        x[i] = x[i] * factor


# --- losses --------------------------------------------------------------------
@kernel
def softmax_xent(logits, target, labels, probs, losses, k, use_labels):  # type: ignore[no-untyped-def]
    # One row per iteration: max, log-sum-exp, probabilities and the loss.
    for r in prange(losses.size):
        base = r * k
        mx = np.float64(logits[base])
        for j in range(1, k):
            v = np.float64(logits[base + j])
            if not v <= mx:
                mx = v
        total = 0.0
        for j in range(k):
            total += math.exp(logits[base + j] - mx)
        log_sum = math.log(total)
        loss = 0.0
        for j in range(k):
            shifted = (logits[base + j] - mx) - log_sum
            probs[base + j] = math.exp(shifted)
            if not use_labels:
                loss -= target[base + j] * shifted
        if use_labels:
            label = labels[r]
            # A negative label is an ignored position (CrossEntropy's ignore_index): no loss.
            loss = mx - logits[base + label] + log_sum if 0 <= label < k else math.nan
            if label < 0:
                loss = 0.0
        losses[r] = loss


@serial_kernel
def softmax_xent_backward(probs, target, out, scale):  # type: ignore[no-untyped-def]
    for i in prange(out.size):
        out[i] = (np.float64(probs[i]) - target[i]) * scale


@serial_kernel
def softmax_xent_index_backward(probs, labels, out, scale, k):  # type: ignore[no-untyped-def]
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
def bce_logits(z, target, losses):  # type: ignore[no-untyped-def]
    for i in prange(z.size):
        v = np.float64(z[i])
        losses[i] = math.log1p(math.exp(-abs(v))) + (v if v > 0.0 else 0.0) - v * target[i]


@serial_kernel
def bce_logits_backward(z, target, out, scale):  # type: ignore[no-untyped-def]
    for i in prange(z.size):
        out[i] = (sigmoid(np.float64(z[i])) - target[i]) * scale


@serial_kernel
def bce_backward(p, target, out, scale, eps):  # type: ignore[no-untyped-def]
    for i in prange(p.size):
        v = np.float64(p[i])
        den = (1.0 - v) * v
        if den < eps:
            den = eps
        out[i] = (v - target[i]) / den * scale


# --- dropout and batch normalisation ---------------------------------------------
@kernel
def dropout(x, uniform, out, mask, p, keep_scale):  # type: ignore[no-untyped-def]
    for i in prange(x.size):
        s = keep_scale if uniform[i] >= p else 0.0
        mask[i] = s
        out[i] = x[i] * mask[i]


@kernel
def multiply(a, b, out):  # type: ignore[no-untyped-def]
    for i in prange(out.size):
        out[i] = a[i] * b[i]


@kernel
def batchnorm_forward(x, gamma, beta, running_mean, running_var, momentum, eps, out, xhat, inv_std, n, f):  # type: ignore[no-untyped-def]
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
