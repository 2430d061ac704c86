"""The convolution's fused kernels (im2col, col2im, channel swaps, 2x2 max pooling) against the generic ones.

The generic versions are themselves checked against a direct loop over the
definition here, and the Conv2D layer's gradients against finite
differences and PyTorch in test_conv.py; so a kernel equal to its generic
version is right.  Both dtypes, both builds (serial and ``prange``), odd
sizes, strides, paddings (asymmetric too), dilations and groups.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest

import bpcore
from bpcore.backends.ops import OPERATIONS
from bpcore.layers import ELU, Conv2D, MaxPool2D, ReLU, Tanh

pytest.importorskip("numba", reason="Numba is not installed: the CPU runs the generic versions")

from bpcore.backends.kernels import cpu

DTYPES = [np.float32, np.float64]
# (N, C, H, W), kernel, stride, dilation, (top, left), output size
GEOMETRIES = [
    ((2, 3, 7, 6), (3, 3), (1, 1), (1, 1), (1, 1), (7, 6)),
    ((1, 2, 5, 9), (2, 3), (2, 1), (1, 2), (0, 2), (2, 9)),
    ((3, 1, 6, 6), (3, 2), (2, 3), (2, 1), (2, 0), (3, 2)),
    ((2, 2, 4, 5), (2, 2), (1, 1), (1, 1), (0, 0), (4, 5)),  # "same" with an even kernel: after-padding 1
    ((1, 4, 3, 3), (1, 1), (1, 1), (1, 1), (0, 0), (3, 3)),
    ((2, 1, 8, 7), (3, 3), (3, 2), (1, 1), (1, 1), (3, 4)),
    # unit strides, output as wide as the input: each tap's pixels are one run per plane
    ((3, 2, 5, 4), (3, 3), (1, 1), (2, 1), (2, 1), (5, 4)),  # dilated rows, runs that wrap around
    ((2, 2, 2, 3), (3, 3), (1, 1), (3, 3), (3, 3), (2, 3)),  # taps that see only padding
    ((2, 3, 4, 4), (3, 3), (1, 1), (1, 1), (1, 1), (4, 4)),  # the digits CNN's second convolution
    # planes over SMALL_PLANE pixels: the gather's zeros, run and zeros per plane
    ((2, 2, 9, 8), (3, 3), (1, 1), (1, 2), (1, 2), (9, 8)),
    ((1, 2, 10, 8), (3, 3), (1, 1), (3, 1), (0, 1), (4, 8)),
]


def _direct_im2col(x: np.ndarray, kernel, stride, dilation, start, out_hw) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The definition, one value at a time."""
    n, c, h, w = x.shape
    cols = np.zeros((c, *kernel, n, *out_hw), x.dtype)
    for ch, i, j, a, y, o in itertools.product(
        range(c), range(kernel[0]), range(kernel[1]), range(n), range(out_hw[0]), range(out_hw[1])
    ):
        row = y * stride[0] + i * dilation[0] - start[0]
        col = o * stride[1] + j * dilation[1] - start[1]
        if 0 <= row < h and 0 <= col < w:
            cols[ch, i, j, a, y, o] = x[a, ch, row, col]
    return cols.reshape(c * kernel[0] * kernel[1], -1)


def _window(kernel, stride, dilation, start, out_hw):  # type: ignore[no-untyped-def]
    return (*kernel, *stride, *dilation, *start, *out_hw)


# The parallel build is the same source with prange; it is checked in float64
# only, to spare the test run its float32 compilation.
VARIANTS = [(np.float32, "serial"), (np.float64, "serial"), (np.float64, "parallel")]
VARIANT_IDS = ["f32-serial", "f64-serial", "f64-parallel"]


