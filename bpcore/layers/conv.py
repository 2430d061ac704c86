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
Every buffer is a workspace of the layer, reused from step to step.  On the
CPU the batch runs through these steps in parts of equal size (see
:data:`CHUNK_BYTES`): ``cols`` and ``z`` then hold one part, and the backward
gathers each part's ``cols`` again from the saved input.  A convolution whose
products are small (:data:`SMALL_PRODUCT`) runs them on one BLAS thread.

A ReLU followed by a 2x2 stride-2 max pooling is fused in as well
(:meth:`Conv2D.absorb_after`): the swap then writes the pooled images and
their argmax straight from ``z``, and the backward builds the product's
gradient straight from the pooled gradient, so the full-size activation and
its gradient (four times the pooled size) never go through memory.

Channel-major ``z`` rather than pixel-major ``(N * OH * OW, O)``: the swap to
the public ``(N, C, H, W)`` layout then moves whole image rows instead of
transposing every pixel, and the gather reads and writes image rows in order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backends import Backend
from ..backends.blas_threads import small_product
from ..backends.kernels.layout import unguarded
from ..init import Initializer, get_initializer, name_of
from ..parameters import Parameter
from .activations import Activation, ReLU
from .base import Layer, Shape
from .pooling import MaxPool2D
from .spatial import padding_config, padding_of, positive_pair, window_output_shape

# On the CPU a convolution runs over the batch in parts of as many samples as keep its largest
# per-part buffer (the im2col matrix or the product) near this size, so that each part's gather,
# products, channel swap and scatter reuse the cache instead of streaming every buffer through
# memory.  Measured on a 2-core Xeon (2 MiB L2 per core), LeNet step, one thread: batch 64 37 ms in
# one part, 34-36 ms in parts of 1-4 MiB; batch 128 82 -> 72-74 ms.  Two threads: batch 128
# 76 -> 56-61 ms, 4 MiB ahead of 1 and 2 MiB at both batch sizes (fewer, larger matrix products
# for the BLAS threads to share).  The backward gathers each part's im2col matrix again rather than
# keeping the whole batch's.
CHUNK_BYTES = 1 << 22

# On the CPU a convolution whose matrix products over the whole batch have at most this many
# multiply-adds each (``M * N * K``) runs them on one BLAS thread (:mod:`bpcore.backends.blas_threads`).
# OpenBLAS splits a product over its threads from about 2.6e5; at these sizes its threads, spinning
# between the calls, fought the rest of the step for the cores as soon as another process ran.
# Measured on a 2-core EPYC with both cores busy, the digits-shaped CNN's step (4.7e6 and 9.4e6 at
# batch 64 and 128), interleaved in one process: median 13.9 -> 4.4 ms at batch 64, 21.6 -> 16.5 ms
# at batch 128.  The bound lies below the LeNet-shaped CNN's smallest product (1.4e7, its first
# convolution at batch 64), whose threads were not measured here and are left as they were.
SMALL_PRODUCT = 10_000_000


