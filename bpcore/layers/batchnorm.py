"""Batch normalisation over the features of a (samples, features) batch."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backends import Backend
from ..init import ones, zeros
from ..parameters import Parameter
from .base import Layer


def _positive_int(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and bool(value >= 1)


class BatchNorm(Layer):
    """``y = gamma * (x - mean) / sqrt(var + eps) + beta``, per feature, as PyTorch's BatchNorm1d.

    In training ``mean`` and ``var`` are the batch's (biased variance) and the
    running statistics move towards them:
    ``running = (1 - momentum) * running + momentum * batch``, with the
    unbiased batch variance for ``running_var``.  In evaluation the running
    statistics normalise.  ``gamma`` starts at 1 and ``beta`` at 0; neither
    is weight-decayed.  The running statistics are buffers: saved with the
    model and moved by ``Network.to``.
    """

    needs_batch_statistics = True

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        if not _positive_int(num_features):
            raise ValueError(f"BatchNorm(num_features): expected a positive integer, got {num_features!r}")
        for argument, value in (("momentum", momentum), ("eps", eps)):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise TypeError(
                    f"BatchNorm({argument}): expected a number, got {type(value).__name__} {value!r}"
                )
        if not (math.isfinite(momentum) and 0.0 <= momentum <= 1.0):
            raise ValueError(f"BatchNorm(momentum): expected a number in [0, 1], got {momentum!r}")
        if not (math.isfinite(eps) and eps > 0.0):
            raise ValueError(f"BatchNorm(eps): expected a positive number, got {eps!r}")
        self.num_features = int(num_features)
        self.momentum = float(momentum)
        self.eps = float(eps)
        f = self.num_features
        self.gamma = Parameter("gamma", (f,), ones, fan_in=f, fan_out=f, decay=False)
        self.beta = Parameter("beta", (f,), zeros, fan_in=f, fan_out=f, decay=False)
        self.running_mean: Any = None
        self.running_var: Any = None
        self._xhat: Any = None
        self._inv_std: Any = None
        self._trained = False

    @property
    def input_width(self) -> int:  # type: ignore[override]
        return self.num_features

    def config(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "momentum": self.momentum, "eps": self.eps}

    def build(self, in_features: int | None, dtype: np.dtype, backend: Backend) -> int | None:
        if in_features is not None and in_features != self.num_features:
            raise ValueError(
                f"{self!r}: expected {self.num_features} input features, "
                f"but the previous layer gives {in_features}"
            )
        super().build(in_features, dtype, backend)
        self.running_mean = backend.zeros((self.num_features,), self.dtype)
        self.running_var = backend.asarray(np.ones(self.num_features), dtype=self.dtype)
        self._xhat = None
        return self.num_features

    def parameters(self) -> list[Parameter]:
        return [self.gamma, self.beta]

    def buffers(self) -> dict[str, Any]:
        if self.running_mean is None:
            return {}
        return {"running_mean": self.running_mean, "running_var": self.running_var}

    def set_buffer(self, name: str, value: Any) -> None:
        if name not in ("running_mean", "running_var"):
            raise KeyError(f"BatchNorm has no buffer {name!r}; it has running_mean and running_var")
        array = self.backend.asarray(value, dtype=self.dtype).copy()
        if array.shape != (self.num_features,):
            raise ValueError(
                f"{self!r}: buffer {name} must have shape ({self.num_features},), got {tuple(array.shape)}"
            )
        setattr(self, name, array)

    def to(self, backend: Backend) -> None:
        super().to(backend)
        self._xhat = None

    def forward(self, x: Any, training: bool) -> Any:
        shape = x.shape
        out = self.workspace("out", shape)
        xhat = self.workspace("xhat", shape)
        inv_std = self.workspace("inv_std", (self.num_features,))
        if training:
            if shape[0] < 2:
                raise ValueError(
                    f"{self!r}: expected more than 1 sample per batch in training (batch statistics need "
                    f"at least 2), got input shape {tuple(shape)}"
                )
            self.backend.ops.batchnorm_forward_train(
                x, self.gamma.data, self.beta.data, self.running_mean, self.running_var,
                self.momentum, self.eps, out, xhat, inv_std,
            )
        else:
            xp = self.backend.xp
            xp.add(self.running_var, self.eps, out=inv_std)
            xp.sqrt(inv_std, out=inv_std)
            xp.reciprocal(inv_std, out=inv_std)
            xp.subtract(x, self.running_mean, out=xhat)
            xhat *= inv_std
            xp.multiply(xhat, self.gamma.data, out=out)
            out += self.beta.data
        self._xhat, self._inv_std, self._trained = xhat, inv_std, training
        return out

    def backward(self, grad_out: Any, *, accumulate: bool = True, need_input_grad: bool = True) -> Any:
        if self._xhat is None:
            raise self._not_run()
        grad_in = self.workspace("grad_in", grad_out.shape)
        gamma, beta = self.gamma, self.beta
        if self._trained:
            # A frozen gamma or beta gets its gradient in a scratch array, not in the store.
            grad_gamma, grad_beta = gamma.grad, beta.grad
            if not gamma.requires_grad:
                grad_gamma = self.workspace("frozen_gamma", gamma.shape)
                grad_gamma.fill(0)
            if not beta.requires_grad:
                grad_beta = self.workspace("frozen_beta", beta.shape)
                grad_beta.fill(0)
            return self.backend.ops.batchnorm_backward(
                grad_out, self._xhat, gamma.data, self._inv_std, grad_gamma, grad_beta, grad_in, accumulate
            )
        # Evaluation: the statistics are constants, so the layer is a per-feature affine map.
        xp = self.backend.xp
        xp.multiply(grad_out, self._xhat, out=grad_in)
        if not gamma.requires_grad:
            pass
        elif accumulate:
            gamma.grad += grad_in.sum(axis=0)
        else:
            grad_in.sum(axis=0, out=gamma.grad)
        if not beta.requires_grad:
            pass
        elif accumulate:
            beta.grad += grad_out.sum(axis=0)
        else:
            grad_out.sum(axis=0, out=beta.grad)
        xp.multiply(grad_out, gamma.data * self._inv_std, out=grad_in)
        return grad_in
