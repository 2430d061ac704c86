"""CuPy's behaviour where it differs from NumPy's, met on the CPU through the doubles of cupy_doubles.py.

Each test here failed before its fix: device input validated through
``__array_namespace__`` (which ``cupy.ndarray`` lacks), and dropout drawing
its uniforms with ``random(out=...)`` and no ``size`` (one value, broadcast).
"""

from __future__ import annotations

import contextlib
import types
from typing import Any

import numpy as np
import pytest
from cupy_doubles import CupyLikeArray, CupyLikeBackend, CupyLikeGenerator, CupyLikeModule

import bpcore
from bpcore.backends import Backend, Device, get_backend
from bpcore.layers import Dense, Dropout, Tanh
from bpcore.losses import MSE
from bpcore.optim import SGD
from bpcore.validation import as_features


def _data(rows: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(rows, 3)), rng.normal(size=(rows, 2))


def _network() -> bpcore.Network:
    return bpcore.Network([Dense(3, 4), Tanh(), Dense(4, 2)], dtype="float64", seed=0, device="cpu")


# --- input validation: the backend's own array module, never __array_namespace__ ----------
def test_the_double_is_cupy_like() -> None:
    array = CupyLikeArray(np.ones((2, 3)))
    assert not hasattr(array, "__array_namespace__")
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(array)


def test_device_arrays_are_accepted_by_forward_predict_evaluate_and_fit() -> None:
    x, y = _data()
    net, reference = _network(), _network()
    expected = reference.forward(x)
    np.testing.assert_allclose(net.forward(CupyLikeArray(x)), expected)
    np.testing.assert_allclose(net.predict(CupyLikeArray(x)), expected)
    np.testing.assert_allclose(net.predict(CupyLikeArray(x), batch_size=5), expected)
    scores = net.evaluate(CupyLikeArray(x), y, loss=MSE())
    assert scores["loss"] == pytest.approx(reference.evaluate(x, y, loss=MSE())["loss"])
    history = net.fit(CupyLikeArray(x), y, loss=MSE(), optimizer=SGD(net.parameters(), lr=0.1),
                      epochs=2, batch_size=4, seed=0, verbose=False)
    expected_history = reference.fit(x, y, loss=MSE(), optimizer=SGD(reference.parameters(), lr=0.1),
                                     epochs=2, batch_size=4, seed=0, verbose=False)
    assert history.loss == expected_history.loss and len(history.loss) == 2
    np.testing.assert_array_equal(net.store.data, reference.store.data)
    # device targets too, for a network whose data is kept on the host
    device_targets = net.evaluate(CupyLikeArray(x), CupyLikeArray(y), loss=MSE())
    assert device_targets["loss"] == pytest.approx(net.evaluate(x, y, loss=MSE())["loss"])
    net.fit(x, CupyLikeArray(y), loss=MSE(), optimizer=SGD(net.parameters(), lr=0.1), epochs=1, verbose=False)


def test_device_arrays_with_nan_give_the_usual_error() -> None:
    x, y = _data()
    x[3, 1] = np.nan
    net = _network()
    with pytest.raises(ValueError, match="x: contains NaN or Inf values"):
        net.forward(CupyLikeArray(x))
    with pytest.raises(ValueError, match="x: contains NaN or Inf values"):
        net.fit(CupyLikeArray(x), y, loss=MSE(), optimizer=SGD(net.parameters(), lr=0.1), epochs=1,
                verbose=False)


def test_bpcore_asarray_moves_device_arrays_to_the_host() -> None:
    x, _ = _data()
    moved = bpcore.asarray(CupyLikeArray(x), device="cpu", dtype="float32")
    assert isinstance(moved, np.ndarray) and moved.dtype == np.float32
    np.testing.assert_array_equal(moved, x.astype(np.float32))


