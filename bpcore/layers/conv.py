"""2-D convolution (cross-correlation, as PyTorch's Conv2d) by one matrix product per group.

The forward gathers every window into the transposed im2col matrix ``cols``
(``(C * kh * kw, N * OH * OW)``: one pass, the padding folded into the
gather, see :mod:`bpcore.backends.ops.conv`), multiplies the weights by it
(``z = W @ cols``, one GEMM per group, giving channel-major ``(O, N * OH * OW)``),
then swaps ``z`` into ``(N, O, OH, OW)`` images while adding the bias (one
pass), and applies a fused activation in place.  The backward applies the
activation's derivative, swaps the gradient back while summing the bias
gradient (one pass), multiplies back (two GEMMs per group) and scatter-adds
the window gradients into the input (``col2im``: one pass, no temporaries).
Every buffer is a workspace of the layer, reused from step to step.

Channel-major ``z`` rather than pixel-major ``(N * OH * OW, O)``: the swap to
the public ``(N, C, H, W)`` layout then moves whole image rows instead of
transposing every pixel, and the gather reads and writes image rows in order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backends import Backend
from ..init import Initializer, get_initializer, name_of
from ..parameters import Parameter
from .activations import Activation, ReLU
from .base import Layer, Shape
from .spatial import padding_config, padding_of, positive_pair, window_output_shape


def weight_grad_by_columns(out_channels: int, width: int) -> bool:
    """Whether a group's weight gradient is computed as ``(cols @ g.T).T`` rather than ``g @ cols.T``.

    ``width`` is the group's im2col rows (input channels times kernel taps),
    ``out_channels`` its output channels.  Both products are the same sum over
    the same pixels; the BLAS is faster at the first where the window is the
    wider side.  The benchmark's matrix-product floor asks the same question.
    """
    return width > out_channels


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
        self._out: Any = None
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
        self._cols = self._out = None
        return out

    def to(self, backend: Backend) -> None:
        super().to(backend)
        self._cols = self._out = None

    def parameters(self) -> list[Parameter]:
        return [self.weight] if self.bias is None else [self.weight, self.bias]

    def absorb(self, following: Layer | None) -> bool:
        """Fuse a following elementwise activation into the bias add over the channels."""
        activation = following if isinstance(following, Activation) and self.bias is not None else None
        self.activation = activation
        return activation is not None

    # --- computation --------------------------------------------------------
    def _groups(self) -> list[tuple[slice, slice]]:
        """Per group: its slice of output channels and of im2col rows."""
        per_out = self.out_channels // self.groups
        per_col = self.in_channels // self.groups * self.kernel_size[0] * self.kernel_size[1]
        return [
            (slice(g * per_out, (g + 1) * per_out), slice(g * per_col, (g + 1) * per_col))
            for g in range(self.groups)
        ]

    def _window(self, oh: int, ow: int) -> tuple[int, ...]:
        """The window arguments of the im2col/col2im operations."""
        top, left = self.padding[0][0], self.padding[1][0]
        return (*self.kernel_size, *self.stride, *self.dilation, top, left, oh, ow)

    def forward(self, x: Any, training: bool) -> Any:
        xp, ops = self.backend.xp, self.backend.ops
        n, _, h, w = x.shape
        _, oh, ow = self.output_shape((self.in_channels, h, w))
        assert oh is not None and ow is not None
        x = xp.ascontiguousarray(x)
        window = self._window(oh, ow)
        cols = self.workspace("cols", (self.weight.size // self.out_channels * self.groups, n * oh * ow))
        ops.im2col(x, *window, cols)
        z = self.workspace("z", (self.out_channels, n * oh * ow))
        weight = self.weight.data.reshape(self.out_channels, -1)
        if self.groups == 1:
            xp.matmul(weight, cols, out=z)
        else:
            for out_slice, col_slice in self._groups():
                xp.matmul(weight[out_slice], cols[col_slice], out=z[out_slice])
        out = self.workspace("out", (n, self.out_channels, oh, ow))
        relu = isinstance(self.activation, ReLU)
        ops.channels_to_images(z, self._bias_data(), out, relu)
        self._cols, self._geometry, self._out = cols, (tuple(x.shape), window), out
        if self.activation is not None and not relu:
            out = self.activation.forward_in_place(out)
        return out

    def _bias_data(self) -> Any:
        """The bias, or zeros for a convolution without one."""
        if self.bias is not None:
            return self.bias.data
        zeros = self._workspace.get("no_bias")
        if zeros is None:
            zeros = self._workspace["no_bias"] = self.backend.zeros((self.out_channels,), self.dtype)
        return zeros

    def backward(self, grad_out: Any, *, accumulate: bool = True, need_input_grad: bool = True) -> Any:
        if self._cols is None:
            raise self._not_run()
        xp, ops = self.backend.xp, self.backend.ops
        in_shape, window = self._geometry
        relu = isinstance(self.activation, ReLU)
        if self.activation is not None and not relu:
            grad_out = self.activation.backward(grad_out)
        grad_out = xp.ascontiguousarray(grad_out)  # the fused kernels read flat memory (no copy if it is)
        cols, weight, bias = self._cols, self.weight, self.bias
        g = self.workspace("grad_rows", (self.out_channels, cols.shape[1]))
        bias_grad = bias.grad if bias is not None else self._bias_data()
        ops.images_to_channels(grad_out, self._out, g, bias_grad, relu, bias is not None, accumulate)
        w2 = weight.data.reshape(self.out_channels, -1)
        gw2 = weight.grad.reshape(self.out_channels, -1)
        groups = self._groups()
        per_out, width = self.out_channels // self.groups, gw2.shape[1]
        if weight_grad_by_columns(per_out, width):
            # cols @ g.T, then its small transpose: faster than g @ cols.T where the window is
            # wider than the output channels (OpenBLAS, measured 1.3-1.6x at the benchmark CNNs' shapes)
            product = self.workspace("grad_weight_t", (self.groups, width, per_out))
            for (out_slice, col_slice), part in zip(groups, product, strict=True):
                xp.matmul(cols[col_slice], g[out_slice].T, out=part)
                if accumulate:
                    gw2[out_slice] += part.T
                else:
                    gw2[out_slice] = part.T
        else:
            product = self.workspace("grad_weight", gw2.shape) if accumulate else gw2
            for out_slice, col_slice in groups:
                xp.matmul(g[out_slice], cols[col_slice].T, out=product[out_slice])
            if accumulate:
                gw2 += product
        if not need_input_grad:
            return None
        dcols = self.workspace("grad_cols", cols.shape)
        if self.groups == 1:
            xp.matmul(w2.T, g, out=dcols)
        else:
            for out_slice, col_slice in groups:
                xp.matmul(w2[out_slice].T, g[out_slice], out=dcols[col_slice])
        grad_in = self.workspace("grad_in", in_shape)
        return ops.col2im(dcols, *window, grad_in)

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
