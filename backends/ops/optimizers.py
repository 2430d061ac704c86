"""Optimiser updates and gradient-clipping steps over a flat parameter buffer.

Every update follows ``torch.optim``'s documented rule and epsilon placement
exactly, and changes ``param`` and its state arrays in place in one pass.
Scalars are Python numbers computed on the host (learning rate, bias
corrections), so nothing here synchronises the device.  State arrays an
update does not use may be 0-size.  ``step`` is the 1-based step count after
the increment.

Signatures:

* ``sgd_step(param, grad, momentum_buf, lr, momentum, dampening, weight_decay, nesterov, first_step)``:
  ``g = grad + wd * param``; with momentum ``buf = g`` on the first step,
  ``buf = momentum * buf + (1 - dampening) * g`` after, and
  ``g = g + momentum * buf`` (Nesterov) or ``g = buf``; ``param -= lr * g``.
* ``adagrad_step(param, grad, state_sum, clr, weight_decay, eps)``:
  ``g = grad + wd * param``; ``state_sum += g * g``;
  ``param -= clr * g / (sqrt(state_sum) + eps)`` with
  ``clr = lr / (1 + (step - 1) * lr_decay)`` computed by the caller.
* ``rmsprop_step(param, grad, square_avg, grad_avg, momentum_buf, lr, alpha, eps, weight_decay, momentum,
  centered)``:
  ``g = grad + wd * param``; ``sq = alpha * sq + (1 - alpha) * g * g``;
  centered: ``ga = alpha * ga + (1 - alpha) * g`` and ``avg = sqrt(sq - ga * ga) + eps``,
  else ``avg = sqrt(sq) + eps``; with momentum ``buf = momentum * buf + g / avg`` and
  ``param -= lr * buf``, else ``param -= lr * g / avg``.
* ``adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay, step,
  decoupled, amsgrad)``: AdamW (``decoupled``) first shrinks ``param *= 1 - lr * wd``, Adam adds
  ``wd * param`` to the gradient; ``m = b1 * m + (1 - b1) * g``; ``v = b2 * v + (1 - b2) * g * g``;
  amsgrad keeps ``vmax = max(vmax, v)`` and uses it for ``v`` below;
  ``param -= (lr / (1 - b1**step)) * m / (sqrt(v) / sqrt(1 - b2**step) + eps)``.
* ``l1_l2_grad(grad, param, l1, l2, mask, out)``:
  ``out = grad + mask * (l1 * sign(param) + l2 * param)``; ``mask`` is 1 where
  a parameter is regularised and 0 elsewhere (biases); ``out`` may be ``grad``.
* ``grad_norm_sq(grad, out)``: ``out[...] = sum(grad * grad)``, ``out`` a 0-d
  or (1,) array; accumulated in float64 (on the CPU) before being stored.
* ``scale_inplace(x, factor)``: ``x *= factor[()]`` with ``factor`` a 0-d
  array on the device, so a clipping coefficient never leaves the device.

The generic versions here are the reference; they may allocate temporaries.
The compiled kernels do each update in a single pass without allocating and
flush subnormal state values to zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..kernels import cpu as kcpu
from .registry import Cuda, Numba, declare


def _with_weight_decay(param: Any, grad: Any, weight_decay: float) -> Any:
    return grad + weight_decay * param if weight_decay != 0 else grad


# --- SGD ----------------------------------------------------------------------------
def _sgd_cpu(kernel: Any, generic: Any) -> Any:
    def sgd_step(param, grad, momentum_buf, lr, momentum, dampening, weight_decay, nesterov, first_step):  # type: ignore[no-untyped-def]
        buf = momentum_buf.reshape(-1) if momentum != 0 else param.reshape(-1)[:0]
        lr_, momentum_, keep_, weight_decay_, tiny = kcpu.rounded(
            param.dtype.type, lr, momentum, 1.0 - dampening, weight_decay
        )
        kcpu.pick(kernel, param.size, "optimiser")(
            param.reshape(-1),
            grad.reshape(-1),
            buf,
            lr_,
            momentum_,
            keep_,
            weight_decay_,
            momentum != 0,
            bool(nesterov),
            bool(first_step),
            tiny,
        )
        return param

    return sgd_step


def _sgd_cuda(kernels: Any, generic: Any) -> Any:
    with_momentum, plain = kernels("momentum"), kernels("plain")

    def sgd_step(param, grad, momentum_buf, lr, momentum, dampening, weight_decay, nesterov, first_step):  # type: ignore[no-untyped-def]
        if momentum != 0:
            with_momentum(
                grad,
                lr,
                momentum,
                1.0 - dampening,
                weight_decay,
                bool(nesterov),
                bool(first_step),
                param,
                momentum_buf,
            )
        else:
            plain(grad, lr, weight_decay, param)
        return param

    return sgd_step


@declare(
    "sgd_step",
    "SGD with optional momentum, dampening, Nesterov and L2 weight decay",
    cpu=Numba(_sgd_cpu),
    cuda=Cuda(_sgd_cuda),
)
def sgd_step(
    xp: Any,
    param: Any,
    grad: Any,
    momentum_buf: Any,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    first_step: bool,
) -> Any:
    g = _with_weight_decay(param, grad, weight_decay)
    if momentum != 0:
        if first_step:
            momentum_buf[...] = g
        else:
            momentum_buf *= momentum
            momentum_buf += (1.0 - dampening) * g if dampening != 0 else g
        g = g + momentum * momentum_buf if nesterov else momentum_buf
    param -= lr * g
    return param


def _adagrad_cpu(kernel: Any, generic: Any) -> Any:
    def adagrad_step(param, grad, state_sum, clr, weight_decay, eps):  # type: ignore[no-untyped-def]
        t = param.dtype.type
        kcpu.pick(kernel, param.size, "optimiser")(
            param.reshape(-1),
            grad.reshape(-1),
            state_sum.reshape(-1),
            t(clr),
            t(weight_decay),
            t(eps),
            t(kcpu.tiny(param)),
        )
        return param

    return adagrad_step


def _adagrad_cuda(kernels: Any, generic: Any) -> Any:
    kernel = kernels()

    def adagrad_step(param, grad, state_sum, clr, weight_decay, eps):  # type: ignore[no-untyped-def]
        kernel(grad, clr, weight_decay, eps, param, state_sum)
        return param

    return adagrad_step


@declare(
    "adagrad_step",
    "AdaGrad: state_sum += g*g; param -= clr * g / (sqrt(state_sum) + eps)",
    cpu=Numba(_adagrad_cpu),
    cuda=Cuda(_adagrad_cuda),
)
def adagrad_step(
    xp: Any, param: Any, grad: Any, state_sum: Any, clr: float, weight_decay: float, eps: float
) -> Any:
    g = _with_weight_decay(param, grad, weight_decay)
    state_sum += g * g
    std = xp.sqrt(state_sum)
    std += eps
    param -= clr * g / std
    return param


def _rmsprop_cpu(kernel: Any, generic: Any) -> Any:
    def rmsprop_step(
        param, grad, square_avg, grad_avg, momentum_buf, lr, alpha, eps, weight_decay, momentum, centered
    ):  # type: ignore[no-untyped-def]
        t = param.dtype.type
        kcpu.pick(kernel, param.size, "optimiser")(
            param.reshape(-1),
            grad.reshape(-1),
            square_avg.reshape(-1),
            grad_avg.reshape(-1),
            momentum_buf.reshape(-1),
            t(lr),
            t(alpha),
            t(1.0 - alpha),
            t(eps),
            t(weight_decay),
            t(momentum),
            bool(centered),
            momentum > 0,
            t(kcpu.tiny(param)),
        )
        return param

    return rmsprop_step


def _rmsprop_cuda(kernels: Any, generic: Any) -> Any:
    kernel = kernels()

    def rmsprop_step(
        param, grad, square_avg, grad_avg, momentum_buf, lr, alpha, eps, weight_decay, momentum, centered
    ):  # type: ignore[no-untyped-def]
        kernel(
            grad,
            lr,
            alpha,
            1.0 - alpha,
            eps,
            weight_decay,
            momentum,
            bool(centered),
            bool(momentum > 0),
            param,
            square_avg,
            grad_avg,
            momentum_buf,
        )
        return param

    return rmsprop_step


@declare(
    "rmsprop_step",
    "RMSProp with optional centring and momentum (torch.optim.RMSprop's rule)",
    cpu=Numba(_rmsprop_cpu),
    cuda=Cuda(_rmsprop_cuda),
)
def rmsprop_step(
    xp: Any,
    param: Any,
    grad: Any,
    square_avg: Any,
    grad_avg: Any,
    momentum_buf: Any,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
) -> Any:
    g = _with_weight_decay(param, grad, weight_decay)
    square_avg *= alpha
    square_avg += (1.0 - alpha) * (g * g)
    if centered:
        grad_avg += (1.0 - alpha) * (g - grad_avg)
        avg = square_avg - grad_avg * grad_avg
        xp.sqrt(avg, out=avg)
    else:
        avg = xp.sqrt(square_avg)
    avg += eps
    if momentum > 0:
        momentum_buf *= momentum
        momentum_buf += g / avg
        param -= lr * momentum_buf
    else:
        param -= lr * (g / avg)
    return param


def adam_scalars(lr: float, beta1: float, beta2: float, step: int) -> tuple[float, float]:
    """Adam's per-step host scalars: ``lr / (1 - beta1**step)`` and ``sqrt(1 - beta2**step)``.

    Computed in double on the host, as torch does, and shared by the generic,
    CPU and CUDA versions so that their bias corrections cannot differ.
    """
    return lr / (1.0 - beta1**step), (1.0 - beta2**step) ** 0.5


def adam_weight_decay(lr: float, weight_decay: float, decoupled: bool) -> tuple[float, float]:
    """``(shrink, l2)``: AdamW multiplies the parameter by ``shrink = 1 - lr * wd`` (Adam by 1), Adam
    adds ``l2 * param`` to the gradient (AdamW adds 0); computed in double on the host, as torch does.
    """
    return (1.0 - lr * weight_decay, 0.0) if decoupled else (1.0, weight_decay)


def _adam_cpu(kernel: Any, generic: Any) -> Any:
    def adam_step(
        param,
        grad,
        exp_avg,
        exp_avg_sq,
        max_exp_avg_sq,
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        step,
        decoupled,
        amsgrad,
    ):  # type: ignore[no-untyped-def]
        t = param.dtype.type
        # torch's scalars, computed on the host in double as torch does.
        step_size, bc2_sqrt = adam_scalars(lr, beta1, beta2, step)
        shrink, l2 = adam_weight_decay(lr, weight_decay, decoupled)
        shrink_, l2_, beta1_c, beta2_, beta2_c, eps_, tiny = kcpu.rounded(
            t, shrink, l2, 1.0 - beta1, beta2, 1.0 - beta2, eps
        )
        kcpu.pick(kernel, param.size, "optimiser")(
            param.reshape(-1),
            grad.reshape(-1),
            exp_avg.reshape(-1),
            exp_avg_sq.reshape(-1),
            max_exp_avg_sq.reshape(-1),
            shrink_,
            l2_,
            beta1_c,
            beta2_,
            beta2_c,
            eps_,
            t(step_size),
            t(bc2_sqrt),
            bool(amsgrad),
            tiny,
        )
        return param

    return adam_step


def _adam_cuda(kernels: Any, generic: Any) -> Any:
    kernel = kernels()

    def adam_step(
        param,
        grad,
        exp_avg,
        exp_avg_sq,
        max_exp_avg_sq,
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        step,
        decoupled,
        amsgrad,
    ):  # type: ignore[no-untyped-def]
        step_size, bc2_sqrt = adam_scalars(lr, beta1, beta2, step)
        shrink, l2 = adam_weight_decay(lr, weight_decay, decoupled)
        kernel(
            grad,
            shrink,
            l2,
            1.0 - beta1,
            beta2,
            1.0 - beta2,
            eps,
            step_size,
            bc2_sqrt,
            bool(amsgrad),
            param,
            exp_avg,
            exp_avg_sq,
            max_exp_avg_sq,
        )
        return param

    return adam_step


@declare(
    "adam_step",
    "Adam / AdamW (decoupled) with bias correction and optional AMSGrad",
    cpu=Numba(_adam_cpu),
    cuda=Cuda(_adam_cuda),
)
def adam_step(
    xp: Any,
    param: Any,
    grad: Any,
    exp_avg: Any,
    exp_avg_sq: Any,
    max_exp_avg_sq: Any,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    step: int,
    decoupled: bool,
    amsgrad: bool,
) -> Any:
    if decoupled:
        if weight_decay != 0:
            param *= 1.0 - lr * weight_decay
        g = grad
    else:
        g = _with_weight_decay(param, grad, weight_decay)
    exp_avg += (1.0 - beta1) * (g - exp_avg)
    exp_avg_sq *= beta2
    exp_avg_sq += (1.0 - beta2) * (g * g)
    step_size, bias_correction2_sqrt = adam_scalars(lr, beta1, beta2, step)
    if amsgrad:
        xp.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        second = max_exp_avg_sq
    else:
        second = exp_avg_sq
    denom = xp.sqrt(second)
    denom /= bias_correction2_sqrt
    denom += eps
    param -= step_size * (exp_avg / denom)
    return param


def _l1_l2_cpu(kernel: Any, generic: Any) -> Any:
    def l1_l2_grad(grad, param, l1, l2, mask, out):  # type: ignore[no-untyped-def]
        if mask.shape != grad.shape:
            return generic(grad, param, l1, l2, mask, out)
        kcpu.pick(kernel, grad.size, "optimiser")(
            grad.reshape(-1), param.reshape(-1), mask.reshape(-1), out.reshape(-1), float(l1), float(l2)
        )
        return out

    return l1_l2_grad


def _l1_l2_cuda(kernels: Any, generic: Any) -> Any:
    kernel = kernels()

    def l1_l2_grad(grad, param, l1, l2, mask, out):  # type: ignore[no-untyped-def]
        kernel(grad, param, mask, l1, l2, out)
        return out

    return l1_l2_grad


@declare(
    "l1_l2_grad",
    "grad += mask * (l1 * sign(param) + l2 * param)",
    cpu=Numba(_l1_l2_cpu),
    cuda=Cuda(_l1_l2_cuda),
)
def l1_l2_grad(xp: Any, grad: Any, param: Any, l1: float, l2: float, mask: Any, out: Any) -> Any:
    penalty = xp.sign(param)
    penalty *= l1
    if l2 != 0:
        penalty += l2 * param
    penalty *= mask
    xp.add(grad, penalty, out=out)
    return out


def _grad_norm_sq_cpu(kernel: Any, generic: Any) -> Any:
    def grad_norm_sq(grad, out):  # type: ignore[no-untyped-def]
        flat = grad.reshape(-1)
        run = kcpu.pick(kernel, flat.size, "optimiser")
        partial = np.empty(64 if run is kernel.parallel and kernel.has_parallel else 1)
        run(flat, partial)
        out[...] = partial.sum()
        return out

    return grad_norm_sq


def _grad_norm_sq_cuda(kernels: Any, generic: Any) -> Any:
    kernel = kernels()

    def grad_norm_sq(grad, out):  # type: ignore[no-untyped-def]
        kernel(grad.reshape(-1), out.reshape(()))
        return out

    return grad_norm_sq


@declare(
    "grad_norm_sq",
    "out = sum(grad * grad), accumulated in float64",
    cpu=Numba(_grad_norm_sq_cpu),
    cuda=Cuda(_grad_norm_sq_cuda),
)
def grad_norm_sq(xp: Any, grad: Any, out: Any) -> Any:
    flat = grad.reshape(-1)
    if flat.dtype == xp.float64:
        total = xp.dot(flat, flat)
    else:
        wide = flat.astype(xp.float64)
        total = xp.dot(wide, wide)
    out[...] = total
    return out


def _scale_cpu(kernel: Any, generic: Any) -> Any:
    def scale_inplace(x, factor):  # type: ignore[no-untyped-def]
        # The product is formed in float64 and rounded once, as the generic
        # ``x *= factor`` with a float64 0-d factor does.
        kcpu.pick(kernel, x.size, "cheap")(x.reshape(-1), float(factor.reshape(-1)[0]))
        return x

    return scale_inplace


def _scale_cuda(kernels: Any, generic: Any) -> Any:
    kernel = kernels()

    def scale_inplace(x, factor):  # type: ignore[no-untyped-def]
        kernel(factor.reshape(()), x)
        return x

    return scale_inplace


@declare(
    "scale_inplace",
    "x *= factor (a 0-d device array)",
    cpu=Numba(_scale_cpu),
    cuda=Cuda(_scale_cuda),
)
def scale_inplace(xp: Any, x: Any, factor: Any) -> Any:
    x *= factor
    return x
