"""Layers: gradients against finite differences, reference values, modes and bad input."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bpcore
from bpcore.gradcheck import gradcheck
from bpcore.layers import (
    ELU,
    GELU,
    BatchNorm,
    Concatenate,
    Conv2D,
    Dense,
    Dropout,
    GlobalAvgPool2D,
    Identity,
    Layer,
    LeakyReLU,
    ReLU,
    Residual,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Tanh,
)

TOLERANCE = 1e-5  # worst relative error a correct float64 backward pass stays below

ACTIVATIONS = {
    "identity": Identity,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "relu": ReLU,
    "leaky_relu": lambda: LeakyReLU(0.2),
    "elu": lambda: ELU(0.7),
    "gelu": GELU,
    "gelu_tanh": lambda: GELU("tanh"),
    "silu": SiLU,
    "softplus": Softplus,
    "softmax": Softmax,
}


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def _gelu(x: np.ndarray) -> np.ndarray:
    """x * Phi(x), with the standard library's erf, value by value."""
    return np.array([v * (1 + math.erf(v / math.sqrt(2))) / 2 for v in x.ravel()]).reshape(x.shape)


REFERENCE = {
    "identity": lambda x: x,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.2 * x),
    "elu": lambda x: np.where(x > 0, x, 0.7 * np.expm1(np.minimum(x, 0))),
    "gelu": _gelu,
    "gelu_tanh": _gelu_tanh,
    "silu": lambda x: x / (1 + np.exp(-x)),
    "softplus": lambda x: np.log1p(np.exp(x)),
    "softmax": lambda x: (
        np.exp(x - x.max(1, keepdims=True)) / np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True)
    ),
}

shapes = st.tuples(st.integers(2, 6), st.integers(1, 6))
seeds = st.integers(0, 2**31 - 1)
fast = settings(max_examples=12, deadline=None)


def inputs(shape: tuple[int, ...], seed: int, scale: float = 2.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, scale, size=shape)


# --- gradients ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@fast
@given(shape=shapes, seed=seeds)
def test_activation_gradients(name: str, shape: tuple[int, int], seed: int) -> None:
    # A step of 1e-5, not gradcheck's default 1e-6: where tanh saturates (|x| near 5.6, tanh' about 6e-5) the
    # float64 rounding of the difference quotient at 1e-6 reaches 1.1e-5 of the error floor (seed 390, shape
    # (6, 6)); at 1e-5 rounding and truncation balance, and the worst error over 800 seeds of every
    # activation here is 1.2e-6.
    assert gradcheck(ACTIVATIONS[name](), inputs(shape, seed), seed=seed, eps=1e-5) < TOLERANCE


@fast
@given(shape=shapes, out=st.integers(1, 6), bias=st.booleans(), seed=seeds)
def test_dense_gradients(shape: tuple[int, int], out: int, bias: bool, seed: int) -> None:
    assert gradcheck(Dense(shape[1], out, bias=bias), inputs(shape, seed), seed=seed) < TOLERANCE


@fast
@given(shape=shapes, p=st.sampled_from([0.0, 0.3, 0.7]), training=st.booleans(), seed=seeds)
def test_dropout_gradients_with_a_fixed_mask(
    shape: tuple[int, int], p: float, training: bool, seed: int
) -> None:
    assert gradcheck(Dropout(p), inputs(shape, seed), seed=seed, training=training) < TOLERANCE


@fast
@given(shape=shapes, training=st.booleans(), seed=seeds)
def test_batchnorm_gradients(shape: tuple[int, int], training: bool, seed: int) -> None:
    x = inputs(shape, seed) + 1.5
    assert gradcheck(BatchNorm(shape[1]), x, seed=seed, training=training) < TOLERANCE


@fast
@given(shape=shapes, hidden=st.integers(1, 5), seed=seeds)
def test_residual_gradients(shape: tuple[int, int], hidden: int, seed: int) -> None:
    f = shape[1]
    layer = Residual(Dense(f, hidden), Tanh(), Dense(hidden, f), BatchNorm(f), SiLU())
    assert gradcheck(layer, inputs(shape, seed), seed=seed) < TOLERANCE


