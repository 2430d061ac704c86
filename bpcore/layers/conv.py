"""2-D convolution (cross-correlation, as PyTorch's Conv2d) by one matrix product per group.

The forward gathers every window of the padded image into a matrix
(``im2col``: one strided copy, rows = output pixels, columns = the
``C/groups * kh * kw`` inputs of a window), multiplies it by the weights (one
GEMM per group), then adds the bias and applies a fused activation over the
channels of that (pixels, channels) matrix with the same kernels as Dense.
The backward multiplies back (two GEMMs per group) and scatter-adds the
window gradients into the input (``col2im``: one strided add per kernel
position, never a loop over samples).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backends import Backend
from ..init import Initializer, get_initializer, name_of
from ..parameters import Parameter
from .activations import Activation
from .base import Layer, Shape
from .spatial import (
    padded,
    padding_config,
    padding_of,
    patches,
    positive_pair,
    unpad,
    window_output_shape,
    window_slices,
)


class Conv2D(Layer):
    """``y[n, o] = b[o] + sum_c,i,j W[o, c, i, j] * x[n, c, s*h + d*i - p, s*w + d*j - p]``.

    Images ``(N, C, H, W)``.  ``weight`` has shape ``(out_channels,
    in_channels // groups, kh, kw)`` and ``bias`` ``(out_channels,)``, the
    layout of PyTorch's Conv2d, so weights move between the two by a copy.
    ``kernel_size``, ``stride``, ``padding`` and ``dilation`` are an int or a
    pair; ``padding`` may also be ``"valid"`` (none) or ``"same"`` (stride 1).
    An elementwise activation right after it is fused, as for Dense.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        *,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        init: str | Initializer = "he_uniform",
        bias_init: str | Initializer = "zeros",
    ) -> None:
        super().__init__()
        for argument, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("groups", groups),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Conv2D({argument}): expected a positive integer, got {value!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"Conv2D(groups): groups={groups} must divide in_channels={in_channels} and "
                f"out_channels={out_channels}"
            )
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size = positive_pair("Conv2D", "kernel_size", kernel_size)
        self.stride = positive_pair("Conv2D", "stride", stride)
        self.dilation = positive_pair("Conv2D", "dilation", dilation)
        self.padding = padding_of("Conv2D", padding, self.kernel_size, self.dilation, self.stride)
        self._padding_given = padding
        self.use_bias = bool(bias)
        self.init = get_initializer(init)
        self.bias_init = get_initializer(bias_init, argument="bias_init")
        kh, kw = self.kernel_size
        fan_in = self.in_channels // self.groups * kh * kw
        fan_out = self.out_channels // self.groups * kh * kw
        self.weight = Parameter(
            "weight",
            (self.out_channels, self.in_channels // self.groups, kh, kw),
            self.init,
            fan_in=fan_in,
            fan_out=fan_out,
        )
        self.bias = (
            Parameter(
                "bias", (self.out_channels,), self.bias_init, fan_in=fan_in, fan_out=fan_out, decay=False
            )
            if self.use_bias
            else None
        )
        self.activation: Activation | None = None
        self._cols: Any = None
        self._geometry: tuple[Any, ...] = ()

    def config(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": padding_config(self.padding, self._padding_given),
            "dilation": list(self.dilation),
            "groups": self.groups,
            "bias": self.use_bias,
            "init": name_of(self.init) or "custom",
            "bias_init": name_of(self.bias_init) or "custom",
        }

    @property
    def input_shape(self) -> Shape:
        return (self.in_channels, None, None)

    def output_shape(self, input_shape: Shape) -> Shape:
        return window_output_shape(
            self,
            input_shape,
            self.in_channels,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.out_channels,
        )

    def build(self, input_shape: Shape | None, dtype: np.dtype, backend: Backend) -> Shape | None:
        out = super().build(input_shape if input_shape is not None else self.input_shape, dtype, backend)
        self._cols = None
        return out

    def to(self, backend: Backend) -> None:
        super().to(backend)
        self._cols = None

    def parameters(self) -> list[Parameter]:
        return [self.weight] if self.bias is None else [self.weight, self.bias]

    def absorb(self, following: Layer | None) -> bool:
        """Fuse a following elementwise activation into the bias add over the channels."""
        activation = following if isinstance(following, Activation) and self.bias is not None else None
        self.activation = activation
        return activation is not None

    # --- computation --------------------------------------------------------
    def _groups(self) -> list[tuple[slice, slice]]:
        """Per group: its slice of output channels and of im2col columns."""
        per_out = self.out_channels // self.groups
        per_col = self.in_channels // self.groups * self.kernel_size[0] * self.kernel_size[1]
        return [
            (slice(g * per_out, (g + 1) * per_out), slice(g * per_col, (g + 1) * per_col))
            for g in range(self.groups)
        ]

    def forward(self, x: Any, training: bool) -> Any:
        xp = self.backend.xp
        n, _, h, w = x.shape
        _, oh, ow = self.output_shape((self.in_channels, h, w))
        assert oh is not None and ow is not None
        image = padded(self, x, self.padding, 0.0)
        rows, width = n * oh * ow, self.weight.size // self.out_channels * self.groups
        cols = self.workspace("cols", (n, oh, ow, self.in_channels, *self.kernel_size))
        xp.copyto(cols, patches(xp, image, self.kernel_size, self.stride, self.dilation, (oh, ow)))
        cols2 = cols.reshape(rows, width)
        z = self.workspace("z", (rows, self.out_channels))
        weight = self.weight.data.reshape(self.out_channels, -1)
        if self.groups == 1:
            xp.matmul(cols2, weight.T, out=z)
        else:
            for out_slice, col_slice in self._groups():
                z[:, out_slice] = cols2[:, col_slice] @ weight[out_slice].T
        if self.activation is not None:
            z = self.activation.bias_forward(z, self.bias.data)  # type: ignore[union-attr]
        elif self.bias is not None:
            z += self.bias.data
        self._cols, self._geometry = cols2, (tuple(x.shape), tuple(image.shape), oh, ow)
        out = self.workspace("out", (n, self.out_channels, oh, ow))
        out[...] = z.reshape(n, oh, ow, self.out_channels).transpose(0, 3, 1, 2)
        return out

    def backward(self, grad_out: Any, *, accumulate: bool = True, need_input_grad: bool = True) -> Any:
        if self._cols is None:
            raise self._not_run()
        xp = self.backend.xp
        in_shape, padded_shape, oh, ow = self._geometry
        n = in_shape[0]
        g = self.workspace("grad_rows", (n * oh * ow, self.out_channels))
        g.reshape(n, oh, ow, self.out_channels)[...] = grad_out.transpose(0, 2, 3, 1)
        if self.activation is not None:
            g = self.activation.backward(g)
        cols, weight, bias = self._cols, self.weight, self.bias
        w2 = weight.data.reshape(self.out_channels, -1)
        gw2 = weight.grad.reshape(self.out_channels, -1)
        groups = self._groups()
        if bias is not None:
            if accumulate:
                bias.grad += g.sum(axis=0)
            else:
                g.sum(axis=0, out=bias.grad)
        for out_slice, col_slice in groups:
            product = g[:, out_slice].T @ cols[:, col_slice]
            if accumulate:
                gw2[out_slice] += product
            else:
                gw2[out_slice] = product
        if not need_input_grad:
            return None
        dcols = self.workspace("grad_cols", cols.shape)
        if self.groups == 1:
            xp.matmul(g, w2, out=dcols)
        else:
            for out_slice, col_slice in groups:
                dcols[:, col_slice] = g[:, out_slice] @ w2[out_slice]
        windows = dcols.reshape(n, oh, ow, self.in_channels, *self.kernel_size)
        grad_padded = self.workspace("grad_padded", padded_shape)
        grad_padded.fill(0.0)
        for i in range(self.kernel_size[0]):
            for j in range(self.kernel_size[1]):
                rows, columns = window_slices(i, j, self.stride, self.dilation, (oh, ow))
                grad_padded[:, :, rows, columns] += windows[:, :, :, :, i, j].transpose(0, 3, 1, 2)
        return unpad(self, grad_padded, self.padding, in_shape)

    def __repr__(self) -> str:
        """The channels and kernel, then only the arguments that differ from their defaults."""
        defaults = {
            "stride": [1, 1],
            "padding": [0, 0],
            "dilation": [1, 1],
            "groups": 1,
            "bias": True,
            "init": "he_uniform",
            "bias_init": "zeros",
        }
        config = self.config()
        extra = "".join(
            f", {key}={config[key]!r}" for key, default in defaults.items() if config[key] != default
        )
        return f"Conv2D({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}{extra})"
