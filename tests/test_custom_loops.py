"""The custom-training-loop API: fast path, input-only backward, freezing, copies, target updates,
weight clamping and per-row gathering, on the generic and the compiled CPU backends (and on a GPU)."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import bpcore
from bpcore import Gather, Network, get_backend
from bpcore.backends.ops import OPERATIONS
from bpcore.layers import BatchNorm, Dense, Dropout, ReLU, Tanh
from bpcore.losses import MSE, Huber
from bpcore.optim import SGD, Adam, RMSProp, clamp_parameters

DTYPES = ["float32", "float64"]


@pytest.fixture(params=["fused", "generic"])
def kernels(request, monkeypatch):
    """Run a test with the compiled kernels and with the generic reference code."""
    monkeypatch.setenv("BPCORE_KERNELS", request.param)
    return request.param


def make_net(dtype="float64", seed=0, device=None, dropout=False):
    layers = [Dense(4, 16), ReLU(), BatchNorm(16), Dense(16, 8), Tanh()]
    if dropout:
        layers.append(Dropout(0.3))
    layers.append(Dense(8, 3))
    return Network(layers, dtype=dtype, seed=seed, device=device)


def batch(n=10, dtype="float64", seed=1):
    return np.random.default_rng(seed).normal(size=(n, 4)).astype(dtype)


# --- fast path ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_path_gives_the_checked_results_and_documents_its_buffer(dtype, kernels):
    checked, fast = make_net(dtype), make_net(dtype)
    x = batch(dtype=dtype)
    expected = checked.forward(x, training=True)
    out = fast.forward(x, training=True, check=False)
    np.testing.assert_array_equal(out, expected)
    grad = np.random.default_rng(2).normal(size=out.shape).astype(dtype)
    np.testing.assert_array_equal(fast.backward(grad, check=False), checked.backward(grad))
    np.testing.assert_array_equal(fast.store.grad, checked.store.grad)
    # The fast output is the network's own buffer: the next forward overwrites it.
    kept = out.copy()
    again = fast.forward(batch(dtype=dtype, seed=9), training=True, check=False)
    assert again is out and not np.array_equal(out, kept)


def test_input_grad_false_returns_none_and_still_accumulates(kernels):
    a, b = make_net(), make_net()
    x = batch()
    g = np.ones((10, 3))
    a.forward(x, training=True)
    b.forward(x, training=True)
    a.backward(g)
    assert b.backward(g, input_grad=False) is None
    np.testing.assert_allclose(b.store.grad, a.store.grad, rtol=1e-12)


@pytest.mark.parametrize("check", [True, False])
def test_backward_without_parameter_grads_leaves_every_gradient_alone(check, kernels):
    net, reference = make_net(), make_net()
    x = batch()
    g = np.random.default_rng(3).normal(size=(10, 3))
    net.store.grad[...] = 7.0
    net.forward(x, training=True)
    grad_in = net.backward(g, parameter_grads=False, check=check)
    assert (net.store.grad == 7.0).all()
    reference.forward(x, training=True)
    np.testing.assert_allclose(grad_in, reference.backward(g), rtol=1e-12)
    assert all(p.requires_grad for p in net.parameters())  # flags restored


@pytest.mark.parametrize("check", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_without_accumulating_writes_what_zero_grad_and_backward_add(check, dtype, kernels):
    net, reference = make_net(dtype), make_net(dtype)
    x = batch(dtype=dtype)
    g = np.random.default_rng(4).normal(size=(10, 3)).astype(dtype)
    net.store.grad[...] = 7.0  # stale gradients: written over, not added to
    net.forward(x, training=True, check=check)
    grad_in = net.backward(g, check=check, accumulate=False)
    reference.forward(x, training=True)
    reference.zero_grad()
    np.testing.assert_array_equal(grad_in, reference.backward(g))
    np.testing.assert_array_equal(net.store.grad, reference.store.grad)


def test_input_gradient_through_a_network_matches_finite_differences():
    net = make_net()
    x = batch(4)
    net.forward(x, training=False)
    weights = np.random.default_rng(5).normal(size=(4, 3))
    analytic = net.backward(weights, parameter_grads=False)

    def value(inputs):
        return float((net.forward(inputs) * weights).sum())

    numeric = np.zeros_like(x)
    eps = 1e-6
    for index in np.ndindex(*x.shape):
        step = np.zeros_like(x)
        step[index] = eps
        numeric[index] = (value(x + step) - value(x - step)) / (2 * eps)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


# --- freezing ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_frozen_parameters_get_no_gradient_and_are_not_updated(dtype, kernels):
    net, reference = make_net(dtype), make_net(dtype)
    first_dense, batchnorm = net.layers[0], net.layers[2]
    first_dense.weight.requires_grad = False
    batchnorm.gamma.requires_grad = False
    frozen = [first_dense.weight, batchnorm.gamma]
    opt, ref_opt = Adam(net.parameters(), lr=0.01), Adam(reference.parameters(), lr=0.01)
    before = [p.data.copy() for p in frozen]
    x, target = batch(dtype=dtype), np.zeros((10, 3), dtype)
    loss, ref_loss = MSE(), MSE()
    for _ in range(3):
        for network, optimizer, objective in ((net, opt, loss), (reference, ref_opt, ref_loss)):
            network.zero_grad()
            objective(network.forward(x, training=True), target)
            network.backward(objective.backward())
            optimizer.step()
    for parameter, old in zip(frozen, before, strict=True):
        np.testing.assert_array_equal(parameter.data, old)
        assert (parameter.grad == 0).all()
    # The trainable ones move (differently from the reference, whose first layer also trained).
    assert not np.array_equal(net.layers[3].weight.data, make_net(dtype).layers[3].weight.data)
    assert net.store.trainable_ranges() == [
        (first_dense.bias.offset, batchnorm.gamma.offset),
        (batchnorm.beta.offset, net.store.size),
    ]


def test_frozen_parameters_are_skipped_on_the_per_parameter_path(kernels):
    net = make_net()
    net.layers[0].bias.requires_grad = False
    opt = SGD(net.parameters()[::-1], lr=0.1)
    net.store.grad[...] = 1.0
    before = net.store.data.copy()
    opt.step()
    moved = net.store.data != before
    bias = net.layers[0].bias
    assert not moved[bias.offset : bias.offset + bias.size].any()
    assert moved.sum() == net.store.size - bias.size


def test_freeze_and_unfreeze_the_whole_network(kernels):
    net = make_net()
    assert net.freeze() is net
    opt = RMSProp(net.parameters(), lr=0.1)
    before = net.store.data.copy()
    net.forward(batch(), training=True)
    grad_in = net.backward(np.ones((10, 3)))
    opt.step()
    assert grad_in.shape == (10, 4)
    assert (net.store.grad == 0).all() and np.array_equal(net.store.data, before)
    net.unfreeze()
    net.forward(batch(), training=True)
    net.backward(np.ones((10, 3)))
    opt.step()
    assert not np.array_equal(net.store.data, before)


def test_requires_grad_must_be_a_bool():
    with pytest.raises(TypeError, match="requires_grad"):
        make_net().layers[0].weight.requires_grad = 1


# --- copies -----------------------------------------------------------------------------
def _same_network(a: Network, b: Network, x) -> None:
    assert a is not b and a.store.data is not b.store.data
    assert a.dtype == b.dtype and a.device == b.device and a.backend is b.backend
    np.testing.assert_array_equal(a.store.data, b.store.data)
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    assert [p.requires_grad for p in a.parameters()] == [p.requires_grad for p in b.parameters()]


@pytest.mark.parametrize("how", ["clone", "deepcopy", "pickle"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_clone_deepcopy_and_pickle_give_an_equal_independent_network(how, dtype, kernels):
    net = make_net(dtype, dropout=True)
    x = batch(dtype=dtype)
    for _ in range(2):  # move the batch statistics and the dropout generator on
        net.forward(x, training=True)
    net.layers[3].weight.requires_grad = False
    copies = {
        "clone": lambda n: n.clone(),
        "deepcopy": copy.deepcopy,
        "pickle": lambda n: pickle.loads(pickle.dumps(n)),
    }
    twin = copies[how](net)
    _same_network(net, twin, x)
    np.testing.assert_array_equal(twin.layers[2].running_mean, net.layers[2].running_mean)
    # The dropout generator continues from the same state: same masks next time.
    np.testing.assert_array_equal(twin.forward(x, training=True), net.forward(x, training=True))
    twin.store.data[...] = 0.0
    assert net.store.data.any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_copies_follow_to_device(dtype):
    net = make_net(dtype).to("cpu")
    other = get_backend("cpu", kernels="generic" if net.backend.kernels == "fused" else "fused")
    net._adopt(other)
    twin = copy.deepcopy(net)
    assert twin.backend is other
    _same_network(net, twin, batch(dtype=dtype))
    moved = pickle.loads(pickle.dumps(net.to("cpu")))  # back on the default CPU backend
    _same_network(net, moved, batch(dtype=dtype))


def test_pickle_holds_no_module_or_backend():
    data = pickle.dumps(make_net())
    assert b"numpy_backend" not in data and b"NumpyBackend" not in data


# --- target updates ---------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_copy_from_hard_and_polyak(dtype, kernels):
    online, target = make_net(dtype, seed=1), make_net(dtype, seed=2)
    online.forward(batch(dtype=dtype), training=True)  # batch statistics to copy
    start = target.store.data.copy()
    assert target.copy_from(online, tau=0.005) is target
    expected = start * np.asarray(1 - 0.005, dtype) + np.asarray(0.005, dtype) * online.store.data
    rtol = 1e-6 if dtype == "float32" else 1e-14
    np.testing.assert_allclose(target.store.data, expected, rtol=rtol, atol=1e-7)
    np.testing.assert_array_equal(target.layers[2].running_mean, online.layers[2].running_mean)
    target.copy_from(online)
    np.testing.assert_array_equal(target.store.data, online.store.data)
    x = batch(dtype=dtype)
    np.testing.assert_array_equal(target.forward(x), online.forward(x))


def test_copy_from_across_dtypes_and_bad_arguments():
    online, target = make_net("float64", seed=1), make_net("float32", seed=2)
    target.copy_from(online)
    np.testing.assert_array_equal(target.store.data, online.store.data.astype(np.float32))
    with pytest.raises(ValueError, match="tau"):
        target.copy_from(online, tau=1.5)
    with pytest.raises(TypeError, match="source"):
        target.copy_from("online")
    other = Network([Dense(4, 3)], seed=0)
    with pytest.raises(ValueError, match="parameter shapes"):
        target.copy_from(other)


# --- clamping ---------------------------------------------------------------------------
@pytest.mark.parametrize("flat", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
def test_clamp_parameters(flat, dtype, kernels):
    net = make_net(dtype)
    net.store.data[...] = np.linspace(-1, 1, net.store.size)
    net.store.data[3] = np.nan
    params = net.parameters() if flat else net.parameters()[::-1]
    clamp_parameters(params, -0.01, 0.01)
    values = np.delete(net.store.data, 3)
    assert np.isnan(net.store.data[3])
    assert values.min() == np.asarray(-0.01, dtype) and values.max() == np.asarray(0.01, dtype)
    with pytest.raises(ValueError, match="low <= high"):
        clamp_parameters(params, 1, 0)


# --- gathering --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_and_its_backward(dtype, kernels):
    rng = np.random.default_rng(4)
    q = rng.normal(size=(7, 3)).astype(dtype)
    actions = rng.integers(0, 3, size=7)
    pick = Gather()
    chosen = pick(q, actions)
    np.testing.assert_array_equal(chosen, q[np.arange(7), actions])  # torch.gather(q, 1, a[:, None])[:, 0]
    g = rng.normal(size=7).astype(dtype)
    grad = pick.backward(g)
    expected = np.zeros_like(q)
    expected[np.arange(7), actions] = g
    np.testing.assert_array_equal(grad, expected)
    assert pick(q, actions.astype(np.int32), check=False) is chosen


def test_gather_checks_its_index():
    pick = Gather()
    q = np.zeros((3, 2))
    with pytest.raises(ValueError, match="index"):
        pick(q, np.array([0, 2, 1]))
    with pytest.raises(TypeError, match="index"):
        pick(q, np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="index: expected shape"):
        pick(q, np.array([0, 1]))
    with pytest.raises(RuntimeError):
        Gather().backward(np.zeros(3))


def test_td_loss_on_chosen_actions_matches_finite_differences():
    net = Network([Dense(4, 8), ReLU(), Dense(8, 3)], dtype="float64", seed=0)
    rng = np.random.default_rng(0)
    x, actions, target = batch(6), rng.integers(0, 3, 6), rng.normal(size=6)
    pick, huber = Gather(), Huber()

    def loss_value():
        return float(huber(pick(net.forward(x), actions), target))

    net.zero_grad()
    loss_value()
    net.backward(pick.backward(huber.backward()))
    analytic = net.store.grad.copy()
    numeric = np.zeros_like(analytic)
    for k in range(net.store.size):
        saved = net.store.data[k]
        net.store.data[k] = saved + 1e-6
        up = loss_value()
        net.store.data[k] = saved - 1e-6
        down = loss_value()
        net.store.data[k] = saved
        numeric[k] = (up - down) / 2e-6
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-9)


# --- the hot operations: compiled against generic ---------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_buffer_kernels_match_the_generic_versions(dtype):
    fused, generic = get_backend("cpu", kernels="fused"), get_backend("cpu", kernels="generic")
    rng = np.random.default_rng(6)
    edge = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e-30], dtype)
    for size in (0, 1, 17, 4099):
        target, source = rng.normal(size=size).astype(dtype), rng.normal(size=size).astype(dtype)
        if size > len(edge):
            target[: len(edge)], source[-len(edge) :] = edge, edge
        results = []
        for backend in (fused, generic):
            t = target.copy()
            backend.ops.polyak_update(t, source, 0.01)
            c = target.copy() if not results else results[0][2]  # normal values and the edge ones
            clamped = c.copy()
            backend.ops.clamp_inplace(clamped, -0.5, 0.25)
            results.append((t, clamped, c))
        np.testing.assert_allclose(
            results[0][0], results[1][0], rtol=1e-6 if dtype == "float32" else 1e-15, equal_nan=True
        )
        np.testing.assert_array_equal(results[0][1], results[1][1])
    values = rng.normal(size=(33, 5)).astype(dtype)
    index = rng.integers(0, 5, size=33)
    outs = []
    for backend in (fused, generic):
        gathered = np.empty(33, dtype)
        scattered = np.full((33, 5), np.nan, dtype)
        backend.ops.gather_rows(values, index, gathered)
        backend.ops.scatter_rows(gathered, index, scattered)
        outs.append((gathered, scattered))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    for name in ("polyak_update", "clamp_inplace", "gather_rows", "scatter_rows"):
        assert OPERATIONS[name].cpu is not None and OPERATIONS[name].cuda is not None


# --- on a GPU -----------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_custom_loop_api_on_a_gpu(dtype):
    import cupy

    net = make_net(dtype, device="cuda")
    host = make_net(dtype, device="cpu")
    x = batch(dtype=dtype)
    xd = net.as_input(x)
    out = net.forward(xd, training=True, check=False)
    np.testing.assert_allclose(cupy.asnumpy(out), host.forward(x, training=True), rtol=1e-4, atol=1e-5)
    grad = net.backward(cupy.ones_like(out), check=False, parameter_grads=False)
    assert isinstance(grad, cupy.ndarray) and not net.store.grad.any()
    twin = pickle.loads(pickle.dumps(net))
    assert twin.device == net.device
    np.testing.assert_array_equal(cupy.asnumpy(twin.store.data), cupy.asnumpy(net.store.data))
    target = copy.deepcopy(net)
    target.store.data[...] = 0
    target.copy_from(net, tau=0.25)
    expected = 0.25 * cupy.asnumpy(net.store.data)
    np.testing.assert_allclose(cupy.asnumpy(target.store.data), expected, rtol=1e-6)
    clamp_parameters(net.parameters(), -0.01, 0.01)
    assert float(abs(net.store.data).max()) <= 0.01
    pick = Gather()
    q = cupy.asarray(np.arange(12, dtype=dtype).reshape(4, 3))
    actions = cupy.asarray([2, 0, 1, 2])
    np.testing.assert_array_equal(cupy.asnumpy(pick(q, actions)), [2, 3, 7, 11])
    expected = np.zeros((4, 3), dtype)
    expected[np.arange(4), [2, 0, 1, 2]] = 1
    np.testing.assert_array_equal(cupy.asnumpy(pick.backward(cupy.ones(4, dtype))), expected)
    net.freeze()
    opt = Adam(net.parameters())
    before = cupy.asnumpy(net.store.data)
    opt.step()
    np.testing.assert_array_equal(cupy.asnumpy(net.store.data), before)
    assert bpcore.current_device() is not None
