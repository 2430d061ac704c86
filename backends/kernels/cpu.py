"""Builders of the CPU (Numba) implementations of the hot operations.

:func:`cpu_kernel` gives an operation's declaration its ``cpu=`` builder.
Nothing is imported or compiled until a NumPy backend first resolves the
operation: the builder then imports Numba (raising ``ImportError`` where it
is missing, so that the backend falls back to the generic version) and
returns a wrapper with the operation's signature.  Each wrapper

* picks the serial build of its kernel for small arrays and the parallel one
  from a size where the threads pay off (:data:`PARALLEL_MIN`);
* runs the generic version instead when an array is not C-contiguous (the
  kernels walk flat memory; one guard for every wrapper, CPU and CUDA:
  :func:`.layout.flat_or_generic`), so an unusual caller still gets a right
  answer;
* passes the dtype's smallest normal number to the optimiser kernels, which
  flush subnormal state values to zero.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from .built_once import BuiltOnce
from .layout import flat_or_generic

# Sizes (elements) from which the parallel build runs, by kind of work.
# Right after a matrix product the BLAS threads are still spinning; a Numba
# parallel region started then fights them for the cores (measured on 2
# cores: bias+ReLU over 262k elements 3.9 ms instead of 0.17 ms, and the
# next matrix product 2.5-10x slower).  Serial one-pass kernels run at
# memory speed for every layer size of the networks we benchmark, so the
# threads are kept for buffers of several million elements.
PARALLEL_MIN = {
    "cheap": 1 << 22,
    "transcendental": 1 << 22,
    "optimiser": 1 << 21,
    "rows": 1 << 22,
    "columns": 1 << 22,
}

_CHEAP_ACTIVATIONS = frozenset({"identity", "relu", "leaky_relu", "sigmoid", "tanh"})

def _make_compiled(name: str) -> Callable[..., Any]:
    from . import numba_kernels  # ImportError here means: use the generic version

    return _make(name, numba_kernels)


build = BuiltOnce(_make_compiled)
cpu_kernel = build.builder


def _generic(name: str) -> Callable[..., Any]:
    from ..ops.registry import OPERATIONS

    return functools.partial(OPERATIONS[name].generic, np)


def _pick(pair: Any, size: int, kind: str) -> Any:
    return pair.parallel if size >= PARALLEL_MIN[kind] else pair.serial


@functools.lru_cache(maxsize=256)
def _rounded(scalar: type, *values: float) -> tuple[Any, ...]:
    """``values`` rounded to the arrays' dtype, then that dtype's smallest normal number.

    Cached: an optimiser's hyperparameters rarely change between steps, and
    rounding them anew cost more than the update of a small network.
    """
    return (*(scalar(value) for value in values), scalar(np.finfo(scalar).tiny))


def _make(name: str, nk: Any) -> Callable[..., Any]:
    for prefix, factory in _FACTORIES:
        if name.startswith(prefix) or name == prefix:
            # The kernels walk flat memory: any other layout runs the generic version.
            return flat_or_generic(factory(name, nk), _generic(name))
    raise ImportError(f"no CPU kernel for operation {name!r}")


def _param(out: Any, params: tuple[float, ...]) -> float:
    # The activation's parameter rounded to the arrays' dtype, as NumPy rounds
    # a Python float operand of a float32 array.
    return float(out.dtype.type(params[0])) if params else 0.0


# --- activations -------------------------------------------------------------------
def _activation_parts(name: str) -> tuple[str, str]:
    body = name.removeprefix("bias_")
    for role in ("_forward", "_backward"):
        if body.endswith(role):
            return body.removesuffix(role), role[1:]
    raise ImportError(f"no CPU kernel for operation {name!r}")


def _make_activation(name: str, nk: Any) -> Callable[..., Any]:
    activation, role = _activation_parts(name)
    kind = "cheap" if activation in _CHEAP_ACTIVATIONS else "transcendental"
    generic = _generic(name)
    if role == "backward":
        pair = nk.KERNELS[f"bwd_{activation}"]

        def backward(gy: Any, saved: Any, out: Any, *params: float) -> Any:
            p = _param(out, params)
            _pick(pair, out.size, kind)(gy.reshape(-1), saved.reshape(-1), out.reshape(-1), p)
            return out

        return backward

    pair = nk.KERNELS[f"fwd_{activation}"]
    if name.startswith("bias_"):
        from .bias_activation_numba import INPLACE

        inplace = INPLACE.get(activation)

        def bias_forward(z: Any, b: Any, out: Any, *params: float) -> Any:
            if z.ndim != 2 or b.shape != z.shape[1:]:
                return generic(z, b, out, *params)
            p = _param(out, params)
            cols = max(z.shape[1], 1)
            if out is z and inplace is not None and z.size < PARALLEL_MIN[kind]:
                inplace(z.reshape(-1), b, p, cols)  # one store per element: vectorised
                return out
            _pick(pair, z.size, kind)(z.reshape(-1), b, out.reshape(-1), p, cols, True)
            return out

        return bias_forward

    def forward(x: Any, out: Any, *params: float) -> Any:
        p = _param(out, params)
        flat = x.reshape(-1)
        _pick(pair, x.size, kind)(flat, flat[:0], out.reshape(-1), p, 1, False)
        return out

    return forward


# --- optimisers ----------------------------------------------------------------------
def _make_optimiser(name: str, nk: Any) -> Callable[..., Any]:
    generic = _generic(name)
    kind = "optimiser"
    if name == "sgd_step":
        pair = nk.KERNELS["sgd"]

        def sgd_step(param, grad, momentum_buf, lr, momentum, dampening, weight_decay, nesterov, first_step):  # type: ignore[no-untyped-def]
            buf = momentum_buf.reshape(-1) if momentum != 0 else param.reshape(-1)[:0]
            lr_, momentum_, dampening_, weight_decay_, tiny = _rounded(
                param.dtype.type, lr, momentum, dampening, weight_decay
            )
            _pick(pair, param.size, kind)(
                param.reshape(-1),
                grad.reshape(-1),
                buf,
                lr_,
                momentum_,
                dampening_,
                weight_decay_,
                momentum != 0,
                bool(nesterov),
                bool(first_step),
                tiny,
            )
            return param

        return sgd_step
    if name == "adagrad_step":
        pair = nk.KERNELS["adagrad"]

        def adagrad_step(param, grad, state_sum, clr, weight_decay, eps):  # type: ignore[no-untyped-def]
            weight_decay_, eps_, tiny = _rounded(param.dtype.type, weight_decay, eps)
            _pick(pair, param.size, kind)(
                param.reshape(-1),
                grad.reshape(-1),
                state_sum.reshape(-1),
                param.dtype.type(clr),
                weight_decay_,
                eps_,
                tiny,
            )
            return param

        return adagrad_step
    if name == "rmsprop_step":
        pair = nk.KERNELS["rmsprop"]

        def rmsprop_step(
            param, grad, square_avg, grad_avg, momentum_buf, lr, alpha, eps, weight_decay, momentum, centered
        ):  # type: ignore[no-untyped-def]
            scalars = _rounded(param.dtype.type, lr, alpha, eps, weight_decay, momentum)
            _pick(pair, param.size, kind)(
                param.reshape(-1),
                grad.reshape(-1),
                square_avg.reshape(-1),
                grad_avg.reshape(-1),
                momentum_buf.reshape(-1),
                *scalars[:5],
                bool(centered),
                momentum > 0,
                scalars[5],
            )
            return param

        return rmsprop_step
    if name == "adam_step":
        from ..ops.optimizers import adam_scalars

        pair = nk.KERNELS["adam"]

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
            shrink, l2 = (1.0 - lr * weight_decay, 0.0) if decoupled else (1.0, weight_decay)
            shrink_, l2_, beta1_, beta2_, eps_, tiny = _rounded(t, shrink, l2, beta1, beta2, eps)
            _pick(pair, param.size, kind)(
                param.reshape(-1),
                grad.reshape(-1),
                exp_avg.reshape(-1),
                exp_avg_sq.reshape(-1),
                max_exp_avg_sq.reshape(-1),
                shrink_,
                l2_,
                beta1_,
                beta2_,
                eps_,
                t(step_size),
                t(bc2_sqrt),
                bool(amsgrad),
                tiny,
            )
            return param

        return adam_step
    if name == "l1_l2_grad":
        pair = nk.KERNELS["l1_l2"]

        def l1_l2_grad(grad, param, l1, l2, mask, out):  # type: ignore[no-untyped-def]
            if mask.shape != grad.shape:
                return generic(grad, param, l1, l2, mask, out)
            _pick(pair, grad.size, kind)(
                grad.reshape(-1), param.reshape(-1), mask.reshape(-1), out.reshape(-1), float(l1), float(l2)
            )
            return out

        return l1_l2_grad
    if name == "grad_norm_sq":
        pair = nk.KERNELS["sum_squares"]

        def grad_norm_sq(grad, out):  # type: ignore[no-untyped-def]
            flat = grad.reshape(-1)
            kernel = _pick(pair, flat.size, kind)
            partial = np.empty(64 if kernel is pair.parallel else 1)
            kernel(flat, partial)
            out[...] = partial.sum()
            return out

        return grad_norm_sq
    if name == "scale_inplace":
        pair = nk.KERNELS["scale"]

        def scale_inplace(x, factor):  # type: ignore[no-untyped-def]
            # The product is formed in float64 and rounded once, as the generic
            # ``x *= factor`` with a float64 0-d factor does.
            _pick(pair, x.size, "cheap")(x.reshape(-1), float(factor.reshape(-1)[0]))
            return x

        return scale_inplace
    raise ImportError(f"no CPU kernel for operation {name!r}")


# --- losses ------------------------------------------------------------------------
def _make_loss(name: str, nk: Any) -> Callable[..., Any]:
    generic = _generic(name)
    if name in ("softmax_cross_entropy_forward", "softmax_cross_entropy_index_forward"):
        pair = nk.KERNELS["softmax_xent"]
        use_labels = name == "softmax_cross_entropy_index_forward"

        def forward(logits, target, probs, losses):  # type: ignore[no-untyped-def]
            if logits.ndim != 2:
                return generic(logits, target, probs, losses)
            k = logits.shape[1]
            flat = logits.reshape(-1)
            dummy_target = flat[:0] if use_labels else target.reshape(-1)
            labels = target if use_labels else np.empty(0, np.int64)
            _pick(pair, logits.size, "rows")(
                flat, dummy_target, labels, probs.reshape(-1), losses, k, use_labels
            )
            return losses

        return forward
    if name == "softmax_cross_entropy_backward":
        pair = nk.KERNELS["softmax_xent_backward"]

        def backward(probs, target, scale, out):  # type: ignore[no-untyped-def]
            if target.shape != probs.shape:
                return generic(probs, target, scale, out)
            _pick(pair, out.size, "cheap")(
                probs.reshape(-1), target.reshape(-1), out.reshape(-1), float(scale)
            )
            return out

        return backward
    if name == "softmax_cross_entropy_index_backward":
        pair = nk.KERNELS["softmax_xent_index_backward"]

        def index_backward(probs, labels, scale, out):  # type: ignore[no-untyped-def]
            if probs.ndim != 2:
                return generic(probs, labels, scale, out)
            _pick(pair, out.size, "cheap")(
                probs.reshape(-1), labels, out.reshape(-1), float(scale), probs.shape[1]
            )
            return out

        return index_backward
    if name == "binary_cross_entropy_logits_forward":
        pair = nk.KERNELS["bce_logits"]

        def bce_logits_forward(z, target, losses):  # type: ignore[no-untyped-def]
            if target.shape != z.shape:
                return generic(z, target, losses)
            _pick(pair, z.size, "transcendental")(z.reshape(-1), target.reshape(-1), losses.reshape(-1))
            return losses

        return bce_logits_forward
    if name == "binary_cross_entropy_logits_backward":
        pair = nk.KERNELS["bce_logits_backward"]

        def bce_logits_backward(z, target, scale, out):  # type: ignore[no-untyped-def]
            if target.shape != z.shape:
                return generic(z, target, scale, out)
            _pick(pair, z.size, "transcendental")(
                z.reshape(-1), target.reshape(-1), out.reshape(-1), float(scale)
            )
            return out

        return bce_logits_backward
    if name == "binary_cross_entropy_backward":
        pair = nk.KERNELS["bce_backward"]

        def bce_backward(p, target, scale, eps, out):  # type: ignore[no-untyped-def]
            if target.shape != p.shape:
                return generic(p, target, scale, eps, out)
            _pick(pair, p.size, "cheap")(
                p.reshape(-1), target.reshape(-1), out.reshape(-1), float(scale), float(eps)
            )
            return out

        return bce_backward
    raise ImportError(f"no CPU kernel for operation {name!r}")


# --- dropout and batch normalisation ----------------------------------------------------
def _make_normalization(name: str, nk: Any) -> Callable[..., Any]:
    generic = _generic(name)
    if name == "dropout_forward":
        pair = nk.KERNELS["dropout"]

        def dropout_forward(x, uniform, p, out, mask):  # type: ignore[no-untyped-def]
            if uniform.shape != x.shape:
                return generic(x, uniform, p, out, mask)
            dtype = x.dtype.type
            _pick(pair, x.size, "cheap")(
                x.reshape(-1),
                uniform.reshape(-1),
                out.reshape(-1),
                mask.reshape(-1),
                dtype(p),
                dtype(1.0 / (1.0 - p)),
            )
            return out

        return dropout_forward
    if name == "dropout_backward":
        pair = nk.KERNELS["multiply"]

        def dropout_backward(gy, mask, out):  # type: ignore[no-untyped-def]
            if mask.shape != gy.shape:
                return generic(gy, mask, out)
            _pick(pair, out.size, "cheap")(gy.reshape(-1), mask.reshape(-1), out.reshape(-1))
            return out

        return dropout_backward
    if name == "batchnorm_forward_train":
        pair = nk.KERNELS["batchnorm_forward"]

        def batchnorm_forward_train(
            x, gamma, beta, running_mean, running_var, momentum, eps, out, xhat, inv_std
        ):  # type: ignore[no-untyped-def]
            if x.ndim != 2:
                return generic(x, gamma, beta, running_mean, running_var, momentum, eps, out, xhat, inv_std)
            n, f = x.shape
            _pick(pair, x.size, "columns")(
                x.reshape(-1),
                gamma,
                beta,
                running_mean,
                running_var,
                float(momentum),
                float(eps),
                out.reshape(-1),
                xhat.reshape(-1),
                inv_std,
                n,
                f,
            )
            return out

        return batchnorm_forward_train
    if name == "batchnorm_backward":
        pair = nk.KERNELS["batchnorm_backward"]

        def batchnorm_backward(gy, xhat, gamma, inv_std, grad_gamma, grad_beta, out, accumulate):  # type: ignore[no-untyped-def]
            if gy.ndim != 2:
                return generic(gy, xhat, gamma, inv_std, grad_gamma, grad_beta, out, accumulate)
            n, f = gy.shape
            _pick(pair, gy.size, "columns")(
                gy.reshape(-1),
                xhat.reshape(-1),
                gamma,
                inv_std,
                grad_gamma,
                grad_beta,
                out.reshape(-1),
                bool(accumulate),
                n,
                f,
            )
            return out

        return batchnorm_backward
    raise ImportError(f"no CPU kernel for operation {name!r}")


_FACTORIES: tuple[tuple[str, Callable[[str, Any], Callable[..., Any]]], ...] = (
    ("sgd_step", _make_optimiser),
    ("adagrad_step", _make_optimiser),
    ("rmsprop_step", _make_optimiser),
    ("adam_step", _make_optimiser),
    ("l1_l2_grad", _make_optimiser),
    ("grad_norm_sq", _make_optimiser),
    ("scale_inplace", _make_optimiser),
    ("softmax_cross_entropy", _make_loss),
    ("binary_cross_entropy", _make_loss),
    ("dropout_", _make_normalization),
    ("batchnorm_", _make_normalization),
    ("", _make_activation),
)
