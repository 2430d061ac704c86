"""The fully connected layer, ``y = x @ W + b``, optionally fused with its activation."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import checks
from ..backends import Backend
from ..backends.blas_threads import small_product
from ..backends.ops.dense import SMALL_INNER
from ..init import Initializer, get_initializer, name_of
from ..parameters import Parameter
from .activations import Activation
from .base import Layer, Shape, shape_text

# On the CPU a product of at most this many multiply-adds (``M * N * K``) that OpenBLAS would split
# over its threads runs on one (:func:`bpcore.backends.blas_threads.small_product`): from about
# 2.6e5 OpenBLAS splits it, and at this size its second thread, spinning between the calls, cost far
# more than it brought whenever another process ran.  The digits-shaped CNN's Dense layer (512 -> 10,
# 3.3e5 and 6.6e5 at batch 64 and 128), its step with both cores busy, interleaved in one process:
# median 34.2 -> 10.0 ms at batch 128, 5.9 -> 3.8 ms at batch 64.  Of the benchmarked MLPs' products
# only the DQN's 64 x 128 x 128 lies in this range (exactly at its top); the others run on one thread
# by OpenBLAS's own rule, or are above 2e6.
SMALL_PRODUCT = 1 << 20


class Dense(Layer):
    """A fully connected layer with weights ``W`` of shape (in_features, out_features).

    It acts on the last axis of an input of any rank, as PyTorch's Linear:
    ``(N, in) -> (N, out)``, ``(N, T, in) -> (N, T, out)``.

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
        self.in_features = checks.positive_int(in_features, "Dense(in_features)")
        self.out_features = checks.positive_int(out_features, "Dense(out_features)")
        self.use_bias = checks.flag(bias, "Dense(bias)")
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
        # Whether forward takes the small_dense_forward path (None: decided at the next forward).
        self._small_inner: bool | None = None
        # Whether backward takes relu_bias_backward (None: decided at the next backward).
        self._relu_bias: bool | None = None
        self._input: Any = None
        self._lead: tuple[int, ...] = ()

    def config(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.use_bias,
            "init": name_of(self.init) or "custom",
            "bias_init": name_of(self.bias_init) or "custom",
        }

    @property
    def input_shape(self) -> Shape:
        return (self.in_features,)

    def output_shape(self, input_shape: Shape) -> Shape:
        if not input_shape or input_shape[-1] not in (None, self.in_features):
            given = input_shape[-1] if input_shape else "none"
            raise ValueError(
                f"{self!r}: expected {self.in_features} input features on the last axis, but the input it "
                f"receives gives {given} (shape {shape_text(input_shape)})"
            )
        return (*input_shape[:-1], self.out_features)

    def build(self, input_shape: Shape | None, dtype: np.dtype, backend: Backend) -> Shape | None:
        out = super().build(input_shape, dtype, backend)
        self._input = None
        self._small_inner = None
        self._relu_bias = None
        # An unknown input still gives a known last axis, which is what a 2-D table needs.
        return (self.out_features,) if out is None else out

    def to(self, backend: Backend) -> None:
        super().to(backend)
        self._input = None
        self._small_inner = None
        self._relu_bias = None

    def use_kernels(self, backend: Backend) -> None:
        super().use_kernels(backend)
        self._small_inner = None
        self._relu_bias = None

    def parameters(self) -> list[Parameter]:
        return [self.weight] if self.bias is None else [self.weight, self.bias]

    def absorb(self, following: Layer | None) -> bool:
        """Fuse a following elementwise activation (bias add and activation in one pass)."""
        activation = following if isinstance(following, Activation) and self.bias is not None else None
        self.fuse(activation)
        return activation is not None

    def fuse(self, activation: Activation | None) -> None:
        """Run ``activation`` inside this layer (set by the network's planner)."""
        if activation is not None and self.bias is None:
            activation = None
        self.activation = activation
        self._small_inner = None
        self._relu_bias = None

    def _choose_path(self) -> bool:
        """Whether forward takes the one-pass path of small inner sizes (see backends/ops/dense.py).

        Decided at the first forward (so that building a network compiles and
        imports nothing), again after a fusion or a change of backend or kernels:
        where the compiled CPU kernel runs, for a layer with a bias and no
        activation or a ReLU.
        """
        self._small_inner = (
            self.in_features in SMALL_INNER
            and self.bias is not None
            and (self.activation is None or self.activation.kind == "relu")
            and self.backend.resolve("small_dense_forward")[1] == "numba"
        )
        return self._small_inner

    def _choose_relu_bias(self) -> bool:
        """Whether backward runs a fused ReLU's derivative and the bias gradient as one compiled pass.

        Where ``relu_bias_backward`` has its CPU kernel (on a GPU the two
        operations stay separate); decided when :meth:`_choose_path` is.
        """
        self._relu_bias = (
            self.activation is not None
            and self.activation.kind == "relu"
            and self.backend.resolve("relu_bias_backward")[1] == "numba"
        )
        return self._relu_bias

    def forward(self, x: Any, training: bool) -> Any:
        if x.ndim != 2:
            return self._forward_rows(x, training)
        xp = self.backend.xp
        z = self.workspace("z", (x.shape[0], self.out_features))
        self._input = x
        small = self._small_inner
        if small is None:
            small = self._choose_path()
        if small:  # inner size 2-4: product, bias and ReLU in one compiled pass
            relu = self.activation is not None
            self.backend.ops.small_dense_forward(x, self.weight.data, self.bias.data, z, relu)  # type: ignore[union-attr]
            if relu:
                self.activation.record_output(z)  # type: ignore[union-attr]
            return z
        if self.in_features == 1:  # an outer product: BLAS is slow at inner size 1
            self.backend.ops.outer_product(x[:, 0], self.weight.data[0], z)
        else:
            with small_product(xp, z.size * self.in_features, SMALL_PRODUCT):
                xp.matmul(x, self.weight.data, out=z)
        if self.activation is not None:
            return self.activation.bias_forward(z, self.bias.data)  # type: ignore[union-attr]
        if self.bias is not None:
            z += self.bias.data
        return z

    def _forward_rows(self, x: Any, training: bool) -> Any:
        """Any rank: the 2-D pass over the rows of ``x`` viewed as (-1, in_features)."""
        lead = x.shape[:-1]
        out = self.forward(self.backend.xp.ascontiguousarray(x).reshape(-1, self.in_features), training)
        self._lead = lead
        return out.reshape(*lead, self.out_features)

    def backward(self, grad_out: Any, *, accumulate: bool = True, need_input_grad: bool = True) -> Any:
        if self._input is None:
            raise self._not_run()
        if grad_out.ndim != 2:
            rows = self.backend.xp.ascontiguousarray(grad_out).reshape(-1, self.out_features)
            grad_in = self.backward(rows, accumulate=accumulate, need_input_grad=need_input_grad)
            return None if grad_in is None else grad_in.reshape(*self._lead, self.in_features)
        xp = self.backend.xp
        g = grad_out
        weight, bias = self.weight, self.bias
        if bias is not None and not bias.requires_grad:
            bias = None  # frozen: no gradient written
        bias_done = False
        if self.activation is not None:
            if not grad_out.flags.c_contiguous:  # the fused kernel walks flat memory
                grad_out = xp.ascontiguousarray(grad_out)
            fused = self._relu_bias
            if fused is None:
                fused = self._choose_relu_bias()
            if fused and bias is not None:  # the ReLU's backward and the bias gradient in one pass
                target = self.workspace("grad_bias", bias.shape) if accumulate else bias.grad
                g = self.activation.fused_bias_backward(grad_out, target)
                if accumulate:
                    bias.grad += target
                bias_done = True
            else:
                g = self.activation.fused_backward(grad_out)
        x = self._input
        threads = small_product(xp, x.size * self.out_features, SMALL_PRODUCT)
        if not weight.requires_grad:
            pass
        elif accumulate:
            with threads:
                weight.grad += xp.matmul(x.T, g, out=self.workspace("grad_weight", weight.shape))
        else:
            with threads:
                xp.matmul(x.T, g, out=weight.grad)
        # The bias gradient: column sums (compiled on the CPU, bit-identical to g.sum(axis=0)).
        if bias is None or bias_done:
            pass
        elif accumulate:
            bias.grad += self.backend.ops.column_sums(g, self.workspace("grad_bias", bias.shape))
        else:
            self.backend.ops.column_sums(g, bias.grad)
        if not need_input_grad:
            return None
        grad_in = self.workspace("grad_in", x.shape)
        if self.out_features == 1:  # an outer product (a critic's score): BLAS is slow at inner size 1
            return self.backend.ops.outer_product(g[:, 0], weight.data[:, 0], grad_in)
        with small_product(xp, x.size * self.out_features, SMALL_PRODUCT):
            return xp.matmul(g, weight.data.T, out=grad_in)