@fast
@given(
    n=st.integers(2, 5), width=st.integers(1, 5), activation=st.sampled_from(sorted(ACTIVATIONS)), seed=seeds
)
def test_fused_dense_activation_gradients_in_a_network(
    n: int, width: int, activation: str, seed: int
) -> None:
    network = bpcore.Network(
        [Dense(3, width), ACTIVATIONS[activation](), Dense(width, 2)], dtype="float64", seed=seed
    )
    assert network._plan[0].activation is not None or activation == "softmax"
    assert gradcheck(network, inputs((n, 3), seed), seed=seed) < TOLERANCE


# --- values -----------------------------------------------------------------------


def built(layer: Layer, dtype: str = "float64") -> Layer:
    """``layer`` built standalone (with its own parameter store) for direct forward calls."""
    network = bpcore.Network([layer], dtype=dtype, seed=0)
    assert network.layers[0] is layer
    return layer


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_activation_values_match_the_formulas(name: str, dtype: str) -> None:
    x = inputs((7, 5), 3, scale=4.0)
    x[0, :3] = [-60.0, 0.0, 60.0]  # the tails must not overflow
    layer = built(ACTIVATIONS[name](), dtype)
    got = layer.forward(x.astype(dtype), False)
    expected = REFERENCE[name](x)
    tolerance = 1e-6 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(got, expected, rtol=tolerance * 10, atol=tolerance)
    assert got.dtype == np.dtype(dtype)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dense_fused_equals_unfused(name: str, dtype: str) -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, 4)).astype(dtype)
    g = rng.normal(size=(6, 3)).astype(dtype)
    dense, activation = Dense(4, 3), ACTIVATIONS[name]()
    network = bpcore.Network([dense, activation], dtype=dtype, seed=1)
    fused = dense.activation is activation
    assert fused == (name != "softmax")  # softmax is not elementwise, so it is never fused
    y_fused = network.forward(x)
    gx_fused = network.backward(g)
    grads_fused = network.store.grad.copy()

    dense.fuse(None)  # run the same two layers one after the other
    network.zero_grad()
    y_plain = activation.forward(dense.forward(x, False), False).copy()
    gx_plain = dense.backward(activation.backward(g), accumulate=True).copy()
    tolerance = 1e-6 if dtype == "float32" else 1e-14
    np.testing.assert_allclose(y_fused, y_plain, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(gx_fused, gx_plain, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(grads_fused, network.store.grad, rtol=tolerance, atol=tolerance)

    weight, bias = dense.weight.data, dense.bias.data
    np.testing.assert_allclose(
        y_plain, REFERENCE[name](x.astype(np.float64) @ weight + bias), rtol=1e-5, atol=1e-6
    )


def test_dense_without_bias_is_not_fused_and_computes_x_at_w() -> None:
    dense = Dense(3, 2, bias=False)
    network = bpcore.Network([dense, ReLU()], dtype="float64", seed=0)
    assert dense.activation is None and len(network._plan) == 2
    x = inputs((4, 3), 0)
    np.testing.assert_allclose(network.forward(x), np.maximum(x @ dense.weight.data, 0))
    assert dense.parameters() == [dense.weight]


@pytest.mark.parametrize("momentum", [0.1, 0.5])
def test_batchnorm_matches_a_hand_computed_reference(momentum: float) -> None:
    layer = BatchNorm(3, momentum=momentum, eps=1e-3)
    network = bpcore.Network([layer], dtype="float64", seed=0)
    layer.gamma.data[...] = [1.0, 2.0, -0.5]
    layer.beta.data[...] = [0.0, 0.5, 1.0]
    rng = np.random.default_rng(0)
    running_mean, running_var = np.zeros(3), np.ones(3)
    for step in range(3):
        x = rng.normal(step, 1.0 + step, size=(8, 3))
        y = network.forward(x, training=True)
        mean, var = x.mean(0), x.var(0)
        np.testing.assert_allclose(y, layer.gamma.data * (x - mean) / np.sqrt(var + 1e-3) + layer.beta.data)
        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var = (1 - momentum) * running_var + momentum * x.var(0, ddof=1)
        np.testing.assert_allclose(layer.running_mean, running_mean)
        np.testing.assert_allclose(layer.running_var, running_var)
    x = rng.normal(size=(4, 3))
    expected = layer.gamma.data * (x - running_mean) / np.sqrt(running_var + 1e-3) + layer.beta.data
    np.testing.assert_allclose(network.forward(x), expected)
    np.testing.assert_allclose(layer.running_mean, running_mean)  # evaluation does not update them
    assert set(layer.buffers()) == {"running_mean", "running_var"}


def test_batchnorm_buffers_round_trip_and_reject_bad_values() -> None:
    layer = BatchNorm(2)
    bpcore.Network([layer], dtype="float32", seed=0)
    layer.set_buffer("running_mean", [1.0, 2.0])
    assert layer.running_mean.dtype == np.float32 and layer.running_mean.tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match=r"running_var must have shape \(2,\), got \(3,\)"):
        layer.set_buffer("running_var", np.ones(3))
    with pytest.raises(KeyError, match="no buffer 'mean'"):
        layer.set_buffer("mean", np.ones(2))
    assert layer.gamma.decay is False and layer.beta.decay is False


def test_batchnorm_refuses_a_batch_of_one_in_training_and_changes_nothing() -> None:
    layer = BatchNorm(3)
    network = bpcore.Network([Dense(2, 3), layer], seed=0)
    before = network.store.data.copy(), layer.running_mean.copy(), layer.running_var.copy()
    with pytest.raises(ValueError, match=r"more than 1 value per channel.*\(1, 2\)"):
        network.forward(np.ones((1, 2), np.float32), training=True)
    with pytest.raises(ValueError, match=r"BatchNorm.*more than 1 value per channel"):
        layer.forward(np.ones((1, 3), np.float32), True)
    after = network.store.data, layer.running_mean, layer.running_var
    for old, new in zip(before, after, strict=True):
        np.testing.assert_array_equal(old, new)
    assert network.forward(np.ones((1, 2), np.float32)).shape == (1, 3)  # evaluation is fine


def test_batchnorm_trains_on_one_image_as_pytorch_does() -> None:
    """Over (N, C, H, W) the statistics are over N * H * W values: one image of 2 x 3 pixels is a batch."""
    rng = np.random.default_rng(4)
    layer = BatchNorm(2, momentum=0.25)
    network = bpcore.Network([layer], dtype="float64", seed=0)
    x = rng.standard_normal((1, 2, 2, 3)) * 3 + 1
    out = network.forward(x, training=True)
    values = x.transpose(1, 0, 2, 3).reshape(2, -1)  # per channel, its 6 values
    mean, var = values.mean(axis=1), values.var(axis=1)
    expected = (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.running_mean, 0.25 * mean, rtol=1e-12)
    np.testing.assert_allclose(layer.running_var, 0.75 + 0.25 * values.var(axis=1, ddof=1), rtol=1e-12)
    # The gradient of the sum of the outputs is zero (each channel's normalised values sum to zero).
    np.testing.assert_allclose(network.backward(np.ones_like(out)), 0.0, atol=1e-12)
    assert gradcheck(network, x, training=True) < TOLERANCE


@pytest.mark.parametrize(
    "layers, shape",
    [
        # (1, C) at the BatchNorm, after the pooling
        (lambda: [Conv2D(1, 2, 3, padding=1), GlobalAvgPool2D(), BatchNorm(2)], (1, 1, 4, 4)),
        (lambda: [BatchNorm(1)], (1, 1, 1, 1)),  # one pixel of one image
        # a BatchNorm in a Concatenate branch sees one value, the one before it nine
        (lambda: [Conv2D(1, 2, 1), BatchNorm(2),
                  Concatenate(GlobalAvgPool2D(), [GlobalAvgPool2D(), BatchNorm(2)])], (1, 1, 3, 3)),
        # in a Residual
        (lambda: [Conv2D(1, 2, 1), Residual(BatchNorm(2)), GlobalAvgPool2D(),
                  Residual(Dense(2, 2), BatchNorm(2))], (1, 1, 3, 3)),
    ],
)
def test_batchnorm_refuses_one_value_per_channel_wherever_it_sits(layers: Any, shape: Any) -> None:
    network = bpcore.Network(layers(), seed=0)
    before = network.store.data.copy()
    running = [layer.running_mean.copy() for layer in network.walk() if isinstance(layer, BatchNorm)]
    with pytest.raises(ValueError, match=r"^x: BatchNorm needs more than 1 value per channel.*1 value\(s\)"):
        network.forward(np.ones(shape, np.float32), training=True)
    np.testing.assert_array_equal(network.store.data, before)
    after = [layer.running_mean for layer in network.walk() if isinstance(layer, BatchNorm)]
    for old, new in zip(running, after, strict=True):  # no running statistics moved before the refusal
        np.testing.assert_array_equal(old, new)
    two_images = np.ones((2, *shape[1:]), np.float32) + np.arange(2).reshape(2, 1, 1, 1)
    assert network.forward(two_images, training=True).ndim >= 2  # two samples are a batch


def test_fit_trains_a_convolutional_batchnorm_network_one_image_at_a_time() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((5, 1, 4, 4)), np.array([0, 1, 0, 1, 1])
    layers = [Conv2D(1, 3, 3, padding=1), BatchNorm(3), ReLU(), GlobalAvgPool2D(), Dense(3, 2)]
    network = bpcore.Network(layers, seed=0)
    history = network.fit(x, y, loss="cross_entropy", optimizer=bpcore.optim.Adam(network.parameters()),
                          epochs=2, batch_size=1, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
    flat = bpcore.Network([Dense(16, 3), BatchNorm(3), Dense(3, 2)], seed=0)
    with pytest.raises(ValueError, match=r"batch_size: BatchNorm needs at least 2 samples"):
        flat.fit(x.reshape(5, 16), y, loss="cross_entropy", optimizer=bpcore.optim.Adam(flat.parameters()),
                 epochs=1, batch_size=1, verbose=0)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_dropout_statistics_and_inverted_scaling(p: float) -> None:
    network = bpcore.Network([Dropout(p)], dtype="float64", seed=0)
    x = np.full((400, 250), 3.0)
    y = network.forward(x, training=True)
    dropped = y == 0
    assert abs(dropped.mean() - p) < 0.01  # 100,000 draws: the standard error is below 0.0016
    np.testing.assert_allclose(y[~dropped], 3.0 / (1 - p))
    assert abs(y.mean() - 3.0) < 0.1  # expectation preserved
    g = network.backward(np.ones_like(x))
    np.testing.assert_array_equal(g == 0, dropped)  # the backward pass uses the same mask
    np.testing.assert_allclose(g[~dropped], 1 / (1 - p))


def test_dropout_is_the_identity_in_evaluation_and_at_p0() -> None:
    x = inputs((5, 4), 1)
    layer = Dropout(0.5)
    network = bpcore.Network([layer], dtype="float64", seed=0)
    np.testing.assert_array_equal(network.forward(x), x)
    assert layer._mask is None
    np.testing.assert_array_equal(network.backward(x), x)
    zero = bpcore.Network([Dropout(0.0)], dtype="float64", seed=0)
    np.testing.assert_array_equal(zero.forward(x, training=True), x)


def test_dropout_masks_follow_the_network_seed() -> None:
    x = np.ones((20, 10), np.float32)

    def masks(seed: int) -> list[np.ndarray]:
        network = bpcore.Network([Dense(10, 10), Dropout(0.5)], seed=seed)
        return [network.forward(x, training=True) == 0 for _ in range(3)]

    first, again, other = masks(1), masks(1), masks(2)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], first[1])  # a fresh mask every step
    assert not np.array_equal(first[0], other[0])


