"""Dropout and batch normalisation: the hot steps of their layers.

Signatures (all arrays of one call share a dtype; outputs are written in place
and returned; nothing here synchronises the device):

* ``dropout_forward(x, uniform, p, out, mask)``: ``mask = (uniform >= p) / (1 - p)``
  in ``x``'s dtype and ``out = x * mask``.  ``uniform`` holds U[0, 1) draws of
  ``x``'s shape, made by the backend's seeded generator, so that every
  implementation keeps the same units for the same draws.
* ``dropout_backward(gy, mask, out)``: ``out = gy * mask``.
* ``batchnorm_forward_train(x, gamma, beta, running_mean, running_var,
  momentum, eps, out, xhat, inv_std)``: normalises ``x`` (n, f) with the
  batch statistics over axis 0 (biased variance, as PyTorch), writes ``out``,
  ``xhat`` and ``inv_std = 1 / sqrt(var + eps)``, and updates the running
  statistics in place with the *unbiased* variance:
  ``running = (1 - momentum) * running + momentum * batch``.  Needs n > 1
  (the layer checks this before calling).
* ``batchnorm_backward(gy, xhat, gamma, inv_std, grad_gamma, grad_beta, out,
  accumulate)``: ``grad_beta = sum(gy)``, ``grad_gamma = sum(gy * xhat)``
  (added to the arrays when ``accumulate``) and the three-term input gradient
  ``out = gamma * inv_std * (gy - (grad_beta + xhat * grad_gamma) / n)``
  built from this call's sums.  ``out`` must not alias ``gy`` or ``xhat``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..kernels import cpu as kcpu
from ..kernels import cuda as kcuda
from .registry import Cuda, Numba, declare


def _dropout_cpu(kernel: Any, generic: Any) -> Any:
    def dropout_forward(x, uniform, p, out, mask):  # type: ignore[no-untyped-def]
        if uniform.shape != x.shape:
            return generic(x, uniform, p, out, mask)
        dtype = x.dtype.type
        kcpu.pick(kernel, x.size, "cheap")(
            x.reshape(-1),
            uniform.reshape(-1),
            out.reshape(-1),
            mask.reshape(-1),
            dtype(p),
            dtype(1.0 / (1.0 - p)),
        )
        return out

    return dropout_forward


def _dropout_cuda(kernels: Any, generic: Any) -> Any:
    kernel = kernels()

    def dropout_forward(x, uniform, p, out, mask):  # type: ignore[no-untyped-def]
        kernel(x, uniform, p, 1.0 / (1.0 - p), out, mask)
        return out

    return dropout_forward


@declare(
    "dropout_forward",
    "mask = (uniform >= p) / (1 - p); y = x * mask",
    cpu=Numba(_dropout_cpu),
    cuda=Cuda(_dropout_cuda),
)
def dropout_forward(xp: Any, x: Any, uniform: Any, p: float, out: Any, mask: Any) -> Any:
    xp.greater_equal(uniform, p, out=mask)
    mask *= 1.0 / (1.0 - p)
    return xp.multiply(x, mask, out=out)


def _dropout_backward_cpu(kernel: Any, generic: Any) -> Any:
    def dropout_backward(gy, mask, out):  # type: ignore[no-untyped-def]
        if mask.shape != gy.shape:
            return generic(gy, mask, out)
        kcpu.pick(kernel, out.size, "cheap")(gy.reshape(-1), mask.reshape(-1), out.reshape(-1))
        return out

    return dropout_backward


def _dropout_backward_cuda(kernels: Any, generic: Any) -> Any:
    kernel = kernels()

    def dropout_backward(gy, mask, out):  # type: ignore[no-untyped-def]
        kernel(gy, mask, out)
        return out

    return dropout_backward


@declare(
    "dropout_backward",
    "gx = gy * mask",
    cpu=Numba(_dropout_backward_cpu),
    cuda=Cuda(_dropout_backward_cuda),
)
def dropout_backward(xp: Any, gy: Any, mask: Any, out: Any) -> Any:
    return xp.multiply(gy, mask, out=out)


def _batchnorm_cpu(kernel: Any, generic: Any) -> Any:
    def batchnorm_forward_train(x, gamma, beta, running_mean, running_var, momentum, eps, out, xhat, inv_std):  # type: ignore[no-untyped-def]
        if x.ndim != 2:
            return generic(x, gamma, beta, running_mean, running_var, momentum, eps, out, xhat, inv_std)
        n, f = x.shape
        kcpu.pick(kernel, x.size, "columns")(
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


def _batchnorm_cuda(kernels: Any, generic: Any) -> Any:
    column_sums, statistics, normalise = kernels.raw("partial"), kernels.raw("stats"), kernels.raw("apply")

    def batchnorm_forward_train(x, gamma, beta, running_mean, running_var, momentum, eps, out, xhat, inv_std):  # type: ignore[no-untyped-def]
        n, f = x.shape
        if n == 0:  # the column passes read each column's first value: none to read
            return generic(x, gamma, beta, running_mean, running_var, momentum, eps, out, xhat, inv_std)
        launches = (
            column_sums(x),
            statistics(x, running_mean, running_var, inv_std),
            normalise(x, gamma, beta, inv_std, out, xhat),
        )
        chunk, chunks = kcuda.row_chunks(n, f)
        work = kcuda.array_module((x,)).empty((2 * chunks + 1) * f, dtype=np.float64)
        partial, mean = work[: 2 * chunks * f], work[2 * chunks * f :]
        sizes = (np.int64(n), np.int64(f))
        launches[0](*kcuda.grid(chunks * f), (x, partial, *sizes, np.int64(chunk), np.int64(chunks)))
        launches[1](
            *kcuda.grid(f),
            (
                x,
                partial,
                running_mean,
                running_var,
                np.float64(momentum),
                np.float64(eps),
                inv_std,
                mean,
                *sizes,
                np.int64(chunks),
            ),
        )
        launches[2](*kcuda.grid(n * f), (x, gamma, beta, mean, inv_std, out, xhat, *sizes))
        return out

    return batchnorm_forward_train


@declare(
    "batchnorm_forward_train",
    "y = gamma * (x - mean) / sqrt(var + eps) + beta with batch statistics; running stats updated",
    cpu=Numba(_batchnorm_cpu),
    cuda=Cuda(_batchnorm_cuda, flat=True),
)
def batchnorm_forward_train(
    xp: Any,
    x: Any,
    gamma: Any,
    beta: Any,
    running_mean: Any,
    running_var: Any,
    momentum: float,
    eps: float,
    out: Any,
    xhat: Any,
    inv_std: Any,
) -> Any:
    n = x.shape[0]
    mean = x.mean(axis=0)
    xp.subtract(x, mean, out=xhat)
    xp.multiply(xhat, xhat, out=out)
    var = out.mean(axis=0)  # biased: normalises this batch
    xp.add(var, eps, out=inv_std)
    xp.sqrt(inv_std, out=inv_std)
    xp.reciprocal(inv_std, out=inv_std)
    xhat *= inv_std
    xp.multiply(xhat, gamma, out=out)
    out += beta
    running_mean *= 1.0 - momentum
    mean *= momentum
    running_mean += mean
    running_var *= 1.0 - momentum
    var *= momentum * n / (n - 1)  # unbiased, as PyTorch keeps it
    running_var += var
    return out


def _batchnorm_backward_cpu(kernel: Any, generic: Any) -> Any:
    def batchnorm_backward(gy, xhat, gamma, inv_std, grad_gamma, grad_beta, out, accumulate):  # type: ignore[no-untyped-def]
        if gy.ndim != 2:
            return generic(gy, xhat, gamma, inv_std, grad_gamma, grad_beta, out, accumulate)
        n, f = gy.shape
        kcpu.pick(kernel, gy.size, "columns")(
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


def _batchnorm_backward_cuda(kernels: Any, generic: Any) -> Any:
    column_sums, statistics, input_gradient = (
        kernels.raw("partial"),
        kernels.raw("stats"),
        kernels.raw("apply"),
    )

    def batchnorm_backward(gy, xhat, gamma, inv_std, grad_gamma, grad_beta, out, accumulate):  # type: ignore[no-untyped-def]
        n, f = gy.shape
        launches = (
            column_sums(gy, xhat),
            statistics(grad_gamma, grad_beta),
            input_gradient(gy, xhat, gamma, inv_std, out),
        )
        chunk, chunks = kcuda.row_chunks(n, f)
        work = kcuda.array_module((gy,)).empty((2 * chunks + 2) * f, dtype=np.float64)
        partial, sums = work[: 2 * chunks * f], work[2 * chunks * f :]
        sizes = (np.int64(n), np.int64(f))
        launches[0](*kcuda.grid(chunks * f), (gy, xhat, partial, *sizes, np.int64(chunk), np.int64(chunks)))
        launches[1](
            *kcuda.grid(f),
            (partial, grad_gamma, grad_beta, sums, np.bool_(accumulate), np.int64(f), np.int64(chunks)),
        )
        launches[2](*kcuda.grid(n * f), (gy, xhat, gamma, inv_std, sums, out, *sizes))
        return out

    return batchnorm_backward


@declare(
    "batchnorm_backward",
    "three-term batch-norm input gradient; gamma and beta gradients",
    cpu=Numba(_batchnorm_backward_cpu),
    cuda=Cuda(_batchnorm_backward_cuda, flat=True),
)
def batchnorm_backward(
    xp: Any,
    gy: Any,
    xhat: Any,
    gamma: Any,
    inv_std: Any,
    grad_gamma: Any,
    grad_beta: Any,
    out: Any,
    accumulate: bool,
) -> Any:
    n = gy.shape[0]
    dbeta = gy.sum(axis=0)
    xp.multiply(gy, xhat, out=out)
    dgamma = out.sum(axis=0)
    if accumulate:
        grad_beta += dbeta
        grad_gamma += dgamma
    else:
        grad_beta[...] = dbeta
        grad_gamma[...] = dgamma
    xp.multiply(xhat, dgamma, out=out)
    out += dbeta
    out *= -1.0 / n
    out += gy
    xp.multiply(gamma, inv_std, out=dbeta)  # dbeta is spent: reuse it as the per-feature scale
    out *= dbeta
    return out