def test_arrays_on_the_device_are_checked_with_the_backends_array_module() -> None:
    backend = CupyLikeBackend()
    x, _ = _data()
    result = as_features(CupyLikeArray(x), backend, np.dtype(np.float32), in_features=3)
    assert isinstance(result, CupyLikeArray) and result.dtype == np.float32
    np.testing.assert_array_equal(result.get(), x.astype(np.float32))
    assert "isfinite" in backend.xp.calls
    x[0, 0] = np.inf
    with pytest.raises(ValueError, match="features: contains NaN or Inf"):
        as_features(CupyLikeArray(x), backend, np.dtype(np.float64), in_features=3, argument="features")


# --- dropout: one draw per unit, on every backend -------------------------------------------
def _masks(network: bpcore.Network, shape: tuple[int, int], draws: int = 2) -> list[np.ndarray]:
    x = np.ones(shape, dtype=network.dtype)
    return [network.backend.to_numpy(network.forward(x, training=True)) for _ in range(draws)]


def _check_mask_statistics(masks: list[np.ndarray], p: float) -> None:
    keep = 1.0 - p
    for out in masks:
        kept = out != 0
        np.testing.assert_allclose(out[kept], 1.0 / keep, rtol=1e-6)
        n = kept.size
        bound = 6.0 * np.sqrt(n * p * keep)  # six standard deviations of Binomial(n, 1 - p)
        assert abs(kept.sum() - n * keep) <= bound, (kept.mean(), keep)
        rows = kept.shape[0]
        column_bound = 6.0 * np.sqrt(rows * p * keep)
        assert np.all(np.abs(kept.sum(axis=0) - rows * keep) <= column_bound)  # every unit, not one coin
        assert len({row.tobytes() for row in kept}) > rows // 2  # rows differ from one another
        # neighbouring units independent: P(both kept) = keep^2
        both = (kept[:, :-1] & kept[:, 1:]).sum()
        pairs = kept[:, :-1].size
        assert abs(both - pairs * keep**2) <= 6.0 * np.sqrt(pairs * keep**2 * (1 - keep**2))
    assert not np.array_equal(masks[0], masks[1])  # a fresh mask every step


