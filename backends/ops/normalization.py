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

from ..kernels.cpu import cpu_kernel
from ..kernels.cuda import cuda_kernel
from .registry import declare


@declare(
    "dropout_forward",
    "mask = (uniform >= p) / (1 - p); y = x * mask",
    cpu=cpu_kernel("dropout_forward"),
    cuda=cuda_kernel("dropout_forward"),
)
def dropout_forward(xp: Any, x: Any, uniform: Any, p: float, out: Any, mask: Any) -> Any:
    xp.greater_equal(uniform, p, out=mask)
    mask *= 1.0 / (1.0 - p)
    return xp.multiply(x, mask, out=out)


@declare(
    "dropout_backward",
    "gx = gy * mask",
    cpu=cpu_kernel("dropout_backward"),
    cuda=cuda_kernel("dropout_backward"),
)
def dropout_backward(xp: Any, gy: Any, mask: Any, out: Any) -> Any:
    return xp.multiply(gy, mask, out=out)


@declare(
    "batchnorm_forward_train",
    "y = gamma * (x - mean) / sqrt(var + eps) + beta with batch statistics; running stats updated",
    cpu=cpu_kernel("batchnorm_forward_train"),
    cuda=cuda_kernel("batchnorm_forward_train"),
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


@declare(
    "batchnorm_backward",
    "three-term batch-norm input gradient; gamma and beta gradients",
    cpu=cpu_kernel("batchnorm_backward"),
    cuda=cuda_kernel("batchnorm_backward"),
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