@pytest.fixture(params=VARIANTS, ids=VARIANT_IDS)
def dtype(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> type:
    """The dtype to test, with the build (serial or parallel) that runs on it."""
    kind, build = request.param
    monkeypatch.setitem(cpu.PARALLEL_MIN, "cheap", 0 if build == "parallel" else 1 << 40)
    return kind  # type: ignore[no-any-return]


def _implementations(name: str) -> tuple:  # type: ignore[type-arg]
    operation = OPERATIONS[name]
    return functools.partial(operation.generic, np), operation.cpu()  # type: ignore[misc]


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_im2col_and_col2im_match_the_definition_and_each_other(dtype: type, geometry: tuple) -> None:
    shape, kernel, stride, dilation, start, out_hw = geometry
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(dtype)
    window = _window(kernel, stride, dilation, start, out_hw)
    expected = _direct_im2col(x, kernel, stride, dilation, start, out_hw)
    (generic, fused), (generic_back, fused_back) = _implementations("im2col"), _implementations("col2im")
    for run in (generic, fused):
        cols = np.full(expected.shape, np.nan, dtype)
        run(x, *window, cols)
        np.testing.assert_array_equal(cols, expected)
    # col2im is the adjoint of im2col: <im2col(x), c> == <x, col2im(c)>, and the two versions agree.
    c = rng.standard_normal(expected.shape).astype(dtype)
    grads = []
    for run in (generic_back, fused_back):
        grad = np.full(shape, np.nan, dtype)
        run(c, *window, grad)
        grads.append(grad)
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-6 if dtype == np.float32 else 1e-14, atol=1e-6)
    np.testing.assert_allclose(
        np.vdot(expected.astype(np.float64), c), np.vdot(x.astype(np.float64), grads[0]), rtol=1e-5
    )


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize(("with_bias", "accumulate"), [(True, False), (True, True), (False, False)])
def test_channel_swaps_match(dtype: type, relu: bool, with_bias: bool, accumulate: bool) -> None:
    rng = np.random.default_rng(3)
    n, o, oh, ow = 3, 5, 4, 7
    z = rng.standard_normal((o, n * oh * ow)).astype(dtype)
    bias = rng.standard_normal(o).astype(dtype)
    outs = []
    for run in _implementations("channels_to_images"):
        out = np.full((n, o, oh, ow), np.nan, dtype)
        run(z, bias, out, relu)
        outs.append(out)
    expected = z.reshape(o, n, oh, ow).transpose(1, 0, 2, 3) + bias[:, None, None]
    np.testing.assert_allclose(outs[0], np.maximum(expected, 0) if relu else expected, rtol=1e-6)
    np.testing.assert_array_equal(outs[1], outs[0])

    gy = rng.standard_normal((n, o, oh, ow)).astype(dtype)
    results = []
    for run in _implementations("images_to_channels"):
        g = np.full(z.shape, np.nan, dtype)
        bias_grad = np.full(o, 0.5, dtype)
        run(gy, outs[0], g, bias_grad, relu, with_bias, accumulate)
        results.append((g, bias_grad))
    masked = gy * (outs[0] > 0) if relu else gy
    np.testing.assert_array_equal(results[0][0], masked.transpose(1, 0, 2, 3).reshape(o, -1))
    np.testing.assert_array_equal(results[1][0], results[0][0])
    sums = masked.astype(np.float64).sum(axis=(0, 2, 3))
    expected_bias = (0.5 + sums if accumulate else sums) if with_bias else np.full(o, 0.5)
    for _, bias_grad in results:
        np.testing.assert_allclose(bias_grad, expected_bias, rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("kind", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shape", [(2, 3, 6, 8), (1, 2, 7, 5), (2, 1, 2, 2), (3, 250, 11, 6)])  # 2 blocks
def test_the_two_by_two_max_pool_matches_the_generic_version(kind: type, shape: tuple) -> None:
    dtype = kind
    from bpcore.backends.kernels import max_pool_numba

    rng = np.random.default_rng(5)
    image = rng.standard_normal(shape).astype(dtype)
    image[0, 0, :2, :2] = 2.0  # a four-way tie: the first position wins
    image[-1, -1, :2, :2] = [[1.0, 3.0], [3.0, 1.0]]  # a tie across rows
    oh, ow = shape[2] // 2, shape[3] // 2
    gy = rng.standard_normal((shape[0], shape[1], oh, ow)).astype(dtype)
    results = []
    names = ("max_pool2d_forward", "max_pool2d_backward")
    for forward, backward in (
        [functools.partial(OPERATIONS[name].generic, np) for name in names],
        [max_pool_numba.max_pool2d_forward_2x2, max_pool_numba.max_pool2d_backward_2x2],  # themselves
        [functools.partial(max_pool_numba.max_pool2d_forward_2x2, build=max_pool_numba.FORWARD.parallel),
         functools.partial(max_pool_numba.max_pool2d_backward_2x2, build=max_pool_numba.BACKWARD.parallel)],
        [OPERATIONS[name].cpu() for name in names],  # type: ignore[misc]  # as the operations run them
    ):
        out, index = np.empty(gy.shape, dtype), np.empty(gy.shape, np.int64)
        forward(image, 2, 2, 2, 2, out, index)
        grad = np.full(shape, np.nan, dtype)
        backward(gy, index, 2, 2, 2, 2, grad)
        results.append((out, index, grad))
    for generic, *kernels in zip(*results, strict=True):
        for got in kernels:
            np.testing.assert_array_equal(got, generic)


@pytest.mark.parametrize("kind", ["float32", "float64"])
@pytest.mark.parametrize(
    ("options", "activation"),
    [
        (dict(kernel_size=3, padding=1), ReLU),
        (dict(kernel_size=(3, 2), stride=(2, 1), padding="valid", dilation=(1, 2), groups=2), Tanh),
        (dict(kernel_size=2, padding="same", groups=4, bias=False), ELU),
        (dict(kernel_size=(1, 3), stride=2, padding=(0, 1)), None),
    ],
)
def test_conv2d_is_the_same_on_fused_and_generic_kernels(
    kind: str, options: dict, activation: type | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    dtype = kind
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 4, 7, 6)).astype(dtype)
    results = []
    for kernels in ("generic", "fused"):
        monkeypatch.setenv("BPCORE_KERNELS", kernels)
        layers = [Conv2D(4, 8, **options)] + ([activation()] if activation else [])
        network = bpcore.Network([*layers, MaxPool2D(2)], dtype=dtype, seed=1)
        assert network.backend.kernels == kernels
        fused_activation = activation is not None and options.get("bias", True)
        assert (network.layers[0].activation is not None) == fused_activation
        network.store.grad[...] = 0.25  # backward adds to the gradients
        out = network.forward(x, training=True)
        gy = np.random.default_rng(8).standard_normal(out.shape).astype(dtype)
        results.append((out, network.backward(gy), network.store.grad.copy()))
    tolerance = 1e-5 if dtype == "float32" else 1e-12
    for generic, fused in zip(*results, strict=True):
        np.testing.assert_allclose(fused, generic, rtol=tolerance, atol=tolerance)


def test_only_the_bias_gradient_sums_may_be_reassociated() -> None:
    """``with_options`` reaches both builds of its kernel and no other kernel."""
    from bpcore.backends.kernels import numba_jit

    for name in ("im2col", "col2im", "channels_to_images", "images_to_channels"):
        OPERATIONS[name].cpu()  # type: ignore[misc]
        for dispatcher in numba_jit.pair(name).dispatchers:
            expected = {"reassoc"} if name == "images_to_channels" else None
            assert dispatcher.targetoptions.get("fastmath") == expected, name
