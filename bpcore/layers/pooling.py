"""Pooling over image windows: max, average and global average (PyTorch's defaults).

Windows are gathered as one strided copy (``(N, C, OH, OW, kh * kw)``); the
backward adds each window's gradient back with one strided add per kernel
position, the max pooling's from the position it saved (its argmax).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backends import Backend
from .base import Layer, Shape, shape_text
from .spatial import Pair, padded, padding_of, positive_pair, unpad, window_output_shape, window_slices


class _Pool2D(Layer):
    """A pooling window: ``kernel_size``, ``stride`` (default: the kernel) and zero ``padding``."""

    def __init__(
        self, kernel_size: int | Pair, stride: int | Pair | None = None, padding: int | Pair = 0
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.kernel_size = positive_pair(owner, "kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else positive_pair(owner, "stride", stride)
        if isinstance(padding, str):
            raise ValueError(f"{owner}(padding): expected an int or a pair, got {padding!r}")
        self.padding = padding_of(owner, padding, self.kernel_size, (1, 1), self.stride)
        for axis in range(2):
            if self.padding[axis][0] * 2 > self.kernel_size[axis]:
                raise ValueError(
                    f"{owner}(padding): padding must be at most half the kernel size, as in PyTorch; got "
                    f"padding {padding!r} for kernel_size {self.kernel_size}"
                )
        self._geometry: tuple[Any, ...] = ()

    def config(self) -> dict[str, Any]:
        return {
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": [self.padding[0][0], self.padding[1][0]],
        }

    def output_shape(self, input_shape: Shape) -> Shape:
        return window_output_shape(
            self, input_shape, None, self.kernel_size, self.stride, self.padding, (1, 1), None
        )

    def build(self, input_shape: Shape | None, dtype: np.dtype, backend: Backend) -> Shape | None:
        self._geometry = ()
        return super().build(input_shape, dtype, backend)

    def to(self, backend: Backend) -> None:
        super().to(backend)
        self._geometry = ()

    def _windows(self, x: Any, fill: float) -> Any:
        """Every window of ``x`` as a contiguous (N, C, OH, OW, kh * kw) array (a workspace)."""
        xp = self.backend.xp
        n, c, h, w = x.shape
        _, oh, ow = (int(size) for size in self.output_shape((c, h, w)))  # type: ignore[arg-type]
        image = padded(self, x, self.padding, fill)
        s_n, s_c, s_h, s_w = image.strides
        kh, kw = self.kernel_size
        view = xp.lib.stride_tricks.as_strided(
            image,
            shape=(n, c, oh, ow, kh, kw),
            strides=(s_n, s_c, s_h * self.stride[0], s_w * self.stride[1], s_h, s_w),
        )
        windows = self.workspace("windows", (n, c, oh, ow, kh, kw))
        xp.copyto(windows, view)
        self._geometry = (tuple(x.shape), tuple(image.shape), oh, ow)
        return windows.reshape(n, c, oh, ow, kh * kw)

    def _scatter(self, grad_out: Any, weights: Any) -> Any:
        """The input gradient: ``grad_out * weights[..., position]`` added back at each kernel position.

        ``weights`` is (N, C, OH, OW, kh * kw) or a scalar (the same for every position).
        """
        in_shape, padded_shape, oh, ow = self._geometry
        grad_padded = self.workspace("grad_padded", padded_shape)
        grad_padded.fill(0.0)
        kh, kw = self.kernel_size
        for i in range(kh):
            for j in range(kw):
                rows, columns = window_slices(i, j, self.stride, (1, 1), (oh, ow))
                share = weights if np.isscalar(weights) else weights[..., i * kw + j]
                grad_padded[:, :, rows, columns] += grad_out * share
        return unpad(self, grad_padded, self.padding, in_shape)


class MaxPool2D(_Pool2D):
    """The maximum of each window, as PyTorch's MaxPool2d (padding counts as -inf).

    Its backward sends each output's gradient to the first position that held
    the maximum, as PyTorch does; a window holding a NaN gives NaN (a diverged
    value is never hidden) and sends its gradient to its last NaN, as PyTorch.
    Where every value of a window is -inf and the window overlaps the padding,
    the gradient goes to the window's first cell, a padding cell, and is lost
    (PyTorch's goes to the first image pixel): a difference only for -inf input.
    """

    def __init__(
        self, kernel_size: int | Pair, stride: int | Pair | None = None, padding: int | Pair = 0
    ) -> None:
        super().__init__(kernel_size, stride, padding)
        self._chosen: Any = None

    def forward(self, x: Any, training: bool) -> Any:
        n, c, h, w = x.shape
        _, oh, ow = (int(size) for size in self.output_shape((c, h, w)))  # type: ignore[arg-type]
        image = padded(self, x, self.padding, -np.inf)
        out = self.workspace("out", (n, c, oh, ow))
        index = self._chosen = self.workspace("index", (n, c, oh, ow), np.int64)
        self._geometry = (tuple(x.shape), tuple(image.shape), oh, ow)
        return self.backend.ops.max_pool2d_forward(image, *self.kernel_size, *self.stride, out, index)

    def backward(self, grad_out: Any, *, accumulate: bool = True, need_input_grad: bool = True) -> Any:
        if not self._geometry:
            raise self._not_run()
        in_shape, padded_shape, _, _ = self._geometry
        grad_padded = self.workspace("grad_padded", padded_shape)
        self.backend.ops.max_pool2d_backward(
            grad_out, self._chosen, *self.kernel_size, *self.stride, grad_padded
        )
        return unpad(self, grad_padded, self.padding, in_shape)


class AvgPool2D(_Pool2D):
    """The mean of each window, as PyTorch's AvgPool2d (zero padding counted in the mean)."""

    def forward(self, x: Any, training: bool) -> Any:
        windows = self._windows(x, 0.0)
        out = self.workspace("out", windows.shape[:-1])
        return windows.mean(axis=-1, out=out)

    def backward(self, grad_out: Any, *, accumulate: bool = True, need_input_grad: bool = True) -> Any:
        if not self._geometry:
            raise self._not_run()
        return self._scatter(grad_out, 1.0 / (self.kernel_size[0] * self.kernel_size[1]))


class GlobalAvgPool2D(Layer):
    """The mean over each channel's whole image: ``(N, C, H, W) -> (N, C)``."""

    preserves_shape = False

    def __init__(self) -> None:
        super().__init__()
        self._shape: tuple[int, ...] = ()

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 3:
            raise ValueError(
                f"{self!r}: expected images of shape (N, C, H, W), "
                f"got an input of shape {shape_text(input_shape)}"
            )
        return (input_shape[0],)

    def forward(self, x: Any, training: bool) -> Any:
        self._shape = tuple(x.shape)
        out = self.workspace("out", x.shape[:2])
        return x.mean(axis=(2, 3), out=out)

    def backward(self, grad_out: Any, *, accumulate: bool = True, need_input_grad: bool = True) -> Any:
        if not self._shape:
            raise self._not_run()
        grad_in = self.workspace("grad_in", self._shape)
        scale = 1.0 / (self._shape[2] * self._shape[3])
        self.backend.xp.multiply(grad_out[:, :, None, None], scale, out=grad_in)
        return grad_in
