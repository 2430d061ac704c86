"""The convolution's data movement, around its matrix products (see :mod:`bpcore.layers.conv`).

``cols`` is the transposed im2col matrix, shape ``(C * kh * kw, N * OH * OW)``:
row ``(c, i, j)`` holds, for every output pixel ``(n, y, x)``, the input
pixel ``x[n, c, y * sh + i * dh - top, x * sw + j * dw - left]`` (zero outside
the image: the padding).  With it a convolution is ``z = W @ cols`` (``W`` of
shape ``(O, C * kh * kw)``), and its input gradient ``col2im(W.T @ g)``.

* ``im2col(x, kh, kw, sh, sw, dh, dw, top, left, oh, ow, cols)``: fill ``cols``
  from the images ``x`` (N, C, H, W).
* ``col2im(cols, kh, kw, sh, sw, dh, dw, top, left, oh, ow, grad)``: ``grad``
  (N, C, H, W) = each entry of ``cols`` added back at the pixel it came from
  (padding entries dropped); overwrites ``grad``.
* ``channels_to_images(z, bias, out, relu)``: ``out[n, o, y, x] = z[o, n * OH * OW +
  y * OW + x] + bias[o]``, then ``max(out, 0)`` if ``relu``.
* ``images_to_channels(gy, y, g, bias_grad, relu, with_bias, accumulate)``: the
  reverse swap of ``gy`` (N, O, OH, OW) into ``g`` (O, N * OH * OW), zero where
  the ReLU output ``y`` is <= 0 if ``relu`` (torch's rule: a NaN output passes
  its gradient); with ``with_bias``,
  ``bias_grad`` is set to (or, with ``accumulate``, has added) the sum of ``g``
  over its second axis.

The ReLU flag fuses the commonest activation after a convolution into
these passes; any other activation runs as its own operation.
"""

from __future__ import annotations

from typing import Any

from ..kernels import conv_cuda  # noqa: F401  (registers the CUDA kernels' source text)
from ..kernels import cpu as kcpu
from ..kernels.layout import c_ordered
from .registry import Cuda, Numba, declare

# The Numba kernels are in backends/kernels/conv_numba.py, the CUDA ones in conv_cuda.py.
_MODULE = "conv_numba"


def channel_bias_grad(g: Any, bias_grad: Any, accumulate: bool) -> None:
    """The bias gradient from channel-major ``g`` ``(O, pixels)``: its row sums, added or written."""
    if accumulate:
        bias_grad += g.sum(axis=1)
    else:
        g.sum(axis=1, out=bias_grad)


def _window_cpu(kernel: Any, generic: Any) -> Any:
    """im2col / col2im: the serial or parallel build by the size of ``cols``."""
    cols_at = 11 if kernel.name == "im2col" else 0

    def window(*args: Any) -> Any:
        return kcpu.pick(kernel, args[cols_at].size, "cheap")(*args)

    return window


def _window_cuda(kernels: Any, generic: Any) -> Any:
    kernel = kernels()
    gathers = kernels.operation == "im2col"

    def window(source: Any, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, top: int, left: int,
               oh: int, ow: int, target: Any) -> Any:
        n, c, h, w = (source if gathers else target).shape
        kernel(c_ordered(source), n, c, h, w, kh, kw, sh, sw, dh, dw, top, left, oh, ow, target)
        return target

    return window


def _taps(
    kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, oh: int, ow: int
) -> list[tuple[int, int, slice, slice]]:
    """Per kernel tap (i, j): the rows and columns of the padded image it reads over all windows."""
    return [
        (
            i,
            j,
            slice(i * dh, i * dh + sh * (oh - 1) + 1, sh),
            slice(j * dw, j * dw + sw * (ow - 1) + 1, sw),
        )
        for i in range(kh)
        for j in range(kw)
    ]


def _padded_shape(
    shape: tuple[int, ...], kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, top: int, left: int,
    oh: int, ow: int,
) -> tuple[int, int, int, int]:
    n, c, h, w = shape
    height = max(top + h, sh * (oh - 1) + dh * (kh - 1) + 1)
    width = max(left + w, sw * (ow - 1) + dw * (kw - 1) + 1)
    return n, c, height, width


