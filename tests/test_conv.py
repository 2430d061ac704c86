"""Conv2D, pooling, Flatten and Reshape: shapes, gradients (float64, finite differences), errors, torch."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bpcore
from bpcore import gradcheck
from bpcore.layers import (
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dense,
    Flatten,
    GlobalAvgPool2D,
    MaxPool2D,
    ReLU,
    Reshape,
    Tanh,
)

TOLERANCE = 1e-6


def images(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape)


@settings(max_examples=12, deadline=None)
@given(
    groups=st.sampled_from([1, 2]),
    per_group_in=st.integers(1, 2),
    per_group_out=st.integers(1, 2),
    kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    stride=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    size=st.tuples(st.integers(5, 7), st.integers(5, 7)),
    seed=st.integers(0, 2**16),
)
def test_conv2d_gradients_match_finite_differences(
    groups: int,
    per_group_in: int,
    per_group_out: int,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    size: tuple[int, int],
    seed: int,
) -> None:
    layer = Conv2D(
        groups * per_group_in,
        groups * per_group_out,
        kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
    )
    x = images(np.random.default_rng(seed), (2, groups * per_group_in, *size))
    assert gradcheck(layer, x, seed=seed) < TOLERANCE


@pytest.mark.parametrize(
    "layer",
    [
        MaxPool2D(2),
        MaxPool2D(3, stride=2, padding=1),
        AvgPool2D(2),
        AvgPool2D((3, 2), stride=1, padding=(1, 1)),
        GlobalAvgPool2D(),
        Flatten(),
        Reshape((-1, 5)),
    ],
)
def test_pooling_and_reshape_gradients(layer: bpcore.layers.Layer) -> None:
    x = images(np.random.default_rng(0), (2, 3, 5, 6))
    x += np.arange(x.size).reshape(x.shape) * 1e-3  # no ties in a max window
    assert gradcheck(layer, x, seed=1) < TOLERANCE


def test_a_cnn_network_gradients_and_fusion() -> None:
    network = bpcore.Network(
        [
            Conv2D(1, 3, 3, padding="same"),
            Tanh(),
            MaxPool2D(2),
            BatchNorm(3),
            Conv2D(3, 4, 2),
            ReLU(),
            Flatten(),
            Dense(4, 2),
        ],
        dtype="float64",
        seed=0,
    )
    assert network.layers[0].activation is network.layers[1]
    assert network.layers[4].activation is network.layers[5]
    x = images(np.random.default_rng(1), (3, 1, 4, 4))
    assert gradcheck(network, x, seed=2) < 1e-5
    assert network.forward(x).shape == (3, 2)


def test_summary_lists_output_shapes_and_parameters() -> None:
    network = bpcore.Network(
        [Conv2D(1, 4, 3, padding=1), ReLU(), MaxPool2D(2), Flatten(), Dense(4 * 14 * 14, 10)]
    )
    text = network.summary((1, 28, 28))
    assert "(N, 4, 28, 28)" in text and "(N, 4, 14, 14)" in text and "(N, 784)" in text and "(N, 10)" in text
    assert f"Total parameters: {4 * 9 + 4 + 784 * 10 + 10:,}" in text
    assert "(N, 4, ?, ?)" in str(network)


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (
            np.ones((2, 3, 8, 8), np.float32),
            r"layers\[0\]: Conv2D.*expected 1 input channels.*\(N, 3, 8, 8\)",
        ),
        (np.ones((2, 8, 8), np.float32), r"layers\[0\]: Conv2D.*expected images of shape \(N, 1, H, W\)"),
        (np.ones((2, 1, 2, 2), np.float32), r"layers\[0\]: Conv2D.*kernel spans 3 pixels"),
        (np.ones((2, 1, 4, 4), np.float32), r"layers\[3\]: Dense.*expected 36 input features.*gives 16"),
        (np.ones((2, 1, 5, 5), np.int64), r"expected floating-point features"),
        (np.full((2, 1, 5, 5), np.nan, np.float32), r"NaN"),
    ],
)
def test_bad_images_are_one_clear_error_before_anything_runs(x: np.ndarray, message: str) -> None:
    network = bpcore.Network([Conv2D(1, 4, 3), ReLU(), Flatten(), Dense(36, 2)], seed=0)
    before = network.store.data.copy()
    with pytest.raises((ValueError, TypeError), match=message):
        network.forward(x)
    assert np.array_equal(before, network.store.data)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Conv2D(3, 4, 3, groups=2), r"groups=2 must divide in_channels=3"),
        (lambda: Conv2D(2, 4, 0), r"Conv2D\(kernel_size\): expected a positive"),
        (lambda: Conv2D(2, 4, 3, stride=(1, 0)), r"Conv2D\(stride\)"),
        (lambda: Conv2D(2, 4, 3, padding=-1), r"Conv2D\(padding\)"),
        (lambda: Conv2D(2, 4, 3, padding="same", stride=2), r"'same' needs stride 1"),
        (lambda: MaxPool2D(2, padding=2), r"MaxPool2D\(padding\): padding must be at most half"),
        (lambda: Reshape((2, -1, -1)), r"Reshape\(shape\)"),
    ],
)
def test_bad_layer_arguments(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


def test_cnn_saves_and_loads(tmp_path: object) -> None:
    import pathlib

    network = bpcore.Network(
        [
            Conv2D(1, 2, 3, padding="same", stride=1),
            ReLU(),
            AvgPool2D(2),
            Flatten(),
            Reshape((8,)),
            Dense(8, 3),
        ],
        seed=3,
    )
    x = images(np.random.default_rng(0), (4, 1, 4, 4)).astype(np.float32)
    path = pathlib.Path(str(tmp_path)) / "cnn.bpcore"
    bpcore.save(network, path)
    loaded = bpcore.load(path)
    np.testing.assert_array_equal(network.predict(x), loaded.predict(x))


def test_fit_predict_and_evaluate_on_images() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 1, 6, 6)).astype(np.float32)
    y = (x[:, 0, :3].mean(axis=(1, 2)) > x[:, 0, 3:].mean(axis=(1, 2))).astype(np.int64)
    network = bpcore.Network(
        [Conv2D(1, 4, 3, padding=1), ReLU(), MaxPool2D(2), Flatten(), Dense(36, 2)], seed=0
    )
    history = network.fit(
        x,
        y,
        loss="cross_entropy",
        optimizer=bpcore.optim.Adam(network.parameters()),
        epochs=3,
        batch_size=8,
        validation_split=0.25,
    )
    assert len(history.history["val_loss"]) == 3
    assert network.predict(x, batch_size=7).shape == (40, 2)
    assert set(network.evaluate(x, y, loss="cross_entropy", metrics=["accuracy"])) == {"loss", "accuracy"}


@pytest.mark.parametrize("case", range(4))
def test_matches_pytorch(case: int) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(case)
    options = [
        dict(stride=1, padding=1, dilation=1, groups=1),
        dict(stride=2, padding=0, dilation=1, groups=2),
        dict(stride=1, padding=2, dilation=2, groups=1),
        dict(stride=(2, 1), padding=(1, 0), dilation=1, groups=4),
    ][case]
    conv = Conv2D(4, 8, (3, 2), **options)  # type: ignore[arg-type]
    pools = [MaxPool2D(2), AvgPool2D(3, stride=2, padding=1), MaxPool2D(3, stride=1, padding=1), AvgPool2D(2)]
    network = bpcore.Network([conv, pools[case]], dtype="float64", seed=case)
    x = rng.standard_normal((3, 4, 9, 8))
    out = network.forward(x, training=True)
    grad = rng.standard_normal(out.shape)
    grad_x = network.backward(grad)

    reference = torch.nn.Conv2d(4, 8, (3, 2), **options).double()
    with torch.no_grad():
        reference.weight.copy_(torch.from_numpy(conv.weight.data))
        reference.bias.copy_(torch.from_numpy(conv.bias.data))
    pool_type = torch.nn.MaxPool2d if isinstance(pools[case], MaxPool2D) else torch.nn.AvgPool2d
    pool = pool_type(pools[case].kernel_size, pools[case].stride, pools[case].config()["padding"])
    tx = torch.from_numpy(x).requires_grad_(True)
    tout = pool(reference(tx))
    tout.backward(torch.from_numpy(grad))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(grad_x, tx.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(conv.weight.grad, reference.weight.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(conv.bias.grad, reference.bias.grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("kernel", "stride"), [((2, 2), (2, 2)), ((3, 2), (1, 2))])
def test_max_pool_kernels_match_their_generic_versions(dtype: type, kernel: tuple, stride: tuple) -> None:
    from bpcore.backends.ops import OPERATIONS

    rng = np.random.default_rng(0)
    image = rng.standard_normal((3, 2, 7, 8)).astype(dtype)
    image[0, 0, :2, :2] = 1.0  # a tie: the first position wins
    image[1, 0, 0, 1] = image[1, 1, 2:4, 2] = image[2, 1, 0, 0] = np.nan  # NaN: the last one wins
    oh, ow = (7 - kernel[0]) // stride[0] + 1, (8 - kernel[1]) // stride[1] + 1
    results = []
    forward, backward = OPERATIONS["max_pool2d_forward"], OPERATIONS["max_pool2d_backward"]
    for implementation in ("generic", "cpu"):
        if implementation == "generic":
            run_forward = functools.partial(forward.generic, np)
            run_backward = functools.partial(backward.generic, np)
        else:
            run_forward, run_backward = forward.cpu(), backward.cpu()  # type: ignore[misc]
        out, index = np.empty((3, 2, oh, ow), dtype), np.empty((3, 2, oh, ow), np.int64)
        run_forward(image, *kernel, *stride, out, index)
        grad = np.full(image.shape, np.nan, dtype)
        run_backward(rng.standard_normal(out.shape).astype(dtype) * 0 + 1.5, index, *kernel, *stride, grad)
        results.append((out, index, grad))
    for expected, got in zip(*results, strict=True):
        np.testing.assert_array_equal(expected, got)


@pytest.mark.parametrize("kernels", ["fused", "generic"])
@pytest.mark.parametrize(
    ("window", "where"),
    [
        ([1.0, np.nan, 0.0, 0.5], 1),
        ([np.nan, 1.0, 0.0, np.nan], 3),  # the last NaN
        ([np.nan, 2.0, 3.0, 1.0], 0),  # a NaN first stays the maximum
        ([2.0, 0.5, 2.0, 1.0], 0),  # a tie: the first maximum
    ],
)
@pytest.mark.parametrize("path", ["pool-2x2", "pool-3x3", "conv-relu-pool"])
def test_a_nan_in_a_max_pool_window_is_its_maximum_as_in_pytorch(
    kernels: str, window: list, where: int, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PyTorch takes val > maxval || isnan(val) over the window in order: NaN comes out (the
    # diverged value is not hidden) and the gradient goes to the last NaN, else to the first maximum;
    # a ReLU before the pooling passes the gradient of a NaN output on, as torch's threshold_backward.
    monkeypatch.setenv("BPCORE_KERNELS", kernels)
    if path == "pool-3x3":  # the general kernel: the 2x2 values in a 3x3 window of -1s
        image = np.full((1, 1, 3, 3), -1.0)
        image[0, 0, :2, :2] = np.reshape(window, (2, 2))
        layers: list = [MaxPool2D(3)]
        position = (where // 2, where % 2)
    else:
        image = np.reshape(np.asarray(window), (1, 1, 2, 2))
        layers = [MaxPool2D(2)]
        position = (where // 2, where % 2)
    if path == "conv-relu-pool":
        layers = [Conv2D(1, 1, 1), ReLU(), MaxPool2D(2)]
    network = bpcore.Network(layers, dtype="float64", seed=0)
    if path == "conv-relu-pool":
        conv = layers[0]
        conv.weight.data[...] = 1.0
        conv.bias.data[...] = 0.0
        assert [type(step).__name__ for step in network._plan] == ["Conv2D"]
    out = network.forward(image, training=True, check=False).copy()
    grad = network.backward(np.ones(out.shape), check=False)
    expected = window[where]
    assert out.shape == (1, 1, 1, 1)
    assert np.isnan(out[0, 0, 0, 0]) if np.isnan(expected) else out[0, 0, 0, 0] == expected
    chosen = np.zeros(image.shape)
    chosen[(0, 0, *position)] = 1.0
    np.testing.assert_array_equal(grad, chosen)


def test_dense_acts_on_the_last_axis_and_batchnorm_on_axis_1() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 5, 3))
    assert gradcheck(Dense(3, 2), x, seed=0) < TOLERANCE
    network = bpcore.Network([Dense(3, 2)], dtype="float64", seed=0)
    rows = network.forward(x.reshape(-1, 3)).reshape(2, 5, 2)
    np.testing.assert_allclose(network.forward(x), rows, rtol=1e-12)
    images_ = rng.standard_normal((4, 3, 2, 5)) * 3 + 1
    assert gradcheck(BatchNorm(3), images_, seed=0) < TOLERANCE
    norm = bpcore.Network([BatchNorm(3)], dtype="float64")
    out = norm.forward(images_, training=True)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0.0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), 1.0, rtol=1e-3)
    expected = 0.9 + 0.1 * images_.var(axis=(0, 2, 3), ddof=1)  # unbiased, as BatchNorm2d keeps it
    np.testing.assert_allclose(norm.layers[0].running_var, expected, rtol=1e-12)


@pytest.mark.parametrize("by_columns", [False, True])
@pytest.mark.parametrize(("in_channels", "out_channels", "kernel", "groups"),
                         [(1, 12, (1, 3), 1), (2, 3, 3, 1), (4, 6, (2, 1), 2)])
def test_both_weight_gradient_products_agree_and_accumulate(
    by_columns: bool, in_channels: int, out_channels: int, kernel: tuple[int, int] | int, groups: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``g @ cols.T`` and ``(cols @ g.T).T``, whichever Conv2D picks by shape, give the same gradients."""
    from bpcore.layers import conv as conv_module

    monkeypatch.setattr(conv_module, "weight_grad_by_columns", lambda out, width: by_columns)
    rng = np.random.default_rng(4)
    layer = Conv2D(in_channels, out_channels, kernel, padding=1, groups=groups)
    x = images(rng, (2, in_channels, 5, 6))
    assert gradcheck(layer, x, seed=2) < TOLERANCE
    network = bpcore.Network([Conv2D(in_channels, out_channels, kernel, padding=1, groups=groups)],
                             dtype="float64", seed=3)
    weight = network.layers[0].weight
    out = network.forward(x, training=True)
    gy = rng.standard_normal(out.shape)
    network.store.grad[...] = 0.0
    network._backward(gy, accumulate=False, need_input_grad=True)  # overwrites, as fit does
    once = weight.grad.copy()
    network._backward(gy, accumulate=True, need_input_grad=True)  # adds, as backward does
    np.testing.assert_allclose(weight.grad, 2 * once, rtol=1e-12)


