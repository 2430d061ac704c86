"""CUDA kernels of the convolution's data movement and of max pooling, as CuPy ``ElementwiseKernel``s.

One thread per output element, each gathering what it needs, so that no
kernel needs atomics and every result is deterministic:

* ``bp_im2col``: one element of ``cols`` (C*kh*kw, N*OH*OW), the input
  pixel it stands for or zero in the padding;
* ``bp_col2im``: one input pixel's gradient, the sum over the kernel
  taps whose windows read it (in tap order, as the generic version adds);
* ``bp_channels_to_images`` / ``bp_images_to_channels``: the swap
  between channel-major ``(O, N*OH*OW)`` and ``(N, O, OH, OW)`` images, with
  the bias add and an optional ReLU (its derivative on the way back); the
  bias gradient is then one CuPy row sum;
* ``bp_max_pool2d_forward``: one output's maximum and its position (the
  first maximum on ties; ``index`` is written flat, as a ``raw`` output);
  ``bp_max_pool2d_backward``: one padded input pixel's gradient, the sum
  over the windows that chose it.

Each is named after its operation (:func:`.cuda.kernel_name`) and registered
with :func:`.cuda_sources.add` when this module is imported (plain data: no
CuPy needed); the operations' wrappers are beside their declarations
(``backends/ops/conv.py``, ``backends/ops/pooling.py``).  Parameters avoid
the names CuPy reserves (``i``, ``n``, a leading ``_``).  ``raw`` arrays are
indexed as flat C-order memory, so the wrappers make them C-contiguous first;
the non-raw output is indexed by CuPy through its strides.  Indices are
64-bit.
"""

from __future__ import annotations

from .cuda_sources import Elementwise, add

_GEOMETRY = ("int64 batch, int64 c, int64 h, int64 w, int64 kh, int64 kw, int64 sh, int64 sw, "
             "int64 dh, int64 dw, int64 top, int64 left, int64 oh, int64 ow")

CONV_KERNELS = (
    Elementwise(
        "bp_im2col", f"raw T x, {_GEOMETRY}", "T cols",
        "long long p = oh * ow, col = i % (batch * p), r = i / (batch * p);"
        " long long a = col / p, rest = col - a * p, y = rest / ow, o = rest - y * ow;"
        " long long j = r % kw, ti = (r / kw) % kh, ch = r / (kh * kw);"
        " long long row = y * sh + ti * dh - top, column = o * sw + j * dw - left;"
        " cols = (row >= 0 && row < h && column >= 0 && column < w)"
        " ? x[((a * c + ch) * h + row) * w + column] : (T)0",
    ),
    Elementwise(
        "bp_col2im", f"raw T cols, {_GEOMETRY}", "T grad",
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
        "bp_channels_to_images",
        "raw T z, raw T bias, int64 batch, int64 channels, int64 p, bool relu",
        "T out",
        "long long k = i % p, t = i / p, ch = t % channels, a = t / channels;"
        " T value = z[(ch * batch + a) * p + k] + bias[ch];"
        " out = (relu && value < (T)0) ? (T)0 : value",
    ),
    Elementwise(
        "bp_images_to_channels", "raw T gy, raw T y, int64 batch, int64 channels, int64 p, bool relu",
        "T g",
        "long long col = i % (batch * p), ch = i / (batch * p), a = col / p, k = col - a * p;"
        " long long s = (a * channels + ch) * p + k;"
        " g = (relu && y[s] <= (T)0) ? (T)0 : gy[s]",
    ),
    Elementwise(
        "bp_max_pool2d_forward",
        "raw T image, int64 hp, int64 wp, int64 kh, int64 kw, int64 sh, int64 sw, int64 oh, int64 ow",
        "T out, raw int64 index",
        "long long x = i % ow, t = i / ow, y = t % oh, plane = t / oh;"
        " const long long base = (plane * hp + y * sh) * wp + x * sw;"
        " T best = image[base]; long long where = 0;"
        " for (long long ti = 0; ti < kh; ++ti)"
        "   for (long long j = 0; j < kw; ++j) {"
        "     T value = image[base + ti * wp + j];"
        "     if (value > best || value != value) { best = value; where = ti * kw + j; }"
        "   }"
        " out = best; index[i] = where",
    ),
    Elementwise(
        "bp_max_pool2d_backward",
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

for _kernel in CONV_KERNELS:
    add(_kernel)