@pytest.mark.parametrize(
    ("p", "error"),
    [
        (-0.1, ValueError),
        (1.0, ValueError),
        (float("nan"), ValueError),
        ("0.5", TypeError),
        (True, TypeError),
    ],
)
def test_dropout_rejects_bad_probabilities(p: object, error: type) -> None:
    with pytest.raises(error, match=r"Dropout\(p\)"):
        Dropout(p)  # type: ignore[arg-type]


def test_residual_adds_the_input_and_shares_the_flat_buffer() -> None:
    inner = Dense(4, 4)
    residual = Residual(inner, Tanh())
    network = bpcore.Network([Dense(3, 4), residual, Dense(4, 2)], dtype="float64", seed=0)
    assert inner.activation is residual.layers[1]  # fused as in a network
    assert list(network.walk())[1:4] == [residual, inner, residual.layers[1]]
    for parameter in network.parameters():
        assert np.shares_memory(parameter.data, network.store.data)
    assert inner.weight in network.parameters()
    x = inputs((5, 3), 0)
    h = x @ network.layers[0].weight.data + network.layers[0].bias.data
    expected_h = h + np.tanh(h @ inner.weight.data + inner.bias.data)
    np.testing.assert_allclose(residual.forward(h, False), expected_h)
    assert gradcheck(network, x, seed=0) < TOLERANCE