def _leading(buffer: Any, columns: int) -> Any:
    """The first ``columns`` columns' worth of ``buffer``'s memory as a C-contiguous (rows, columns) array."""
    rows = buffer.shape[0]
    return buffer.reshape(-1)[: rows * columns].reshape(rows, columns)


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
        self.pool: MaxPool2D | None = None  # a 2x2 stride-2 max pooling after the ReLU, run inside
        self._pooled = False  # whether the last forward pooled inside (even output sizes)
        self._pool_index: Any = None
        self._cols: Any = None
        self._input: Any = None
        self._kernels: dict[str, Any] = {}
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
        self._cols = self._out = self._input = None
        self._kernels = {}
        return out

    def to(self, backend: Backend) -> None:
        super().to(backend)
        self._cols = self._out = self._input = None
        self._kernels = {}

    def use_kernels(self, backend: Backend) -> None:
        super().use_kernels(backend)
        self._kernels = {}  # the operations looked up on the previous backend

    def parameters(self) -> list[Parameter]:
        return [self.weight] if self.bias is None else [self.weight, self.bias]

    def absorb(self, following: Layer | None) -> bool:
        """Fuse a following elementwise activation into the bias add over the channels."""
        activation = following if isinstance(following, Activation) and self.bias is not None else None
        self.activation = activation
        self.pool = None
        return activation is not None

    def absorb_after(self, following: Layer | None) -> bool:
        """Fuse a 2x2 stride-2 max pooling (no padding) after the fused ReLU.

        The pooled images then come straight from the product
        (``channels_to_pooled``), and the product's gradient straight from the
        pooled gradient (``pooled_to_channels``): the full-size activation and
        its gradient are never written.  Same values and gradients as the
        layers one after the other (which run instead for an odd output size, and on a GPU).
        """
        pool = (
            following
            if isinstance(self.activation, ReLU)
            and isinstance(following, MaxPool2D)
            and following.kernel_size == (2, 2)
            and following.stride == (2, 2)
            and following.padding == ((0, 0), (0, 0))
            else None
        )
        self.pool = pool
        return pool is not None

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

    def _kernel(self, name: str) -> Any:
        """Operation ``name`` without its layout guard: every array handed to it here is C-contiguous
        by construction (the made-contiguous input and gradient, leading slices of them, workspaces,
        views of the flat parameter buffers), so checking each call's layout again is overhead."""
        operation = self._kernels.get(name)
        if operation is None:
            operation = self._kernels[name] = unguarded(getattr(self.backend.ops, name))
        return operation

    def _chunk(self, n: int, rows: int, pixels: int) -> int:
        """Samples per pass: on the CPU, as many as keep the largest per-pass buffer near CHUNK_BYTES."""
        if self.backend.device.is_cuda or n <= 1:
            return max(n, 1)
        per_sample = max(rows, self.out_channels) * pixels * np.dtype(self.dtype).itemsize
        most = max(1, min(n, CHUNK_BYTES // max(per_sample, 1)))
        parts = -(-n // most)
        return -(-n // parts)  # parts of equal size (but the last), not a full part and a sliver

    def _threads(self, rows: int, columns: int) -> Any:
        """Small products on one BLAS thread on the CPU (see :data:`SMALL_PRODUCT`); else nothing.

        ``rows`` is the im2col rows, ``columns`` the output pixels of the whole batch.
        """
        return small_product(self.backend.xp, self.out_channels * rows * columns, SMALL_PRODUCT)

    def forward(self, x: Any, training: bool) -> Any:
        n, _, h, w = x.shape
        _, oh, ow = self.output_shape((self.in_channels, h, w))
        assert oh is not None and ow is not None
        pixels, rows = oh * ow, self.weight.size // self.out_channels * self.groups
        chunk = self._chunk(n, rows, pixels)
        with self._threads(rows, n * pixels):
            return self._forward(x, training, n, oh, ow, pixels, rows, chunk)

    def _forward(
        self, x: Any, training: bool, n: int, oh: int, ow: int, pixels: int, rows: int, chunk: int
    ) -> Any:
        xp = self.backend.xp
        im2col, channels_to_images = self._kernel("im2col"), self._kernel("channels_to_images")
        x = xp.ascontiguousarray(x)
        window = self._window(oh, ow)
        cols = self.workspace("cols", (rows, chunk * pixels))
        z = self.workspace("z", (self.out_channels, chunk * pixels))
        # On a GPU the swap and the pool keep their own CUDA kernels (the fused step is CPU-only).
        pooled = self.pool is not None and oh % 2 == 0 and ow % 2 == 0 and not self.backend.device.is_cuda
        if pooled:
            to_pooled = self._kernel("channels_to_pooled")
            out = self.workspace("pooled", (n, self.out_channels, oh // 2, ow // 2))
            where = self._pool_index = self.workspace("pool_index", out.shape, np.uint8)
        else:
            out = self.workspace("out", (n, self.out_channels, oh, ow))
        weight = self.weight.data.reshape(self.out_channels, -1)
        relu = isinstance(self.activation, ReLU)
        bias = self._bias_data()
        for first in range(0, n, chunk):
            last = min(n, first + chunk)
            cols_part, z_part = _leading(cols, (last - first) * pixels), _leading(z, (last - first) * pixels)
            im2col(x[first:last], *window, cols_part)
            if self.groups == 1:
                xp.matmul(weight, cols_part, out=z_part)
            else:
                for out_slice, col_slice in self._groups():
                    xp.matmul(weight[out_slice], cols_part[col_slice], out=z_part[out_slice])
            if pooled:
                to_pooled(z_part, bias, out[first:last], where[first:last])
            else:
                channels_to_images(z_part, bias, out[first:last], relu)
        # In one pass the backward reuses the im2col matrix; in several it gathers each part again.
        self._cols = cols if chunk == n else None
        self._input, self._geometry, self._out, self._pooled = x, (tuple(x.shape), window, chunk), out, pooled
        if self.activation is not None and not relu:
            out = self.activation.forward_in_place(out)
        if self.pool is not None and not pooled:
            out = self.pool.forward(out, training)
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
        if self._input is None:
            raise self._not_run()
        in_shape, window, _ = self._geometry
        rows = self.weight.size // self.out_channels * self.groups
        with self._threads(rows, in_shape[0] * window[-2] * window[-1]):
            return self._backward(grad_out, accumulate, need_input_grad)

    def _backward(self, grad_out: Any, accumulate: bool, need_input_grad: bool) -> Any:
        xp = self.backend.xp
        col2im = self._kernel("col2im")
        images_to_channels = self._kernel("images_to_channels")
        pooled_to_channels = self._kernel("pooled_to_channels") if self._pooled else None
        in_shape, window, chunk = self._geometry
        n, pixels = in_shape[0], window[-2] * window[-1]
        relu = isinstance(self.activation, ReLU)
        if self.pool is not None and not self._pooled:
            grad_out = self.pool.backward(grad_out, accumulate=accumulate, need_input_grad=True)
        if self.activation is not None and not relu:
            grad_out = self.activation.backward(grad_out)
        grad_out = xp.ascontiguousarray(grad_out)  # the fused kernels read flat memory (no copy if it is)
        weight, bias = self.weight, self.bias
        w2 = weight.data.reshape(self.out_channels, -1)
        gw2 = weight.grad.reshape(self.out_channels, -1)
        rows = gw2.shape[1] * self.groups
        g = self.workspace("grad_rows", (self.out_channels, chunk * pixels))
        # A frozen parameter (requires_grad False, or backward(parameter_grads=False)) gets no gradient.
        bias_wanted = bias is not None and bias.requires_grad
        weight_wanted = weight.requires_grad
        bias_grad = bias.grad if bias is not None and bias_wanted else self._bias_data()
        groups = self._groups()
        if need_input_grad:
            dcols = self.workspace("grad_cols", (rows, chunk * pixels))
            grad_in = self.workspace("grad_in", in_shape)
        if n == 0 and not accumulate:  # no part runs: an empty batch's gradients are zeros
            if weight_wanted:
                gw2.fill(0)
            if bias_wanted:
                bias_grad.fill(0)
        for first in range(0, n, chunk):
            last = min(n, first + chunk)
            size = (last - first) * pixels
            add = accumulate or first > 0  # later parts add to the first part's gradients
            g_part = _leading(g, size)
            if pooled_to_channels is not None:
                pooled_to_channels(
                    grad_out[first:last], self._out[first:last], self._pool_index[first:last], g_part,
                    bias_grad, bias_wanted, add,
                )
            else:
                images_to_channels(
                    grad_out[first:last], self._out[first:last], g_part, bias_grad, relu, bias_wanted, add
                )
            if weight_wanted:
                self._weight_grad_part(g_part, first, last, add)
            if need_input_grad:
                dcols_part = _leading(dcols, size)
                if self.groups == 1:
                    xp.matmul(w2.T, g_part, out=dcols_part)
                else:
                    for out_slice, col_slice in groups:
                        xp.matmul(w2[out_slice].T, g_part[out_slice], out=dcols_part[col_slice])
                col2im(dcols_part, *window, grad_in[first:last])
        return grad_in if need_input_grad else None

    def _weight_grad_part(self, g_part: Any, first: int, last: int, add: bool) -> None:
        """Samples ``first:last``'s weight gradient ``g_part @ cols.T``, into ``weight.grad`` or added."""
        xp = self.backend.xp
        _, window, chunk = self._geometry
        gw2 = self.weight.grad.reshape(self.out_channels, -1)
        per_out, width = self.out_channels // self.groups, gw2.shape[1]
        if self._cols is not None:
            cols_part = self._cols
        else:
            cols = self.workspace("cols", (width * self.groups, chunk * window[-2] * window[-1]))
            cols_part = _leading(cols, g_part.shape[1])
            self._kernel("im2col")(self._input[first:last], *window, cols_part)
        if weight_grad_by_columns(per_out, width):
            # cols @ g.T, then its small transpose: faster than g @ cols.T where the window is wider
            # than the output channels (OpenBLAS, measured 1.3-1.6x at the benchmark CNNs' shapes)
            product = self.workspace("grad_weight_t", (self.groups, width, per_out))
            for (out_slice, col_slice), part in zip(self._groups(), product, strict=True):
                xp.matmul(cols_part[col_slice], g_part[out_slice].T, out=part)
                if add:
                    gw2[out_slice] += part.T
                else:
                    gw2[out_slice] = part.T
        else:
            target = self.workspace("grad_weight", gw2.shape) if add else gw2
            for out_slice, col_slice in self._groups():
                xp.matmul(g_part[out_slice], cols_part[col_slice].T, out=target[out_slice])
            if add:
                gw2 += target

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
