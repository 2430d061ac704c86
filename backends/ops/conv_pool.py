"""A convolution's output swap fused with its ReLU and a 2x2 stride-2 max pooling (see Conv2D).

``z`` is the convolution's channel-major product ``(O, N * OH * OW)`` (OH, OW
even), the pooled images ``(N, O, OH / 2, OW / 2)``:

* ``channels_to_pooled(z, bias, out, index)``: ``out`` = the 2x2 stride-2 max
  pool of ``relu(z + bias)`` in image layout (what ``channels_to_images`` with
  its ReLU and then ``max_pool2d_forward`` give); ``index`` (uint8, out's
  shape) = each window's chosen position ``i * 2 + j``, the first on ties and
  the last NaN where the window holds one (PyTorch's choice, as max pooling's);
* ``pooled_to_channels(gy, out, index, g, bias_grad, with_bias, accumulate)``:
  ``g`` (z's layout) = ``gy`` at each window's chosen position where ``out`` is
  positive, zero elsewhere (``max_pool2d_backward`` then ``images_to_channels``
  with its ReLU); ``bias_grad`` set to (or with ``accumulate`` increased by)
  the sums of ``g`` over its second axis if ``with_bias``.

The CPU runs Numba kernels (:mod:`..kernels.conv_pool_numba`).  Conv2D uses
these operations on the CPU only: on a GPU its CUDA swap and pooling kernels
run one after the other instead (the generic version, written for NumPy and
CuPy alike, would add temporaries there).
"""

from __future__ import annotations

from typing import Any

from ..kernels import cpu as kcpu
from .conv import channel_bias_grad
from .pooling import window_argmax
from .registry import Numba, declare

_MODULE = "conv_pool_numba"


def _to_pooled_cpu(kernel: Any, generic: Any) -> Any:
    def channels_to_pooled(z: Any, bias: Any, out: Any, index: Any) -> Any:
        return kcpu.pick(kernel, z.size, "cheap")(z, bias, out, index)

    return channels_to_pooled


@declare(
    "channels_to_pooled",
    "out (N, O, OH/2, OW/2) = 2x2 max pool of relu(z (O, N*OH*OW) + bias); index = its argmax",
    cpu=Numba(_to_pooled_cpu, _MODULE),
)
def channels_to_pooled(xp: Any, z: Any, bias: Any, out: Any, index: Any) -> Any:
    n, o, ph, pw = out.shape
    y = z.reshape(o, n, ph, 2, pw, 2) + bias[:, None, None, None, None, None]
    xp.maximum(y, 0.0, out=y)
    windows = y.transpose(1, 0, 2, 4, 3, 5).reshape(n, o, ph, pw, 4)
    index[...] = window_argmax(xp, windows)
    out[...] = xp.take_along_axis(windows, index[..., None].astype(xp.int64), axis=-1)[..., 0]
    return out


def _to_channels_cpu(kernel: Any, generic: Any) -> Any:
    def pooled_to_channels(
        gy: Any, out: Any, index: Any, g: Any, bias_grad: Any, with_bias: bool, accumulate: bool
    ) -> Any:
        if gy.dtype != g.dtype:  # the kernel moves bit patterns: one dtype
            return generic(gy, out, index, g, bias_grad, with_bias, accumulate)
        bits = f"int{8 * g.dtype.itemsize}"
        kcpu.pick(kernel, g.size, "cheap")(
            gy, gy.view(bits), out, index, g.view(bits), bias_grad, with_bias, accumulate
        )
        return g

    return pooled_to_channels


@declare(
    "pooled_to_channels",
    "g (O, N*OH*OW) = gy at each window's argmax unless out <= 0; bias_grad (+)= its sums",
    cpu=Numba(_to_channels_cpu, _MODULE),
)
def pooled_to_channels(
    xp: Any, gy: Any, out: Any, index: Any, g: Any, bias_grad: Any, with_bias: bool, accumulate: bool
) -> Any:
    n, o, ph, pw = gy.shape
    value = xp.where(out <= 0, 0.0, gy).astype(g.dtype, copy=False)
    view = g.reshape(o, n, ph, 2, pw, 2)
    for i in range(2):
        for j in range(2):
            view[:, :, :, i, :, j] = xp.where(index == 2 * i + j, value, 0.0).transpose(1, 0, 2, 3)
    if with_bias:
        channel_bias_grad(g, bias_grad, accumulate)
    return g
