"""Loss functions: the hot steps of softmax cross-entropy and binary cross-entropy.

Signatures (all float arrays of one call share a dtype; ``labels`` are int64;
outputs are written in place and returned; nothing here synchronises the
device):

* ``softmax_cross_entropy_forward(logits, target, probs, losses)``: logits and
  target (n, k), target holding probabilities (one-hot or soft); writes
  ``probs = softmax(logits)`` (n, k) and ``losses = -sum(target * log_softmax(logits), axis=1)``
  (n,), with a stable log-sum-exp.
* ``softmax_cross_entropy_index_forward(logits, labels, probs, losses)``: the
  same with class indices ``labels`` (n,) instead of probabilities.  A
  negative label marks an ignored row (``CrossEntropy(ignore_index=...)``):
  its loss is 0; a label >= k gives NaN.
* ``softmax_cross_entropy_backward(probs, target, scale, out)``:
  ``out = (probs - target) * scale`` (targets summing to one per row).
* ``softmax_cross_entropy_index_backward(probs, labels, scale, out)``:
  ``out = probs * scale``, minus ``scale`` at each row's label; rows with a
  negative (ignored) label are 0.
* ``binary_cross_entropy_logits_forward(z, target, losses)``:
  ``losses = max(z, 0) - z * t + log1p(exp(-|z|))``, elementwise and stable.
* ``binary_cross_entropy_logits_backward(z, target, scale, out)``:
  ``out = (sigmoid(z) - t) * scale``.
* ``binary_cross_entropy_backward(p, target, scale, eps, out)``: for
  probabilities ``p``, ``out = scale * (p - t) / max(p * (1 - p), eps)``, the
  rule PyTorch uses (with ``eps = 1e-12``) so that ``p`` at exactly 0 or 1
  gives a large finite gradient instead of a division by zero.

In the backward operations ``out`` may be the same array as ``probs`` / ``p``
/ ``z``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..kernels import cpu as kcpu
from ..kernels import cuda as kcuda
from .registry import Cuda, Numba, declare


def _log_normaliser(xp: Any, logits: Any, probs: Any) -> tuple[Any, Any]:
    """Row maxima ``m`` (n, 1) and ``log(sum(exp(logits - m)))`` (n, 1); ``probs`` is scratch."""
    m = logits.max(axis=1, keepdims=True)
    xp.subtract(logits, m, out=probs)
    xp.exp(probs, out=probs)
    log_sum = xp.log(probs.sum(axis=1, keepdims=True))
    return m, log_sum


def _log_softmax(xp: Any, logits: Any, m: Any, log_sum: Any, out: Any) -> Any:
    # (logits - m) is exact near the maximum, so log-probabilities near 0 keep full precision.
    xp.subtract(logits, m, out=out)
    out -= log_sum
    return out


def _softmax_cpu(kernel: Any, generic: Any) -> Any:
    def forward(logits, target, probs, losses):  # type: ignore[no-untyped-def]
        if logits.ndim != 2:
            return generic(logits, target, probs, losses)
        flat = logits.reshape(-1)
        kcpu.pick(kernel, logits.size, "rows")(
            flat, target.reshape(-1), probs.reshape(-1), losses, logits.shape[1]
        )
        return losses

    return forward


def _softmax_cuda(kernels: Any, generic: Any) -> Any:
    rows = kernels.raw()

    def forward(logits, target, probs, losses):  # type: ignore[no-untyped-def]
        n, k = logits.shape
        if k == 0:  # the kernel reads each row's first logit: none to read (a 0-byte array's pointer is null)
            return generic(logits, target, probs, losses)
        launch = rows(logits, target, probs, losses)
        launch(*kcuda.grid(n), (logits, target, probs, losses, np.int64(n), np.int64(k)))
        return losses

    return forward


@declare(
    "softmax_cross_entropy_forward",
    "probs = softmax(logits); losses = -sum(target * log_softmax(logits), axis=1)",
    cpu=Numba(_softmax_cpu),
    cuda=Cuda(_softmax_cuda, flat=True),
)
def softmax_cross_entropy_forward(xp: Any, logits: Any, target: Any, probs: Any, losses: Any) -> Any:
    m, log_sum = _log_normaliser(xp, logits, probs)
    _log_softmax(xp, logits, m, log_sum, probs)
    probs *= target
    probs.sum(axis=1, out=losses)
    xp.negative(losses, out=losses)
    _log_softmax(xp, logits, m, log_sum, probs)
    xp.exp(probs, out=probs)
    return losses


def _softmax_index_cpu(kernel: Any, generic: Any) -> Any:
    def index_forward(logits, labels, probs, losses):  # type: ignore[no-untyped-def]
        if logits.ndim != 2:
            return generic(logits, labels, probs, losses)
        flat = logits.reshape(-1)
        kcpu.pick(kernel, logits.size, "rows")(flat, labels, probs.reshape(-1), losses, logits.shape[1])
        return losses

    return index_forward


def _softmax_index_cuda(kernels: Any, generic: Any) -> Any:
    rows = kernels.raw()

    def index_forward(logits, labels, probs, losses):  # type: ignore[no-untyped-def]
        n, k = logits.shape
        if labels.dtype != np.int64:
            raise TypeError(
                f"softmax_cross_entropy_index_forward: expected int64 labels, got dtype {labels.dtype}"
            )
        if k == 0:  # as in forward above: no first logit to read
            return generic(logits, labels, probs, losses)
        launch = rows(logits, probs, losses)
        launch(*kcuda.grid(n), (logits, labels, probs, losses, np.int64(n), np.int64(k)))
        return losses

    return index_forward


@declare(
    "softmax_cross_entropy_index_forward",
    "probs = softmax(logits); losses = logsumexp(logits) - logits[label], per row",
    cpu=Numba(_softmax_index_cpu),
    cuda=Cuda(_softmax_index_cuda, flat=True),
)
def softmax_cross_entropy_index_forward(xp: Any, logits: Any, labels: Any, probs: Any, losses: Any) -> Any:
    m, log_sum = _log_normaliser(xp, logits, probs)
    k = logits.shape[1]
    inside = (labels >= 0) & (labels < k)
    picked = xp.take_along_axis(logits, xp.where(inside, labels, 0)[:, None], axis=1)
    # (m - picked) is exact when the label's logit is near the maximum.
    xp.subtract(m[:, 0], picked[:, 0], out=losses)
    losses += log_sum[:, 0]
    losses[labels >= k] = xp.nan
    losses[labels < 0] = 0.0  # ignored rows
    _log_softmax(xp, logits, m, log_sum, probs)
    xp.exp(probs, out=probs)
    return losses


def _softmax_backward_cpu(kernel: Any, generic: Any) -> Any:
    def backward(probs, target, scale, out):  # type: ignore[no-untyped-def]
        if target.shape != probs.shape:
            return generic(probs, target, scale, out)
        kcpu.pick(kernel, out.size, "cheap")(
            probs.reshape(-1), target.reshape(-1), out.reshape(-1), float(scale)
        )
        return out

    return backward


def _softmax_backward_cuda(kernels: Any, generic: Any) -> Any:
    kernel = kernels()

    def backward(probs, target, scale, out):  # type: ignore[no-untyped-def]
        kernel(probs, target, scale, out)
        return out

    return backward


@declare(
    "softmax_cross_entropy_backward",
    "dlogits = (probs - target) * scale",
    cpu=Numba(_softmax_backward_cpu),
    cuda=Cuda(_softmax_backward_cuda),
)
def softmax_cross_entropy_backward(xp: Any, probs: Any, target: Any, scale: float, out: Any) -> Any:
    xp.subtract(probs, target, out=out)
    out *= scale
    return out


def _softmax_index_backward_cpu(kernel: Any, generic: Any) -> Any:
    def index_backward(probs, labels, scale, out):  # type: ignore[no-untyped-def]
        if probs.ndim != 2:
            return generic(probs, labels, scale, out)
        kcpu.pick(kernel, out.size, "cheap")(
            probs.reshape(-1), labels, out.reshape(-1), float(scale), probs.shape[1]
        )
        return out

    return index_backward


def _softmax_index_backward_cuda(kernels: Any, generic: Any) -> Any:
    kernel = kernels()

    def index_backward(probs, labels, scale, out):  # type: ignore[no-untyped-def]
        kernel(probs, labels, probs.shape[1], scale, out)
        return out

    return index_backward


@declare(
    "softmax_cross_entropy_index_backward",
    "dlogits = (probs - onehot(labels)) * scale",
    cpu=Numba(_softmax_index_backward_cpu),
    cuda=Cuda(_softmax_index_backward_cuda),
)
def softmax_cross_entropy_index_backward(xp: Any, probs: Any, labels: Any, scale: float, out: Any) -> Any:
    xp.multiply(probs, scale, out=out)
    inside = (labels >= 0) & (labels < out.shape[1])
    out[xp.arange(out.shape[0])[inside], labels[inside]] -= scale
    out[labels < 0] = 0.0  # ignored rows
    return out


def _bce_logits_cpu(kernel: Any, generic: Any) -> Any:
    def bce_logits_forward(z, target, losses):  # type: ignore[no-untyped-def]
        if target.shape != z.shape:
            return generic(z, target, losses)
        kcpu.pick(kernel, z.size, "transcendental")(z.reshape(-1), target.reshape(-1), losses.reshape(-1))
        return losses

    return bce_logits_forward


def _bce_logits_cuda(kernels: Any, generic: Any) -> Any:
    kernel = kernels()

    def bce_logits_forward(z, target, losses):  # type: ignore[no-untyped-def]
        kernel(z, target, losses)
        return losses

    return bce_logits_forward


@declare(
    "binary_cross_entropy_logits_forward",
    "losses = max(z, 0) - z * t + log1p(exp(-|z|))",
    cpu=Numba(_bce_logits_cpu),
    cuda=Cuda(_bce_logits_cuda),
)
def binary_cross_entropy_logits_forward(xp: Any, z: Any, target: Any, losses: Any) -> Any:
    xp.abs(z, out=losses)
    xp.negative(losses, out=losses)
    xp.exp(losses, out=losses)
    xp.log1p(losses, out=losses)
    losses += xp.maximum(z, 0)
    losses -= z * target
    return losses


def _bce_logits_backward_cpu(kernel: Any, generic: Any) -> Any:
    def bce_logits_backward(z, target, scale, out):  # type: ignore[no-untyped-def]
        if target.shape != z.shape:
            return generic(z, target, scale, out)
        kcpu.pick(kernel, z.size, "transcendental")(
            z.reshape(-1), target.reshape(-1), out.reshape(-1), float(scale)
        )
        return out

    return bce_logits_backward


def _bce_logits_backward_cuda(kernels: Any, generic: Any) -> Any:
    kernel = kernels()

    def bce_logits_backward(z, target, scale, out):  # type: ignore[no-untyped-def]
        kernel(z, target, scale, out)
        return out

    return bce_logits_backward


@declare(
    "binary_cross_entropy_logits_backward",
    "dz = (sigmoid(z) - t) * scale",
    cpu=Numba(_bce_logits_backward_cpu),
    cuda=Cuda(_bce_logits_backward_cuda),
)
def binary_cross_entropy_logits_backward(xp: Any, z: Any, target: Any, scale: float, out: Any) -> Any:
    # sigmoid(z) = exp(-log(1 + exp(-z))): exact in both tails, never overflows.
    xp.negative(z, out=out)
    xp.logaddexp(0.0, out, out=out)
    xp.negative(out, out=out)
    xp.exp(out, out=out)
    out -= target
    out *= scale
    return out


def _bce_backward_cpu(kernel: Any, generic: Any) -> Any:
    def bce_backward(p, target, scale, eps, out):  # type: ignore[no-untyped-def]
        if target.shape != p.shape:
            return generic(p, target, scale, eps, out)
        kcpu.pick(kernel, p.size, "cheap")(
            p.reshape(-1), target.reshape(-1), out.reshape(-1), float(scale), float(eps)
        )
        return out

    return bce_backward


def _bce_backward_cuda(kernels: Any, generic: Any) -> Any:
    kernel = kernels()

    def bce_backward(p, target, scale, eps, out):  # type: ignore[no-untyped-def]
        kernel(p, target, scale, eps, out)
        return out

    return bce_backward


@declare(
    "binary_cross_entropy_backward",
    "dp = scale * (p - t) / max(p * (1 - p), eps)",
    cpu=Numba(_bce_backward_cpu),
    cuda=Cuda(_bce_backward_cuda),
)
def binary_cross_entropy_backward(xp: Any, p: Any, target: Any, scale: float, eps: float, out: Any) -> Any:
    denominator = 1.0 - p
    denominator *= p
    xp.maximum(denominator, eps, out=denominator)
    xp.subtract(p, target, out=out)
    out /= denominator
    out *= scale
    return out