@pytest.mark.parametrize("kernels", ["fused", "generic"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dropout_masks_are_drawn_per_unit_on_every_backend(
    device_name: str, kernels: str, dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BPCORE_KERNELS", kernels)
    net = bpcore.Network([Dropout(0.3)], dtype=dtype, seed=1, device=device_name)
    assert net.backend.kernels == kernels
    _check_mask_statistics(_masks(net, (400, 250)), 0.3)


def test_dropout_with_cupys_generator_semantics_draws_a_value_per_unit() -> None:
    # CuPy's Generator.random(out=buf) without size broadcasts ONE value: all units or none.
    net = bpcore.Network([Dropout(0.3)], dtype="float32", seed=1, device="cpu")
    for layer in net.walk():
        layer.bind_random(CupyLikeGenerator(7))
    _check_mask_statistics(_masks(net, (400, 250)), 0.3)


def test_a_standalone_dropout_makes_a_new_generator_on_its_new_device() -> None:
    fused, generic = get_backend("cpu", kernels="fused"), get_backend("cpu", kernels="generic")
    made: list[str] = []
    layer = Dropout(0.5)
    layer.build((4,), np.dtype(np.float32), fused)
    original = fused.random
    try:
        fused.random = lambda seed=None: made.append("fused") or original(seed)  # type: ignore[method-assign]
        layer.forward(np.ones((3, 4), np.float32), True)
    finally:
        del fused.random
    layer.to(generic)
    try:
        generic.random = lambda seed=None: made.append("generic") or original(seed)  # type: ignore[method-assign]
        layer.forward(np.ones((3, 4), np.float32), True)
    finally:
        del generic.random
    assert made == ["fused", "generic"]


# --- gradcheck: device arrays reach the host through the backend, never np.asarray ---------
def test_gradcheck_takes_device_arrays_for_inputs_and_targets() -> None:
    from bpcore.losses import CrossEntropy

    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 3))
    labels = rng.integers(0, 2, size=6)
    soft = rng.dirichlet(np.ones(2), size=6)
    net = _network()
    assert bpcore.gradcheck(net, CupyLikeArray(x), y=CupyLikeArray(labels), loss=CrossEntropy(),
                            seed=0) < 1e-6
    assert bpcore.gradcheck(Dense(3, 2), CupyLikeArray(x), y=CupyLikeArray(soft), loss=CrossEntropy(),
                            seed=0) < 1e-6
    assert bpcore.gradcheck(MSE(), CupyLikeArray(x), y=CupyLikeArray(x[::-1].copy()), seed=0) < 1e-6


# --- host data staged into device buffers: one buffer per slot, not per shape ------------------
def _host_dataset(rows: int = 10) -> Any:
    from bpcore.training.data import Dataset
    from bpcore.training.metrics import DENSE

    rng = np.random.default_rng(5)
    x = rng.normal(size=(rows, 3, 2))
    y = rng.normal(size=(rows, 3, 2))  # the same shape and dtype as x: the case that shared a buffer
    mask = rng.random((rows, 3)) < 0.7
    return Dataset(x, y, DENSE, get_backend("cpu"), mask)


@pytest.mark.parametrize("ranks", [None, (0, 2), (1, 2)])  # one process, or rank r's share of 2
@pytest.mark.parametrize(("batch_size", "shuffle"), [(None, False), (4, False), (4, True)])
def test_host_batches_staged_for_a_gpu_keep_features_targets_and_mask_apart(
    batch_size: int | None, shuffle: bool, ranks: tuple[int, int] | None
) -> None:
    # A full batch of a distributed fit was handed to the layers on the host: the one-process batches
    # had staged it whole and then stopped staging, and the rank's share bypassed that copy.
    from bpcore.distributed.data_parallel import ShardedBatches
    from bpcore.training.batches import Batches

    data = _host_dataset()
    options: dict[str, Any] = dict(batch_size=batch_size, shuffle=shuffle, rng=np.random.default_rng(0),
                                   merge_single=False)
    if ranks is None:
        batches = Batches(data, CupyLikeBackend(), **options)
    else:
        batches = ShardedBatches(data, CupyLikeBackend(), rank=ranks[0], world_size=ranks[1], **options)
    seen = []
    for _epoch in range(2):
        for xb, yb, mb in batches.epoch():
            assert isinstance(xb, CupyLikeArray) and isinstance(yb, CupyLikeArray)
            assert isinstance(mb, CupyLikeArray) and mb.dtype == np.bool_
            for row_x, row_y, row_m in zip(xb.get(), yb.get(), mb.get(), strict=True):
                (index,) = np.flatnonzero((data.x == row_x).all(axis=(1, 2)))
                np.testing.assert_array_equal(row_y, data.y[index])
                np.testing.assert_array_equal(row_m, data.mask[index])
                seen.append(int(index))
    shares = [range(len(data))] if ranks is None else [range(*bounds) for bounds in batches.bounds]
    if ranks is None or not shuffle:  # a rank's share of a shuffled batch holds samples of any position
        assert sorted(seen) == sorted(2 * [int(i) for share in shares for i in share])
    else:
        assert len(seen) == 2 * sum(len(share) for share in shares)


def test_evaluation_of_host_data_for_a_gpu_reads_features_and_targets_of_one_shape_apart() -> None:
    from bpcore.training.inference import evaluation_sums

    data = _host_dataset()
    fake = CupyLikeBackend()
    backend = types.SimpleNamespace(xp=np, device=Device("cuda", 0), empty=fake.empty)
    forwarded = []

    class Network:
        def _forward(self, xb: Any, training: bool, mask: Any) -> np.ndarray:
            forwarded.append(mask.get())
            return xb.get()

    network = Network()
    network.backend = backend  # type: ignore[attr-defined]

    def squared_error(pred: np.ndarray, yb: CupyLikeArray) -> float:
        return float(((pred - yb.get()) ** 2).sum())

    squared_error.reduction = "sum"  # type: ignore[attr-defined]
    totals = evaluation_sums(network, data, squared_error, [], batch_size=4)
    assert totals[0] == pytest.approx(float(((data.x - data.y) ** 2).sum()))
    np.testing.assert_array_equal(np.concatenate(forwarded), data.mask)


# --- masks: a device mask reaches a CPU network through .get(), a host mask a GPU one through its xp ---
def test_a_device_mask_is_brought_to_a_cpu_network_explicitly() -> None:
    from bpcore.layers import LSTM, mask_from_lengths

    rng = np.random.default_rng(6)
    mask = mask_from_lengths(rng.integers(0, 6, size=9), 5)
    x, y = rng.standard_normal((9, 5, 3)), rng.standard_normal((9, 2))

    def network() -> bpcore.Network:
        return bpcore.Network([LSTM(3, 4), Dense(4, 2)], dtype="float64", seed=0, device="cpu")

    net = network()
    want = net.forward(x, mask=mask)
    device_mask = CupyLikeArray(mask)  # np.asarray of it raises, as for a cupy.ndarray
    np.testing.assert_array_equal(net.forward(x, mask=device_mask), want)
    np.testing.assert_array_equal(net.predict(x, mask=device_mask, batch_size=4), net.predict(x, mask=mask,
                                                                                              batch_size=4))
    assert net.evaluate(x, y, loss=MSE(), mask=device_mask)["loss"] == net.evaluate(x, y, loss=MSE(),
                                                                                   mask=mask)["loss"]
    assert bpcore.gradcheck(net, x, mask=device_mask, seed=0) < 1e-6
    trained = []
    for given in (mask, device_mask):
        fresh = network()
        fresh.fit(x, y, loss=MSE(), optimizer=SGD(fresh.parameters(), lr=0.1), epochs=2, batch_size=4,
                  mask=given, validation_data=(x[:3], y[:3], given[:3]), seed=0, verbose=False)
        trained.append(fresh.store.data.copy())
    np.testing.assert_array_equal(trained[0], trained[1])


def test_a_host_replay_buffer_takes_transitions_and_td_errors_from_a_gpu_network() -> None:
    # A GPU network's greedy actions and TD errors are device arrays; the buffer keeps its rings on the
    # host and must copy them with .get() (np.asarray of a CuPy array raises, as the double's does).
    from bpcore.rl import PrioritizedReplayBuffer

    host_buffer = PrioritizedReplayBuffer(8, 2, alpha=1.0, seed=0)
    device_buffer = PrioritizedReplayBuffer(8, 2, alpha=1.0, seed=0)
    rng = np.random.default_rng(3)
    obs, nxt = rng.normal(size=(5, 2)), rng.normal(size=(5, 2))
    actions, rewards, dones = np.array([1, 0, 2, 1, 0]), rng.normal(size=5), np.zeros(5)
    host_buffer.add(obs, actions, rewards, nxt, dones)
    device_buffer.add(*(CupyLikeArray(value) for value in (obs, actions, rewards, nxt, dones)))
    for name in ("observations", "actions", "rewards", "next_observations", "dones"):
        np.testing.assert_array_equal(getattr(device_buffer, name), getattr(host_buffer, name))
    batch = host_buffer.sample(4)
    errors = rng.normal(size=4)
    host_buffer.update_priorities(batch.indices, errors)
    device_buffer.update_priorities(CupyLikeArray(batch.indices), CupyLikeArray(errors.astype(np.float32)))
    np.testing.assert_allclose(device_buffer.tree.get(np.arange(5)), host_buffer.tree.get(np.arange(5)),
                               rtol=1e-6)


def test_a_host_mask_is_moved_to_a_gpu_network_with_its_array_module() -> None:
    backend = CupyLikeBackend()
    network = types.SimpleNamespace(_uses_mask=True, backend=backend)  # what Network.as_mask reads
    mask = np.random.default_rng(7).random((4, 6)) < 0.5
    moved = bpcore.Network.as_mask(network, mask, shape=(4, 6, 3))  # type: ignore[arg-type]
    assert isinstance(moved, CupyLikeArray) and moved.dtype == np.bool_
    np.testing.assert_array_equal(moved.get(), mask)
    assert backend.xp.calls == ["asarray"]
    kept = bpcore.Network.as_mask(network, CupyLikeArray(mask), shape=(4, 6, 3))  # type: ignore[arg-type]
    assert isinstance(kept, CupyLikeArray)
    np.testing.assert_array_equal(kept.get(), mask)
    with pytest.raises(TypeError, match="mask: expected a boolean array"):
        bpcore.Network.as_mask(network, CupyLikeArray(mask.astype(np.float32)),  # type: ignore[arg-type]
                               shape=(4, 6, 3))


# --- recurrent states given as device arrays to a CPU layer: brought over with .get() ---------------
@pytest.mark.parametrize("built", [True, False])
def test_recurrent_states_given_as_device_arrays_reach_a_cpu_layer(built: bool) -> None:
    from bpcore.layers import LSTM

    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 4, 2))
    start = [rng.standard_normal((3, 5)) for _ in range(2)]
    g_final = [rng.standard_normal((3, 5)) for _ in range(2)]
    results = []
    for wrap in (np.asarray, CupyLikeArray):
        layer = LSTM(2, 5)
        net = bpcore.Network([layer], dtype="float64", seed=0, device="cpu")
        if not built:
            layer = LSTM(2, 5)
            layer.initial_state = tuple(wrap(part) for part in start)  # kept as given until built
            net = bpcore.Network([layer], dtype="float64", seed=0, device="cpu")
        else:
            layer.initial_state = tuple(wrap(part) for part in start)
        out = net.forward(x, training=True)
        layer.final_state_grad = tuple(wrap(part) for part in g_final)
        net.zero_grad()
        net.backward(np.ones_like(out))
        results.append((out, net.store.grad.copy(), *layer.initial_state_grad))
    for mine, theirs in zip(results[0], results[1], strict=True):
        assert isinstance(theirs, np.ndarray)
        np.testing.assert_array_equal(mine, theirs)