@pytest.mark.parametrize("kernels", ["fused", "generic"])
@pytest.mark.parametrize(
    ("options", "activation"),
    [
        (dict(kernel_size=3, padding=1), ReLU),  # the benchmark CNNs' layer, merged runs
        (dict(kernel_size=(3, 2), stride=(2, 1), dilation=(1, 2), groups=2), Tanh),
        (dict(kernel_size=1, bias=False), None),  # width 4 < 6 output channels: g @ cols.T
    ],
)
def test_a_batch_in_parts_gives_what_one_pass_gives(
    kernels: str, options: dict, activation: type | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Conv2D's CPU passes over parts of the batch (the last one shorter) change no result."""
    from bpcore.layers import conv as conv_module

    monkeypatch.setenv("BPCORE_KERNELS", kernels)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((5, 4, 7, 6))
    probe = Conv2D(4, 6, **options)
    _, oh, ow = probe.output_shape((4, 7, 6))
    per_sample = max(probe.weight.size // 6 * probe.groups, 6) * oh * ow * 8  # float64 bytes
    results = []
    for part_bytes in (1 << 40, 1, 2 * per_sample + 1):  # one pass; one sample a part; two samples a part
        monkeypatch.setattr(conv_module, "CHUNK_BYTES", part_bytes)
        layers = [Conv2D(4, 6, **options)] + ([activation()] if activation else [])
        network = bpcore.Network([*layers, Flatten()], dtype="float64", seed=5)
        conv = network.layers[0]
        out = network.forward(x, training=True).copy()
        gy = np.random.default_rng(12).standard_normal(out.shape)
        network.store.grad[...] = 0.5
        grad_x = network._backward(gy, accumulate=True, need_input_grad=True).copy()
        added = network.store.grad.copy()
        network._backward(gy, accumulate=False, need_input_grad=False)
        results.append((out, grad_x, added, network.store.grad.copy()))
        # one pass keeps the im2col matrix for the backward; parts gather it again
        n_part = conv._geometry[2]
        assert n_part == (5 if part_bytes > 1 << 30 else 1 if part_bytes == 1 else 2)
    for one_pass, parts in ((results[0], r) for r in results[1:]):
        for expected, got in zip(one_pass, parts, strict=True):
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert gradcheck(Conv2D(4, 6, **options), x[:3], seed=1) < TOLERANCE  # two parts, as CHUNK_BYTES is set


@pytest.mark.parametrize("accumulate", [False, True])
def test_an_empty_batch_gives_zero_gradients_or_adds_nothing(accumulate: bool) -> None:
    # A layer called directly with no samples runs no part of the batch: the gradients it writes
    # (accumulate=False) are zeros, as one pass over an empty batch gave, and it adds nothing otherwise.
    net = bpcore.Network([Conv2D(2, 3, 3, padding=1)], dtype="float64", seed=0)
    conv = net.layers[0]
    net.store.grad[...] = 7.0
    out = conv.forward(np.zeros((0, 2, 5, 5)), True)
    grad_in = conv.backward(np.zeros(out.shape), accumulate=accumulate)
    assert out.shape == (0, 3, 5, 5) and grad_in.shape == (0, 2, 5, 5)
    np.testing.assert_array_equal(net.store.grad, 7.0 if accumulate else 0.0)


def test_small_products_run_on_one_blas_thread_and_the_count_is_restored():
    """Conv2D's and Dense's products that OpenBLAS would split, up to SMALL_PRODUCT, run on one thread."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from bpcore.backends import blas_threads
    from bpcore.layers import conv, dense

    controller = threadpoolctl.ThreadpoolController().select(user_api="blas")
    if not controller.lib_controllers:
        pytest.skip("no BLAS library seen by threadpoolctl")
    seen: list[int] = []
    matmul = np.matmul

    def counting(*args, **kwargs):
        seen.append(controller.lib_controllers[0].get_num_threads())
        return matmul(*args, **kwargs)

    layers = [Conv2D(1, 16, 3, padding=1), ReLU(), Flatten(), Dense(1024, 10)]
    network = bpcore.Network(layers, dtype="float32", seed=0)
    n = 64
    for multiply_adds, most in ((16 * 9 * n * 64, conv.SMALL_PRODUCT), (n * 1024 * 10, dense.SMALL_PRODUCT)):
        assert blas_threads.SPLIT_FROM < multiply_adds <= most
    x = np.random.default_rng(0).standard_normal((n, 1, 8, 8)).astype(np.float32)
    with controller.limit(limits=2):
        before = controller.lib_controllers[0].get_num_threads()
        expected = network.forward(x, training=True).copy()
        network.backward(np.ones_like(expected))
        grads = network.store.grad.copy()
        network.zero_grad()
        np.matmul = counting  # the layers call xp.matmul, xp being NumPy
        try:
            np.testing.assert_array_equal(network.forward(x, training=True), expected)
            network.backward(np.ones_like(expected))
        finally:
            np.matmul = matmul
        np.testing.assert_array_equal(network.store.grad, grads)
        assert len(seen) >= 5 and set(seen) == {1}
        assert controller.lib_controllers[0].get_num_threads() == before


@pytest.mark.parametrize("kernels", ["fused", "generic"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("size", [(8, 6), (7, 6)])  # even: pooled inside the convolution; odd: the layers run
@pytest.mark.parametrize("part_bytes", [1 << 40, 1])  # one pass; one sample a part
def test_a_relu_and_a_two_by_two_max_pool_fused_into_the_convolution_change_no_result(
    kernels: str, dtype: str, size: tuple, part_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bpcore.layers import conv as conv_module

    monkeypatch.setenv("BPCORE_KERNELS", kernels)
    monkeypatch.setattr(conv_module, "CHUNK_BYTES", part_bytes)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, *size)).astype(dtype)
    results = []
    for fuse in (True, False):
        if not fuse:  # the reference: the same layers, the pool run on its own
            monkeypatch.setattr(Conv2D, "absorb_after", lambda self, following: False)
        layers = [Conv2D(2, 4, 3, padding=1), ReLU(), MaxPool2D(2), Conv2D(4, 3, 1), ReLU(), Flatten()]
        network = bpcore.Network(layers, dtype=dtype, seed=5)
        assert (network.layers[0].pool is network.layers[2]) == fuse
        assert network.layers[3].pool is None  # nothing to pool after it
        out = network.forward(x, training=True).copy()
        gy = np.random.default_rng(12).standard_normal(out.shape).astype(dtype)
        network.store.grad[...] = 0.5
        grad_x = network._backward(gy, accumulate=True, need_input_grad=True).copy()
        added = network.store.grad.copy()
        network._backward(gy, accumulate=False, need_input_grad=False)
        results.append((out, grad_x, added, network.store.grad.copy()))
    for position, (fused, reference) in enumerate(zip(*results, strict=True)):
        if position < 2:  # the bias-gradient sums may be added in another order; all else is exact
            np.testing.assert_array_equal(fused, reference)
        else:
            rtol = 1e-5 if dtype == "float32" else 1e-12
            np.testing.assert_allclose(fused, reference, rtol=rtol, atol=1e-6)


def test_only_a_relu_and_a_two_by_two_stride_two_max_pool_fuse_into_a_convolution() -> None:
    def plan(*layers: bpcore.layers.Layer) -> list[str]:
        network = bpcore.Network([Conv2D(1, 2, 3, padding=1), *layers], dtype="float64", seed=0)
        return [type(layer).__name__ for layer in network._plan]

    assert plan(ReLU(), MaxPool2D(2)) == ["Conv2D"]
    assert plan(ReLU(), MaxPool2D(2, stride=1)) == ["Conv2D", "MaxPool2D"]
    assert plan(ReLU(), MaxPool2D(3, stride=2, padding=1)) == ["Conv2D", "MaxPool2D"]
    assert plan(ReLU(), AvgPool2D(2)) == ["Conv2D", "AvgPool2D"]
    assert plan(Tanh(), MaxPool2D(2)) == ["Conv2D", "MaxPool2D"]
    assert plan(MaxPool2D(2)) == ["Conv2D", "MaxPool2D"]
    network = bpcore.Network([Conv2D(1, 2, 3, padding=1), ReLU(), MaxPool2D(2), Flatten(), Dense(8, 2)],
                             dtype="float64", seed=0)
    assert gradcheck(network, images(np.random.default_rng(1), (2, 1, 4, 4)), seed=2) < TOLERANCE