def test_residual_accepts_a_list_and_nests() -> None:
    block = Residual([Residual(Dense(3, 3), ReLU()), Dense(3, 3)])
    network = bpcore.Network([block], dtype="float64", seed=0)
    assert len(network.parameters()) == 4 and len(list(network.walk())) == 5
    assert gradcheck(network, inputs((4, 3), 1), seed=1) < TOLERANCE


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ((Dense(4, 5),), r"maps 4 features to 5"),
        ((ReLU(), Dense(3, 2)), r"maps 3 features to 2"),
        ((Dense(4, 4), Dense(5, 4)), r"Residual layers\[1\].*expected 5 input features.*gives 4"),
    ],
)
def test_residual_width_errors_at_build(layers: tuple[Layer, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bpcore.Network([Residual(*layers)])


def test_residual_rejects_empty_bad_and_repeated_layers() -> None:
    with pytest.raises(ValueError, match="at least one layer"):
        Residual()
    with pytest.raises(TypeError, match=r"layers\[1\] must be a bpcore Layer, got str"):
        Residual(ReLU(), "tanh")  # type: ignore[arg-type]
    relu = ReLU()
    with pytest.raises(ValueError, match="appears twice"):
        Residual(relu, relu)
    with pytest.raises(ValueError, match="appears twice"):
        bpcore.Network([Dense(2, 2), relu, Residual(relu)])


# --- float32 against float64 ------------------------------------------------------


def test_float32_forward_and_backward_match_float64() -> None:
    def make(dtype: str) -> bpcore.Network:
        return bpcore.Network(
            [
                Dense(6, 16),
                GELU(),
                BatchNorm(16),
                Residual(Dense(16, 16), SiLU()),
                Dense(16, 8),
                ELU(),
                Dense(8, 3),
                Softmax(),
            ],
            dtype=dtype,
            seed=7,
        )

    x = inputs((10, 6), 2)
    g = inputs((10, 3), 3)
    low, high = make("float32"), make("float64")
    np.testing.assert_allclose(low.store.data, high.store.data, rtol=1e-7, atol=1e-7)  # same start
    for training in (False, True):
        np.testing.assert_allclose(low.forward(x, training), high.forward(x, training), rtol=2e-4, atol=1e-5)
        np.testing.assert_allclose(low.backward(g), high.backward(g), rtol=2e-3, atol=1e-5)
    np.testing.assert_allclose(low.store.grad, high.store.grad, rtol=2e-3, atol=1e-4)


# --- construction errors and misuse -------------------------------------------------


def test_gelu_takes_pytorch_forms_and_default() -> None:
    assert GELU().approximate == "none" and GELU().kind == "gelu_erf"  # PyTorch's default: the exact form
    assert GELU("tanh").kind == "gelu" and GELU(approximate="tanh").config() == {"approximate": "tanh"}
    with pytest.raises(ValueError, match=r"GELU\(approximate\): expected one of 'none', 'tanh', got 'fast'"):
        GELU("fast")
    x = np.linspace(-4, 4, 9)
    exact, tanh = (built(GELU(form)).forward(x, False).copy() for form in ("none", "tanh"))
    assert 0 < np.abs(exact - tanh).max() < 1e-3  # the approximation is close, and not the same


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gelu_generic_erf_without_scipy_matches_scipy(dtype: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The generic exact GELU (no compiled kernel): SciPy's erf, or the standard library's without SciPy."""
    import sys

    pytest.importorskip("scipy.special")
    from bpcore.backends.ops import OPERATIONS

    forward, backward = OPERATIONS["gelu_erf_forward"].generic, OPERATIONS["gelu_erf_backward"].generic
    x = inputs((5, 4), 8, scale=3.0).astype(dtype)
    gy = inputs((5, 4), 9).astype(dtype)
    with_scipy = forward(np, x, np.empty_like(x)), backward(np, gy, x, np.empty_like(x))
    monkeypatch.setitem(sys.modules, "scipy.special", None)  # import scipy.special now fails
    without = forward(np, x, np.empty_like(x)), backward(np, gy, x, np.empty_like(x))
    for a, b in zip(with_scipy, without, strict=True):
        assert a.dtype == b.dtype == np.dtype(dtype)
        np.testing.assert_allclose(a, b, rtol=1e-6 if dtype == "float32" else 1e-14, atol=1e-7)
    np.testing.assert_allclose(without[0], _gelu(x.astype(np.float64)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: ELU(0.0), ValueError, r"ELU\(alpha\): expected a positive number"),
        (lambda: ELU(float("inf")), ValueError, r"ELU\(alpha\): expected a finite number"),
        (
            lambda: LeakyReLU("a"),
            TypeError,
            r"LeakyReLU\(negative_slope\): expected a finite number, got 'a'",
        ),
        (lambda: Softmax(1.5), TypeError, r"Softmax\(axis\): expected an integer"),
        (lambda: Dense(0, 3), ValueError, r"Dense\(in_features\): expected a positive integer, got 0"),
        (lambda: Dense(3, 2.5), TypeError, r"Dense\(out_features\): expected a positive integer, got 2.5"),
        (lambda: Dense(3, 2, init="glorot"), ValueError, r"init: expected one of"),
        (lambda: BatchNorm(0), ValueError, r"BatchNorm\(num_features\): expected a positive integer"),
        (
            lambda: BatchNorm(3, momentum=1.5),
            ValueError,
            r"BatchNorm\(momentum\): expected a finite number in \[0, 1\], got 1.5",
        ),
        (lambda: BatchNorm(3, eps=0), ValueError, r"BatchNorm\(eps\): expected a finite number > 0, got 0"),
        (
            lambda: BatchNorm(3, eps="x"),
            TypeError,
            r"BatchNorm\(eps\): expected a finite number > 0, got 'x'",
        ),
    ],
)
def test_layer_constructor_errors(make, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        (
            [Dense(3, 4), Dense(5, 2)],
            r"layers\[1\]: Dense\(in_features=5.*expected 5 input features.*gives 4",
        ),
        (
            [Dense(3, 4), BatchNorm(3)],
            r"layers\[1\]: BatchNorm\(num_features=3.*expected 3 input features.*gives 4",
        ),
    ],
)
def test_mismatched_widths_fail_at_construction(layers: list[Layer], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bpcore.Network(layers)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Dense(3, 3),
        Tanh,
        Softplus,
        Softmax,
        lambda: Dropout(0.5),
        lambda: BatchNorm(3),
        lambda: Residual(Dense(3, 3)),
    ],
)
def test_backward_before_forward_is_a_clear_error(make) -> None:
    layer = make()
    network = bpcore.Network([layer], seed=0)
    with pytest.raises(RuntimeError, match=r"backward\(\) called before forward\(\)"):
        layer.backward(np.ones((2, 3), np.float32))
    with pytest.raises(RuntimeError, match=r"Network.backward\(\): called before forward\(\)"):
        network.backward(np.ones((2, 3), np.float32))


def test_an_unbuilt_layer_says_it_must_join_a_network() -> None:
    with pytest.raises(AttributeError, match=r"not built yet.*bpcore\.Network"):
        Tanh().forward(np.ones((2, 2)), False)
    assert not hasattr(Dense(2, 2), "backend")
