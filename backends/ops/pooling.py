"""Max pooling's hot steps over a padded image (N, C, Hp, Wp); the layer pads and un-pads.

* ``max_pool2d_forward(image, kh, kw, sh, sw, out, index)``: ``out[n, c, y, x]`` = the
  maximum of the window at ``(y * sh, x * sw)``; ``index`` (int64) = its position
  ``i * kw + j`` in the window, the first one on ties; a window holding a NaN
  gives NaN, at its last NaN (as PyTorch: :func:`window_argmax`).
* ``max_pool2d_backward(gy, index, kh, kw, sh, sw, grad)``: ``grad`` (the padded
  image's shape) = zero, plus each ``gy`` added at the position ``index`` names.
"""

from __future__ import annotations

from typing import Any

from ..kernels import conv_cuda  # noqa: F401  (registers the CUDA kernels' source text)
from ..kernels import cpu as kcpu
from ..kernels.layout import c_ordered
from .registry import Cuda, Numba, declare


def _windows(xp: Any, image: Any, kh: int, kw: int, sh: int, sw: int, out_hw: tuple[int, int]) -> Any:
    n, c = image.shape[:2]
    s_n, s_c, s_h, s_w = image.strides
    view = xp.lib.stride_tricks.as_strided(
        image, shape=(n, c, *out_hw, kh, kw), strides=(s_n, s_c, s_h * sh, s_w * sw, s_h, s_w)
    )
    return xp.ascontiguousarray(view).reshape(n, c, *out_hw, kh * kw)


def window_argmax(xp: Any, windows: Any) -> Any:
    """Each window's chosen position along the last axis, as PyTorch's max pooling chooses.

    The first maximum, but a NaN is the maximum of its window and the last
    NaN is chosen (PyTorch's ``val > maxval || isnan(val)`` over the window in
    order); ``argmax`` alone would take the first NaN.
    """
    index = windows.argmax(axis=-1)
    nan = xp.isnan(windows)
    last_nan = windows.shape[-1] - 1 - nan[..., ::-1].argmax(axis=-1)
    return xp.where(nan.any(axis=-1), last_nan, index)


def _max_pool_cpu(kernel: Any, generic: Any) -> Any:
    """The CPU wrapper: the 2x2 stride-2 kernels where they apply, the general one (``kernel``) otherwise."""
    # Imported here, at build time: Numba is known to be there (the general kernels' module needed it).
    from ..kernels import max_pool_numba

    applies = max_pool_numba.applies
    if kernel.name == "max_pool2d_forward":
        fast = max_pool_numba.max_pool2d_forward_2x2

        def forward(image: Any, kh: int, kw: int, sh: int, sw: int, out: Any, index: Any) -> Any:
            if applies(kh, kw, sh, sw, image, out, index):
                build = kcpu.pick(max_pool_numba.FORWARD, image.size, "cheap")
                return fast(image, kh, kw, sh, sw, out, index, build)
            return kcpu.pick(kernel, out.size, "cheap")(image, kh, kw, sh, sw, out, index)

        return forward
    fast_back = max_pool_numba.max_pool2d_backward_2x2

    def backward(gy: Any, index: Any, kh: int, kw: int, sh: int, sw: int, grad: Any) -> Any:
        if applies(kh, kw, sh, sw, gy, index, grad) and gy.dtype == grad.dtype:
            build = kcpu.pick(max_pool_numba.BACKWARD, grad.size, "cheap")
            return fast_back(gy, index, kh, kw, sh, sw, grad, build)
        return kcpu.pick(kernel, gy.size, "cheap")(gy, index, kh, kw, sh, sw, grad)

    return backward


def _max_pool_cuda(kernels: Any, generic: Any) -> Any:
    """The CUDA wrapper: one thread per output (forward) or per padded input pixel (backward)."""
    kernel = kernels()
    if kernels.operation == "max_pool2d_forward":

        def forward(image: Any, kh: int, kw: int, sh: int, sw: int, out: Any, index: Any) -> Any:
            oh, ow = out.shape[2:]
            chosen = c_ordered(index)  # a raw output: written flat
            kernel(c_ordered(image), image.shape[2], image.shape[3], kh, kw, sh, sw, oh, ow, out, chosen)
            if chosen is not index:
                index[...] = chosen
            return out

        return forward

    def backward(gy: Any, index: Any, kh: int, kw: int, sh: int, sw: int, grad: Any) -> Any:
        oh, ow = gy.shape[2:]
        kernel(c_ordered(gy), c_ordered(index), grad.shape[2], grad.shape[3], kh, kw, sh, sw, oh, ow, grad)
        return grad

    return backward


@declare(
    "max_pool2d_forward",
    "out = max over each window; index = its argmax",
    cpu=Numba(_max_pool_cpu, "pooling_numba"),
    cuda=Cuda(_max_pool_cuda),
)
def max_pool2d_forward(xp: Any, image: Any, kh: int, kw: int, sh: int, sw: int, out: Any, index: Any) -> Any:
    windows = _windows(xp, image, kh, kw, sh, sw, out.shape[2:])
    index[...] = window_argmax(xp, windows)
    out[...] = xp.take_along_axis(windows, index[..., None], axis=-1)[..., 0]
    return out


@declare(
    "max_pool2d_backward",
    "grad = scatter of gy to each window's argmax",
    cpu=Numba(_max_pool_cpu, "pooling_numba"),
    cuda=Cuda(_max_pool_cuda),
)
def max_pool2d_backward(xp: Any, gy: Any, index: Any, kh: int, kw: int, sh: int, sw: int, grad: Any) -> Any:
    grad.fill(0.0)
    oh, ow = gy.shape[2:]
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + sh * (oh - 1) + 1, sh)
            columns = slice(j, j + sw * (ow - 1) + 1, sw)
            grad[:, :, rows, columns] += xp.where(index == i * kw + j, gy, 0.0)  # not NaN * 0 elsewhere
    return grad
