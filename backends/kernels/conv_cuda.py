"""CUDA kernels of the convolution's data movement and of max pooling, as CuPy ``ElementwiseKernel``s.

One thread per output element, each gathering what it needs, so that no
kernel needs atomics and every result is deterministic:

* ``bpcore_im2col``: one element of ``cols`` (C*kh*kw, N*OH*OW), the input
  pixel it stands for or zero in the padding;
* ``bpcore_col2im``: one input pixel's gradient, the sum over the kernel
  taps whose windows read it (in tap order, as the generic version adds);
* ``bpcore_channels_to_images`` / ``bpcore_images_to_channels``: the swap
  between channel-major ``(O, N*OH*OW)`` and ``(N, O, OH, OW)`` images, with
  the bias add and an optional ReLU (its derivative on the way back); the
  bias gradient is then one CuPy row sum;
* ``bpcore_max_pool_forward``: one output's maximum and its position (the
  first maximum on ties; ``index`` is written flat, as a ``raw`` output);
  ``bpcore_max_pool_backward``: one padded input pixel's gradient, the sum
  over the windows that chose it.

Parameters avoid the names CuPy reserves (``i``, ``n``, a leading ``_``).
``raw`` arrays are indexed as flat C-order memory, so the wrappers make them
C-contiguous first (CuPy's ``ascontiguousarray`` copies only when needed);
the non-raw output is indexed by CuPy through its strides.  Indices are
64-bit.  :func:`make_cuda` takes the kernel provider and the array module, so
that the tests drive the same wrappers with the host-compiled kernel bodies
or with CuPy's code generator and NumPy arrays, without a GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .built_once import BuiltOnce
from .cuda_sources import Elementwise

_GEOMETRY = ("int64 batch, int64 c, int64 h, int64 w, int64 kh, int64 kw, int64 sh, int64 sw, "
             "int64 dh, int64 dw, int64 top, int64 left, int64 oh, int64 ow")

CUDA_SOURCES: dict[str, Elementwise] = {
    kernel.name: kernel
    for kernel in (
        Elementwise(
            "bpcore_im2col", f"raw T x, {_GEOMETRY}", "T cols",
            "long long p = oh * ow, col = i % (batch * p), r = i / (batch * p);"
            " long long a = col / p, rest = col - a * p, y = rest / ow, o = rest - y * ow;"
            " long long j = r % kw, ti = (r / kw) % kh, ch = r / (kh * kw);"
            " long long row = y * sh + ti * dh - top, column = o * sw + j * dw - left;"
            " cols = (row >= 0 && row < h && column >= 0 && column < w)"
            " ? x[((a * c + ch) * h + row) * w + column] : (T)0",
        ),
        Elementwise(
            "bpcore_col2im", f"raw T cols, {_GEOMETRY}", "T grad",
            "long long xx = i % w, t = i / w, yy = t % h; t /= h; long long ch = t % c, a = t / c;"
            " long long p = oh * ow; T total = (T)0;"
            " for (long long ti = 0; ti < kh; ++ti) {"
            "   long long ty = yy + top - ti * dh; if (ty < 0 || ty % sh != 0 || ty / sh >= oh) continue;"
            "   for (long long j = 0; j < kw; ++j) {"
            "     long long tx = xx + left - j * dw; if (tx < 0 || tx % sw != 0 || tx / sw >= ow) continue;"
            "     total += cols[((ch * kh + ti) * kw + j) * (batch * p) + a * p + (ty / sh) * ow + tx / sw];"
            "   }"
            " }"
            " grad = total",
        ),
        Elementwise(
            "bpcore_channels_to_images",
            "raw T z, raw T bias, int64 batch, int64 channels, int64 p, bool relu",
            "T out",
            "long long k = i % p, t = i / p, ch = t % channels, a = t / channels;"
            " T value = z[(ch * batch + a) * p + k] + bias[ch];"
            " out = (relu && value < (T)0) ? (T)0 : value",
        ),
        Elementwise(
            "bpcore_images_to_channels", "raw T gy, raw T y, int64 batch, int64 channels, int64 p, bool relu",
            "T g",
            "long long col = i % (batch * p), ch = i / (batch * p), a = col / p, k = col - a * p;"
            " long long s = (a * channels + ch) * p + k;"
            " g = (!relu || y[s] > (T)0) ? gy[s] : (T)0",
        ),
        Elementwise(
            "bpcore_max_pool_forward",
            "raw T image, int64 hp, int64 wp, int64 kh, int64 kw, int64 sh, int64 sw, int64 oh, int64 ow",
            "T out, raw int64 index",
            "long long x = i % ow, t = i / ow, y = t % oh, plane = t / oh;"
            " const long long base = (plane * hp + y * sh) * wp + x * sw;"
            " T best = image[base]; long long where = 0;"
            " for (long long ti = 0; ti < kh; ++ti)"
            "   for (long long j = 0; j < kw; ++j) {"
            "     T value = image[base + ti * wp + j];"
            "     if (value > best) { best = value; where = ti * kw + j; }"
            "   }"
            " out = best; index[i] = where",
        ),
        Elementwise(
            "bpcore_max_pool_backward",
            "raw T gy, raw int64 index, int64 hp, int64 wp, int64 kh, int64 kw, int64 sh, int64 sw, "
            "int64 oh, int64 ow",
            "T grad",
            "long long xx = i % wp, t = i / wp, yy = t % hp, plane = t / hp; T total = (T)0;"
            " long long y_lo = yy < kh ? 0 : (yy - kh) / sh + 1, x_lo = xx < kw ? 0 : (xx - kw) / sw + 1;"
            " long long y_hi = yy / sh < oh - 1 ? yy / sh : oh - 1;"
            " long long x_hi = xx / sw < ow - 1 ? xx / sw : ow - 1;"
            " for (long long y = y_lo; y <= y_hi; ++y)"
            "   for (long long x = x_lo; x <= x_hi; ++x) {"
            "     long long o = (plane * oh + y) * ow + x;"
            "     if (index[o] == (yy - y * sh) * kw + (xx - x * sw)) total += gy[o];"
            "   }"
            " grad = total",
        ),
    )
}


def make_cuda(name: str, kernels: Callable[[str], Any], xp: Any) -> Callable[..., Any]:
    """The CUDA implementation of operation ``name``, launching ``kernels(kernel_name)`` on ``xp`` arrays."""
    flat = xp.ascontiguousarray
    if name in ("im2col", "col2im"):
        kernel = kernels(f"bpcore_{name}")

        def window(source: Any, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, top: int, left: int,
                   oh: int, ow: int, target: Any) -> Any:
            images = source if name == "im2col" else target
            n, c, h, w = images.shape
            kernel(flat(source), n, c, h, w, kh, kw, sh, sw, dh, dw, top, left, oh, ow, target)
            return target

        return window
    if name == "channels_to_images":
        kernel = kernels("bpcore_channels_to_images")

        def to_images(z: Any, bias: Any, out: Any, relu: bool) -> Any:
            n, c = out.shape[:2]
            kernel(flat(z), flat(bias), n, c, out.size // max(n * c, 1), bool(relu), out)
            return out

        return to_images
    if name == "images_to_channels":
        kernel = kernels("bpcore_images_to_channels")

        def to_channels(gy: Any, y: Any, g: Any, bias_grad: Any, relu: bool, with_bias: bool,
                        accumulate: bool) -> Any:
            n, c = gy.shape[:2]
            kernel(flat(gy), flat(y), n, c, gy.size // max(n * c, 1), bool(relu), g)
            if with_bias:
                if accumulate:
                    bias_grad += g.sum(axis=1)
                else:
                    g.sum(axis=1, out=bias_grad)
            return g

        return to_channels
    if name == "max_pool2d_forward":
        kernel = kernels("bpcore_max_pool_forward")

        def pool(image: Any, kh: int, kw: int, sh: int, sw: int, out: Any, index: Any) -> Any:
            oh, ow = out.shape[2:]
            chosen = index if index.flags.c_contiguous else xp.empty(index.shape, index.dtype)
            kernel(flat(image), image.shape[2], image.shape[3], kh, kw, sh, sw, oh, ow, out, chosen)
            if chosen is not index:
                index[...] = chosen
            return out

        return pool
    if name == "max_pool2d_backward":
        kernel = kernels("bpcore_max_pool_backward")

        def unpool(gy: Any, index: Any, kh: int, kw: int, sh: int, sw: int, grad: Any) -> Any:
            oh, ow = gy.shape[2:]
            kernel(flat(gy), flat(index), grad.shape[2], grad.shape[3], kh, kw, sh, sw, oh, ow, grad)
            return grad

        return unpool
    raise ImportError(f"no CUDA kernel for operation {name!r}")


_built: dict[str, Any] = {}


def cupy_kernel(kernel_name: str) -> Any:
    """The ``cupy.ElementwiseKernel`` of one of :data:`CUDA_SOURCES` (made once; BuiltOnce holds the lock)."""
    kernel = _built.get(kernel_name)
    if kernel is None:
        import cupy

        from .cuda_sources import NVRTC_OPTIONS

        spec = CUDA_SOURCES[kernel_name]
        kernel = _built[kernel_name] = cupy.ElementwiseKernel(
            spec.in_params, spec.out_params, spec.body, spec.name, options=NVRTC_OPTIONS
        )
    return kernel


def _make(name: str) -> Callable[..., Any]:
    import cupy

    return make_cuda(name, cupy_kernel, cupy)


cuda_conv_kernel = BuiltOnce(_make).builder