# --- a GPU backend: BPCORE_KERNELS=auto is fused there, and no BLAS thread limit is entered ---------
class _MarkedGpuBackend(CupyLikeBackend):
    """A CUDA-device backend in ``auto`` mode whose compiled operations are recognisable."""

    def __init__(self) -> None:
        Backend.__init__(self, CupyLikeModule(), Device("cuda", 0), kernels="auto")

    def _compiled(self, operation: Any) -> Any:
        return (lambda *args: operation.name), "cuda"


def test_auto_on_a_gpu_backend_resolves_the_cuda_kernels_and_binds_no_twin() -> None:
    from bpcore.losses import CrossEntropy
    from bpcore.training import kernel_choice

    backend = _MarkedGpuBackend()
    assert backend.resolve("rnn_cell_forward")[1] == "cuda"
    assert backend.ops.lstm_cell_forward() == "lstm_cell_forward"

    class GpuNetwork:
        def __init__(self) -> None:
            self.backend = backend

        def _use_kernels(self, other: Any) -> None:
            raise AssertionError("auto on a GPU must not rebind the network")

    network = GpuNetwork()
    loss = CrossEntropy()
    choice = kernel_choice.for_fit(network, (4,), samples=10, batch_size=5, epochs=1)
    assert choice.kernels == "fused"
    with kernel_choice.bound(network, choice, loss):
        assert network.backend is backend and loss._backend is backend
    assert loss._backend is None


