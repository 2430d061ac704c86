"""The fully connected layer, ``y = x @ W + b``, optionally fused with its activation."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backends import Backend
from ..init import Initializer, get_initializer, name_of
from ..parameters import Parameter
from .activations import Activation
from .base import Layer


class Dense(Layer):
    """A fully connected layer with weights ``W`` of shape (in_features, out_features).

    When a network places an elementwise activation right after it, the
    network fuses the two (:meth:`fuse`): the bias add and the activation run
    as one pass after the matrix product, and the activation's derivative as
    one pass before the backward products.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        init: str | Initializer = "xavier_uniform",
        bias_init: str | Initializer = "zeros",
    ) -> None:
        super().__init__()
        for argument, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Dense({argument}): expected a positive integer, got {value!r}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.use_bias = bool(bias)
        self.init = get_initializer(init)
        self.bias_init = get_initializer(bias_init, argument="bias_init")
        self.weight = Parameter(
            "weight", (self.in_features, self.out_features), self.init,
            fan_in=self.in_features, fan_out=self.out_features,
        )
        self.bias = (
            Parameter("bias", (self.out_features,), self.bias_init,
                      fan_in=self.in_features, fan_out=self.out_features, decay=False)
            if self.use_bias else None
        )
        self.activation: Activation | None = None
        self._input: Any = None

    def config(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.use_bias,
            "init": name_of(self.init) or "custom",
            "bias_init": name_of(self.bias_init) or "custom",
        }

    @property
    def input_width(self) -> int:  # type: ignore[override]
        return self.in_features

    def build(self, in_features: int | None, dtype: np.dtype, backend: Backend) -> int | None:
        if in_features is not None and in_features != self.in_features:
            raise ValueError(
                f"{self!r}: expected {self.in_features} input features, "
                f"but the previous layer gives {in_features}"
            )
        super().build(in_features, dtype, backend)
        self._input = None
        return self.out_features

    def to(self, backend: Backend) -> None:
        super().to(backend)
        self._input = None

    def parameters(self) -> list[Parameter]:
        return [self.weight] if self.bias is None else [self.weight, self.bias]

    def fuse(self, activation: Activation | None) -> None:
        """Run ``activation`` inside this layer (set by the network's planner)."""
        if activation is not None and self.bias is None:
            activation = None
        self.activation = activation

    def forward(self, x: Any, training: bool) -> Any:
        xp = self.backend.xp
        z = self.workspace("z", (x.shape[0], self.out_features))
        xp.matmul(x, self.weight.data, out=z)
        self._input = x
        if self.activation is not None:
            return self.activation.bias_forward(z, self.bias.data)  # type: ignore[union-attr]
        if self.bias is not None:
            z += self.bias.data
        return z

    def backward(self, grad_out: Any, *, accumulate: bool = True, need_input_grad: bool = True) -> Any:
        if self._input is None:
            raise self._not_run()
        xp = self.backend.xp
        g = grad_out
        if self.activation is not None:
            g = self.activation.backward(grad_out)
        x = self._input
        weight, bias = self.weight, self.bias
        if bias is not None and not bias.requires_grad:
            bias = None  # frozen: no gradient written
        # ndarray.sum(out=) rather than xp.sum: same result, a third of the call overhead.
        if not weight.requires_grad:
            pass
        elif accumulate:
            weight.grad += xp.matmul(x.T, g, out=self.workspace("grad_weight", weight.shape))
        else:
            xp.matmul(x.T, g, out=weight.grad)
        if bias is None:
            pass
        elif accumulate:
            bias.grad += g.sum(axis=0, out=self.workspace("grad_bias", bias.shape))
        else:
            g.sum(axis=0, out=bias.grad)
        if not need_input_grad:
            return None
        grad_in = self.workspace("grad_in", x.shape)
        return xp.matmul(g, weight.data.T, out=grad_in)
