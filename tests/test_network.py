"""Network: the flat buffers, forward/backward bookkeeping, bad input and threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import bpcore
from bpcore.layers import BatchNorm, Dense, Dropout, ReLU, Residual, Sigmoid, Tanh


def make(seed: int = 0, dtype: str = "float32") -> bpcore.Network:
    return bpcore.Network(
        [Dense(4, 8), ReLU(), BatchNorm(8), Dropout(0.2), Residual(Dense(8, 8), Tanh()), Dense(8, 3)],
        dtype=dtype,
        seed=seed,
    )


def data(n: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)).astype(np.float32), rng.normal(size=(n, 3)).astype(np.float32)


def test_parameters_are_views_of_one_flat_buffer() -> None:
    network = make()
    store = network.store
    parameters = network.parameters()
    assert len(parameters) == 8 and store.size == sum(p.size for p in parameters)
    offset = 0
    for parameter in parameters:
        assert parameter.offset == offset
        offset += parameter.size
        assert np.shares_memory(parameter.data, store.data) and np.shares_memory(parameter.grad, store.grad)
        assert parameter.data.dtype == np.float32 and parameter.data.shape == parameter.shape
    store.data[:] = 1.5
    assert all(np.all(p.data == 1.5) for p in parameters)
    parameters[0].grad[...] = 2.0
    assert np.count_nonzero(store.grad) == parameters[0].size


def test_backward_accumulates_and_zero_grad_clears_everything() -> None:
    network = make()
    x, y = data()
    out = network.forward(x, training=True)
    network.backward(out - y)
    first = network.store.grad.copy()
    assert np.count_nonzero(first) > 0
    network.forward(x)  # evaluation mode: BatchNorm uses its running statistics, dropout is off
    network.zero_grad()
    assert not network.store.grad.any()
    grad_out = network.forward(x) - y
    network.backward(grad_out)
    once = network.store.grad.copy()
    network.backward(grad_out)
    np.testing.assert_allclose(network.store.grad, 2 * once, rtol=1e-6)


def test_same_seed_same_network_different_seed_different() -> None:
    a, b, c = make(1), make(1), make(2)
    np.testing.assert_array_equal(a.store.data, b.store.data)
    assert not np.array_equal(a.store.data, c.store.data)
    x, _ = data()
    np.testing.assert_array_equal(a.forward(x, training=True), b.forward(x, training=True))


def test_forward_and_backward_return_fresh_arrays() -> None:
    network = make()
    x, y = data()
    first = network.forward(x)
    kept = first.copy()
    grad = network.backward(first - y)
    kept_grad = grad.copy()
    first[...] = 99.0  # the caller owns the result ...
    grad[...] = 99.0
    second = network.forward(x)
    np.testing.assert_array_equal(second, kept)  # ... and writing to it changes nothing inside
    network.forward(x + 1)
    np.testing.assert_array_equal(second, kept)  # a later forward leaves earlier results alone
    network.forward(x)
    np.testing.assert_array_equal(network.backward(kept - y), kept_grad)


def test_predict_returns_a_fresh_array() -> None:
    try:
        from bpcore.training import predict  # noqa: F401
    except ImportError:
        pytest.skip("bpcore.training.predict is not available")
    network = make()
    x, _ = data(10)
    first = np.asarray(network.predict(x, batch_size=3))
    np.testing.assert_allclose(first, network.forward(x), rtol=1e-5, atol=1e-6)  # batches round differently
    first[...] = 0
    assert np.asarray(network.predict(x)).any()


def test_input_is_converted_to_the_network_dtype() -> None:
    network = make(dtype="float64")
    x, _ = data()
    assert network.forward(x).dtype == np.float64
    assert network.forward(x.tolist()).dtype == np.float64
    assert network.in_features == 4 and network.out_features == 3


@pytest.mark.parametrize(
    ("x", "error", "message"),
    [
        (np.ones((4,), np.float32), ValueError, r"x: expected an array with the samples.*\(4,\)"),
        (np.ones((2, 4, 1), np.float32), ValueError, r"x: got shape \(2, 4, 1\); layers\[0\].*gives 1"),
        (np.ones((3, 5), np.float32), ValueError, r"x: expected 4 features per sample, got shape \(3, 5\)"),
        (np.ones((0, 4), np.float32), ValueError, r"x: expected at least one sample, got shape \(0, 4\)"),
        (np.full((2, 4), np.nan, np.float32), ValueError, r"x: contains NaN or Inf.*\(2, 4\)"),
        (np.full((2, 4), np.inf), ValueError, r"x: contains NaN or Inf"),
        (np.ones((2, 4), np.int64), TypeError, r"x: expected floating-point features, got dtype int64"),
        (np.array([["a"] * 4]), TypeError, r"x: expected floating-point features"),
    ],
)
def test_bad_input_is_one_clear_error_and_changes_nothing(x: np.ndarray, error: type, message: str) -> None:
    network = make()
    network.forward(data()[0], training=True)
    batchnorm = network.layers[2]
    before = network.store.data.copy(), network.store.grad.copy(), batchnorm.running_mean.copy()
    for training in (False, True):
        with pytest.raises(error, match=message):
            network.forward(x, training=training)
    np.testing.assert_array_equal(network.store.data, before[0])
    np.testing.assert_array_equal(network.store.grad, before[1])
    np.testing.assert_array_equal(batchnorm.running_mean, before[2])


def test_backward_checks_its_gradient_and_the_order_of_calls() -> None:
    network = make()
    with pytest.raises(RuntimeError, match=r"Network.backward\(\): called before forward\(\)"):
        network.backward(np.ones((6, 3), np.float32))
    network.forward(data()[0])
    with pytest.raises(
        ValueError,
        match=r"grad_out: expected the shape of the last forward\(\) output \(6, 3\), "
        r"got \(6, 2\)",
    ):
        network.backward(np.ones((6, 2), np.float32))
    assert not network.store.grad.any()


@pytest.mark.parametrize(
    ("make_layers", "options", "error", "message"),
    [
        (lambda: [], {}, ValueError, "layers: expected at least one layer"),
        (lambda: [Dense(2, 2), "relu"], {}, TypeError, r"layers\[1\]: expected a bpcore Layer, got str"),
        (lambda: [Dense(2, 2)], {"dtype": "float16"}, ValueError, "dtype: expected 'float32' or 'float64'"),
        (lambda: [Dense(2, 2)], {"dtype": "int32"}, ValueError, "dtype: expected 'float32' or 'float64'"),
        (lambda: [Dense(2, 2)], {"seed": -1}, ValueError, "seed: expected None or a non-negative integer"),
        (lambda: [Dense(2, 2)], {"seed": 1.5}, TypeError, "seed: expected None or a non-negative integer"),
        (lambda: [Dense(2, 2)], {"device": "tpu"}, bpcore.DeviceError, "device: expected 'cpu'"),
    ],
)
def test_construction_errors(make_layers, options: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        bpcore.Network(make_layers(), **options)


def test_a_layer_cannot_join_two_networks() -> None:
    dense = Dense(3, 2)
    first = bpcore.Network([dense], seed=0)
    weights = first.store.data.copy()
    with pytest.raises(ValueError, match=r"Dense\(in_features=3.*already belongs to another Network"):
        bpcore.Network([dense], seed=1)
    np.testing.assert_array_equal(first.store.data, weights)
    assert np.shares_memory(dense.weight.data, first.store.data)


def test_a_single_layer_may_be_passed_without_a_list() -> None:
    network = bpcore.Network(Dense(3, 2), seed=0)
    assert network.forward(np.ones((1, 3), np.float32)).shape == (1, 2)


def test_width_free_networks_accept_any_width() -> None:
    network = bpcore.Network([Sigmoid(), Dropout(0.1)], dtype="float64")
    assert network.in_features is None and network.out_features is None
    assert network.forward(np.zeros((2, 7))).shape == (2, 7)


def _train(network: bpcore.Network, x: np.ndarray, y: np.ndarray, steps: int, lr: float = 0.05) -> np.ndarray:
    for _ in range(steps):
        network.zero_grad()
        out = network.forward(x, training=True)
        network.backward((out - y) / len(x))
        network.store.data -= lr * network.store.grad  # plain gradient descent over the flat buffer
    return network.store.data.copy()


def test_two_networks_trained_in_two_threads_match_sequential_training() -> None:
    x, y = data(32)
    sequential = [_train(make(seed), x, y, 30) for seed in (1, 2)]
    results: dict[int, np.ndarray] = {}
    start = threading.Barrier(2, timeout=30)

    def worker(seed: int) -> None:
        network = make(seed)
        start.wait()
        results[seed] = _train(network, x, y, 30)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    np.testing.assert_array_equal(results[1], sequential[0])
    np.testing.assert_array_equal(results[2], sequential[1])
    assert not np.array_equal(sequential[0], make(1).store.data)  # training did move the weights


def test_one_network_shared_by_threads_keeps_each_forward_backward_pair_consistent() -> None:
    network = make(dtype="float64")
    x, _ = data(8)
    expected = network.forward(x)
    errors: list[str] = []

    def worker() -> None:
        for _ in range(50):
            got = network.forward(x)
            if not np.array_equal(got, expected):
                errors.append("forward changed")

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_walk_and_to_reach_nested_layers() -> None:
    network = make()
    names = [type(layer).__name__ for layer in network.walk()]
    assert names == ["Dense", "ReLU", "BatchNorm", "Dropout", "Residual", "Dense", "Tanh", "Dense"]
    x, _ = data()
    before = network.forward(x)
    assert network.to("cpu") is network
    np.testing.assert_array_equal(network.forward(x), before)


def test_repr_lists_the_layers() -> None:
    text = repr(make())
    assert "BatchNorm(num_features=8" in text and "Residual(Dense(in_features=8" in text and "float32" in text