@declare(
    "im2col",
    "cols[(c, i, j), (n, y, x)] = the window pixels, padding folded in",
    cpu=Numba(_window_cpu, _MODULE),
    cuda=Cuda(_window_cuda),
)
def im2col(
    xp: Any, x: Any, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, top: int, left: int,
    oh: int, ow: int, cols: Any,
) -> Any:
    n, c, h, w = x.shape
    image = xp.zeros(_padded_shape(x.shape, kh, kw, sh, sw, dh, dw, top, left, oh, ow), dtype=x.dtype)
    image[:, :, top : top + h, left : left + w] = x
    view = cols.reshape(c, kh, kw, n, oh, ow)
    for i, j, rows, columns in _taps(kh, kw, sh, sw, dh, dw, oh, ow):
        view[:, i, j] = image[:, :, rows, columns].transpose(1, 0, 2, 3)
    return cols


@declare(
    "col2im",
    "grad = cols scatter-added back to the pixels they came from",
    cpu=Numba(_window_cpu, _MODULE),
    cuda=Cuda(_window_cuda),
)
def col2im(
    xp: Any, cols: Any, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, top: int, left: int,
    oh: int, ow: int, grad: Any,
) -> Any:
    n, c, h, w = grad.shape
    image = xp.zeros(_padded_shape(grad.shape, kh, kw, sh, sw, dh, dw, top, left, oh, ow), dtype=grad.dtype)
    view = cols.reshape(c, kh, kw, n, oh, ow)
    for i, j, rows, columns in _taps(kh, kw, sh, sw, dh, dw, oh, ow):
        image[:, :, rows, columns] += view[:, i, j].transpose(1, 0, 2, 3)
    grad[...] = image[:, :, top : top + h, left : left + w]
    return grad


def _to_images_cpu(kernel: Any, generic: Any) -> Any:
    def channels_to_images(z: Any, bias: Any, out: Any, relu: bool) -> Any:
        return kcpu.pick(kernel, z.size, "cheap")(z, bias, out, relu)

    return channels_to_images


def _to_images_cuda(kernels: Any, generic: Any) -> Any:
    kernel = kernels()

    def channels_to_images(z: Any, bias: Any, out: Any, relu: bool) -> Any:
        n, c = out.shape[:2]
        kernel(c_ordered(z), c_ordered(bias), n, c, out.size // max(n * c, 1), bool(relu), out)
        return out

    return channels_to_images


@declare(
    "channels_to_images",
    "out (N, O, OH, OW) = z (O, N*OH*OW) + bias, ReLU optional",
    cpu=Numba(_to_images_cpu, _MODULE),
    cuda=Cuda(_to_images_cuda),
)
def channels_to_images(xp: Any, z: Any, bias: Any, out: Any, relu: bool) -> Any:
    n, o = out.shape[:2]
    planes = out.reshape(n, o, -1)
    xp.add(z.reshape(o, n, -1).transpose(1, 0, 2), bias[:, None], out=planes)
    if relu:
        xp.maximum(planes, 0.0, out=planes)
    return out


def _to_channels_cpu(kernel: Any, generic: Any) -> Any:
    def images_to_channels(
        gy: Any, y: Any, g: Any, bias_grad: Any, relu: bool, with_bias: bool, accumulate: bool
    ) -> Any:
        return kcpu.pick(kernel, g.size, "cheap")(gy, y, g, bias_grad, relu, with_bias, accumulate)

    return images_to_channels


def _to_channels_cuda(kernels: Any, generic: Any) -> Any:
    kernel = kernels()

    def images_to_channels(
        gy: Any, y: Any, g: Any, bias_grad: Any, relu: bool, with_bias: bool, accumulate: bool
    ) -> Any:
        n, c = gy.shape[:2]
        kernel(c_ordered(gy), c_ordered(y), n, c, gy.size // max(n * c, 1), bool(relu), g)
        if with_bias:  # one CuPy row sum
            channel_bias_grad(g, bias_grad, accumulate)
        return g

    return images_to_channels


@declare(
    "images_to_channels",
    "g (O, N*OH*OW) = gy (N, O, OH, OW) (ReLU mask optional); bias_grad (+)= its sums",
    cpu=Numba(_to_channels_cpu, _MODULE),
    cuda=Cuda(_to_channels_cuda),
)
def images_to_channels(
    xp: Any, gy: Any, y: Any, g: Any, bias_grad: Any, relu: bool, with_bias: bool, accumulate: bool
) -> Any:
    n, o = gy.shape[:2]
    swapped = g.reshape(o, n, -1)
    swapped[...] = gy.reshape(n, o, -1).transpose(1, 0, 2)
    if relu:  # zero where the output is <= 0, whatever the gradient (even NaN)
        swapped[...] = xp.where(y.reshape(n, o, -1).transpose(1, 0, 2) <= 0, 0.0, swapped)
    if with_bias:
        channel_bias_grad(g, bias_grad, accumulate)
    return g