def test_the_recurrent_time_loop_limits_blas_threads_only_on_the_cpu_for_small_products(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import bpcore.backends.blas_threads as blas_threads
    import bpcore.layers.recurrent as recurrent

    entered: list[str] = []

    def one_thread() -> Any:
        entered.append("one_thread")
        return contextlib.nullcontext()

    monkeypatch.setattr(blas_threads, "one_thread", one_thread)
    layer = recurrent.LSTM(2, 64)  # a step's product: n x 64 by 64 x 256, 16384 n multiply-adds
    layer.backend = CupyLikeBackend()
    with layer._small_products(32):
        pass
    assert entered == []
    layer.backend = get_backend("cpu")
    with layer._small_products(32):  # 5.2e5: on one thread
        pass
    assert entered == ["one_thread"]
    with layer._small_products(128):  # 2.1e6 > recurrent.SMALL_PRODUCT: the process's threads
        pass
    assert entered == ["one_thread"]


# --- the recurrent layers' state gradients on the CUDA code path (launch_counting's CuPy stand-in) ---
@pytest.fixture(scope="module")
def counting_backend(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import shutil

    from launch_counting import CountingBackend, build_provider

    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no host C++ compiler (g++) to build the CUDA kernels for the CPU")
    names = [f"bp_{cell}_{direction}" for cell in ("rnn_cell", "lstm_cell", "gru_cell")
             for direction in ("forward", "backward")]
    names += ["bp_im2col", "bp_col2im", "bp_channels_to_images", "bp_images_to_channels"]
    provider, _recorder = build_provider(names, tmp_path_factory.mktemp("state_grads"), compiler)
    return CountingBackend(provider)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_state_gradients_on_the_cuda_path_match_the_cpu(kind: str, counting_backend: Any) -> None:
    # A masked batch from a given initial state with a gradient into the final state: the folded
    # input projection, the mask workspace, the final-state gradient joining the carried ones and
    # the initial-state gradient, through bpcore's CUDA backend over a CuPy-like array module.
    from launch_counting import DeviceArray

    from bpcore.layers import GRU, LSTM, RNN
    from bpcore.parameters import ParameterStore

    n, steps, features, hidden = 3, 5, 1, 4  # one feature: the product at inner size 2 ([x, 1])
    rng = np.random.default_rng(11)
    x = rng.standard_normal((n, steps, features))
    mask = np.arange(steps)[None, :] < np.array([steps, 2, 0])[:, None]  # a row with no real step
    results = []
    for backend in (get_backend("cpu"), counting_backend):
        on = backend.asarray
        layer = {"rnn": RNN, "lstm": LSTM, "gru": GRU}[kind](features, hidden)
        layer.build((steps, features), np.dtype(np.float64), backend)
        store = ParameterStore(layer.parameters(), backend, np.dtype(np.float64))
        store.initialize(np.random.default_rng(0))
        draws = np.random.default_rng(12)
        start = [draws.standard_normal((n, hidden)) for _ in range(layer.state_count)]
        final = [draws.standard_normal((n, hidden)) for _ in range(layer.state_count)]
        state = tuple(on(p) for p in start)
        layer.initial_state = state if layer.state_count > 1 else state[0]
        out = layer.forward(on(x), True, on(mask))
        given = tuple(final)  # host arrays: moved to the layer's device when set (the stand-in's
        layer.final_state_grad = given if layer.state_count > 1 else given[0]  # setitem refuses them)
        grad_in = layer.backward(on(draws.standard_normal((n, hidden))), accumulate=False)
        assert layer.final_state_grad is None
        grads = layer.initial_state_grad
        parts = grads if layer.state_count > 1 else (grads,)
        if backend is counting_backend:
            assert type(out) is DeviceArray and all(type(p) is DeviceArray for p in parts)
        host = backend.to_numpy
        results.append([host(out), host(grad_in), host(store.grad), *(host(p) for p in parts)])
    for cpu, cuda in zip(*results, strict=True):
        np.testing.assert_allclose(cuda, cpu, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize(("fan_in", "fan_out"), [(1, 4), (4, 1), (3, 4)])
def test_dense_outer_products_and_column_sums_on_the_cuda_path_match_the_cpu(
    fan_in: int, fan_out: int, counting_backend: Any
) -> None:
    # outer_product and column_sums have no CUDA kernel: their generic versions run on CuPy there.
    from launch_counting import DeviceArray

    from bpcore.parameters import ParameterStore

    assert [counting_backend.resolve(name)[1] for name in ("outer_product", "column_sums")] == ["generic"] * 2
    rng = np.random.default_rng(13)
    x, g = rng.standard_normal((6, fan_in)), rng.standard_normal((6, fan_out))
    results = []
    for backend in (get_backend("cpu"), counting_backend):
        layer = Dense(fan_in, fan_out)
        layer.build((fan_in,), np.dtype(np.float64), backend)
        store = ParameterStore(layer.parameters(), backend, np.dtype(np.float64))
        store.initialize(np.random.default_rng(0))
        out = layer.forward(backend.asarray(x), True)
        grad_in = layer.backward(backend.asarray(g), accumulate=False)
        layer.backward(backend.asarray(g), accumulate=True)  # the workspaces' sums added in
        if backend is counting_backend:
            assert type(out) is DeviceArray and type(grad_in) is DeviceArray
        results.append([backend.to_numpy(a) for a in (out, grad_in, store.grad)])
    for cpu, cuda in zip(*results, strict=True):
        np.testing.assert_allclose(cuda, cpu, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize(("in_channels", "out_channels", "groups"),
                         [(1, 16, 1), (2, 3, 1), (4, 8, 2), (8, 2, 1)])
def test_conv2d_on_the_cuda_path_matches_the_cpu(
    in_channels: int, out_channels: int, groups: int, counting_backend: Any
) -> None:
    # Both weight-gradient orientations, groups, the batch in one part on a GPU, the ReLU fused in,
    # gradients written then accumulated.
    from launch_counting import DeviceArray

    from bpcore.layers import Conv2D, ReLU
    from bpcore.layers.conv import weight_grad_by_columns
    from bpcore.parameters import ParameterStore

    rng = np.random.default_rng(14)
    x = rng.standard_normal((3, in_channels, 6, 5))
    results = []
    for backend in (get_backend("cpu"), counting_backend):
        layer = Conv2D(in_channels, out_channels, 3, padding=1, groups=groups)
        assert layer.absorb(ReLU())  # as a network's plan fuses a following ReLU
        shape = layer.build((in_channels, 6, 5), np.dtype(np.float64), backend)
        store = ParameterStore(layer.parameters(), backend, np.dtype(np.float64))
        store.initialize(np.random.default_rng(0))
        g = np.random.default_rng(15).standard_normal((3, *shape))
        out = layer.forward(backend.asarray(x), True)
        if backend is counting_backend:
            assert layer._chunk(3, 9 * in_channels, 30) == 3 and type(out) is DeviceArray
        host_out = backend.to_numpy(out).copy()
        grad_in = backend.to_numpy(layer.backward(backend.asarray(g), accumulate=False)).copy()
        layer.backward(backend.asarray(g), accumulate=True)
        results.append([host_out, grad_in, backend.to_numpy(store.grad)])
    # (1, 16, 1) takes g @ cols.T, the others (cols @ g.T).T: both orientations run
    assert weight_grad_by_columns(out_channels // groups, 9 * in_channels // groups) == (out_channels != 16)
    for cpu, cuda in zip(*results, strict=True):
        np.testing.assert_allclose(cuda, cpu, rtol=1e-12, atol=1e-12)
