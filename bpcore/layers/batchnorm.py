"""Batch normalisation over the channel axis 1 of a (N, C) or (N, C, ...) batch."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import checks
from ..backends import Backend, device_scope
from ..init import ones, zeros
from ..parameters import Parameter
from .base import Layer, Shape, shape_text


class BatchNorm(Layer):
    """``y = gamma * (x - mean) / sqrt(var + eps) + beta``, per feature, as PyTorch's BatchNorm1d.

    In training ``mean`` and ``var`` are the batch's (biased variance) and the
    running statistics move towards them:
    ``running = (1 - momentum) * running + momentum * batch``, with the
    unbiased batch variance for ``running_var``.  In evaluation the running
    statistics normalise.  Input ``(N, C)``, ``(N, C, L)`` or ``(N, C, H, W)``:
    the statistics are taken over every axis but the channel axis 1, as
    PyTorch's BatchNorm1d/BatchNorm2d do.  ``gamma`` starts at 1 and ``beta`` at 0; neither
    is weight-decayed.  The running statistics are buffers: saved with the
    model and moved by ``Network.to``.  Training needs more than one value per
    channel in the batch (PyTorch's rule): two samples of an (N, C) input, one
    sample of an (N, C, H, W) input with H * W >= 2.
    """

    needs_batch_statistics = True

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = checks.positive_int(num_features, "BatchNorm(num_features)")
        self.momentum = checks.real(momentum, "BatchNorm(momentum)", minimum=0.0, maximum=1.0)
        self.eps = checks.positive(eps, "BatchNorm(eps)")
        f = self.num_features
        self.gamma = Parameter("gamma", (f,), ones, fan_in=f, fan_out=f, decay=False)
        self.beta = Parameter("beta", (f,), zeros, fan_in=f, fan_out=f, decay=False)
        self.running_mean: Any = None
        self.running_var: Any = None
        self._xhat: Any = None
        self._inv_std: Any = None
        self._trained = False
        self._spatial_shape: tuple[int, ...] = ()

    @property
    def input_shape(self) -> Shape:
        return (self.num_features,)

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) not in (1, 2, 3) or input_shape[0] not in (None, self.num_features):
            given = input_shape[0] if input_shape else "none"
            raise ValueError(
                f"{self!r}: expected {self.num_features} input features (channels on axis 1) in an input of "
                f"shape (N, C), (N, C, L) or (N, C, H, W), but the input it receives gives {given} "
                f"(shape {shape_text(input_shape)})"
            )
        return tuple(input_shape)

    def batch_statistics_count(self, input_shape: Shape) -> int | None:
        return math.prod(size or 1 for size in input_shape[1:])

    def config(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "momentum": self.momentum, "eps": self.eps}

    def build(self, input_shape: Shape | None, dtype: np.dtype, backend: Backend) -> Shape | None:
        out = super().build(input_shape, dtype, backend)
        self.running_mean = backend.zeros((self.num_features,), self.dtype)
        self.running_var = backend.asarray(np.ones(self.num_features), dtype=self.dtype)
        self._xhat = None
        return out

    def parameters(self) -> list[Parameter]:
        return [self.gamma, self.beta]

    def buffers(self) -> dict[str, Any]:
        if self.running_mean is None:
            return {}
        return {"running_mean": self.running_mean, "running_var": self.running_var}

    def set_buffer(self, name: str, value: Any) -> None:
        if name not in ("running_mean", "running_var"):
            raise KeyError(f"BatchNorm has no buffer {name!r}; it has running_mean and running_var")
        with device_scope(self.backend):  # the copy is made on the layer's GPU
            array = self.backend.asarray(value, dtype=self.dtype).copy()
        if array.shape != (self.num_features,):
            raise ValueError(
                f"{self!r}: buffer {name} must have shape ({self.num_features},), got {tuple(array.shape)}"
            )
        setattr(self, name, array)

    def to(self, backend: Backend) -> None:
        super().to(backend)
        self._xhat = None

    def _channels_last(self, x: Any) -> Any:
        """(N, C, ...) as a contiguous (N * ..., C) table, the layout of the 2-D kernels."""
        axes = (0, *range(2, x.ndim), 1)
        return self.backend.xp.ascontiguousarray(x.transpose(axes)).reshape(-1, self.num_features)

    def _channels_first(self, rows: Any, like: tuple[int, ...]) -> Any:
        """The inverse of :meth:`_channels_last` for an input of shape ``like``."""
        lead = (like[0], *like[2:])
        axes = (0, len(like) - 1, *range(1, len(like) - 1))
        return self.backend.xp.ascontiguousarray(rows.reshape(*lead, like[1]).transpose(axes))

    def forward(self, x: Any, training: bool) -> Any:
        if x.ndim > 2:
            self._spatial_shape = tuple(x.shape)
            return self._channels_first(self.forward(self._channels_last(x), training), self._spatial_shape)
        shape = x.shape
        out = self.workspace("out", shape)
        xhat = self.workspace("xhat", shape)
        inv_std = self.workspace("inv_std", (self.num_features,))
        if training:
            if shape[0] < 2:
                raise ValueError(
                    f"{self!r}: expected more than 1 value per channel in training (batch statistics need "
                    f"at least 2), got {shape[0]} (the input as rows of channels: shape {tuple(shape)})"
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
        if grad_out.ndim > 2:
            rows = self.backward(self._channels_last(grad_out), accumulate=accumulate)
            return self._channels_first(rows, self._spatial_shape)
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
