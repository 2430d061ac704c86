"""The lean training step: what the per-call shortcuts must not change.

A step skips work that does not change between steps (layout checks of
arrays contiguous by construction, the ExitStack of a one-network
optimiser, the rounding of unchanged hyperparameters); these tests pin the
behaviour those checks gave: right answers for any memory layout, frozen
parameters followed after freeze/unfreeze, a step exclusive across threads,
schedules taking effect, and bit-identical results to the generic code.
"""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest

from bpcore import Network, gradcheck
from bpcore.layers import ELU, Dense, Identity, ReLU, Sigmoid, Tanh
from bpcore.optim import SGD, AdaGrad, Adam, RMSProp

DTYPES = ["float32", "float64"]


@pytest.fixture(params=["fused", "generic"])
def kernels(request, monkeypatch):
    monkeypatch.setenv("BPCORE_KERNELS", request.param)
    return request.param


def mlp(widths, activation=ReLU, dtype="float64", seed=0):
    layers = []
    for position, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(Dense(a, b))
        if position < len(widths) - 2:
            layers.append(activation())
    return Network(layers, dtype=dtype, seed=seed)


@pytest.mark.parametrize("activation", [ReLU, Sigmoid, ELU, Identity, Tanh])
@pytest.mark.parametrize("dtype", DTYPES)
def test_the_fused_step_gives_the_generic_bits(activation, dtype, monkeypatch):
    """Bias + activation in place, the unguarded kernels and the cached scalars: same numbers as generic."""
    x = np.random.default_rng(3).normal(size=(33, 5)).astype(dtype)
    grads = {}
    for mode in ("fused", "generic"):
        monkeypatch.setenv("BPCORE_KERNELS", mode)
        net = mlp([5, 17, 9, 1], activation, dtype)
        out = net.forward(x, training=True, check=False).copy()
        net.backward(np.ones_like(out), check=False, input_grad=False)
        grads[mode] = (out, net.store.grad.copy())
    single = dtype == "float32"
    np.testing.assert_allclose(grads["fused"][0], grads["generic"][0], rtol=1e-6 if single else 1e-13)
    np.testing.assert_allclose(grads["fused"][1], grads["generic"][1], rtol=1e-5 if single else 1e-12,
                               atol=1e-6 if single else 1e-13)


@pytest.mark.parametrize("kernels_mode", ["fused", "generic"])
def test_width_one_layers_outer_products_pass_gradcheck(kernels_mode, monkeypatch):
    """Dense(1, k) forward and Dense(k, 1) input gradient are outer products, not matrix products."""
    monkeypatch.setenv("BPCORE_KERNELS", kernels_mode)
    net = mlp([1, 6, 1], Sigmoid)
    x = np.random.default_rng(0).normal(size=(7, 1))
    assert gradcheck(net, x, seed=0) < 1e-6


def test_width_one_layers_match_a_matrix_product():
    net = mlp([1, 4, 1], Tanh, dtype="float32")
    x = np.random.default_rng(1).normal(size=(9, 1)).astype("float32")
    first, last = net.layers[0], net.layers[2]
    hidden = np.tanh(x @ first.weight.data + first.bias.data)
    np.testing.assert_allclose(net.forward(x), hidden @ last.weight.data + last.bias.data, rtol=1e-6)
    grad_in = net.backward(np.ones((9, 1), "float32"))
    expected = ((np.ones((9, 1)) @ last.weight.data.T) * (1 - hidden**2)) @ first.weight.data.T
    np.testing.assert_allclose(grad_in, expected, rtol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_strided_gradient_on_the_fast_path_gets_the_right_answer(dtype, kernels):
    wide = np.random.default_rng(5).normal(size=(8, 6)).astype(dtype)
    x = np.random.default_rng(6).normal(size=(8, 4)).astype(dtype)
    results = []
    for grad in (np.ascontiguousarray(wide[:, ::2]), wide[:, ::2], np.asfortranarray(wide[:, ::2])):
        # The output layer fused with its activation: the gradient reaches a fused kernel as given.
        net = Network([Dense(4, 5), ReLU(), Dense(5, 3), Sigmoid()], dtype=dtype, seed=0)
        out = net.forward(x, training=True, check=False)
        assert out.shape == grad.shape
        results.append((net.backward(grad, check=False).copy(), net.store.grad.copy()))
    tolerance = 1e-5 if dtype == "float32" else 1e-12  # BLAS may take another path for strided data
    for grad_in, param_grad in results[1:]:
        np.testing.assert_allclose(grad_in, results[0][0], rtol=tolerance, atol=tolerance)
        np.testing.assert_allclose(param_grad, results[0][1], rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("optimizer", [Adam, SGD, RMSProp, AdaGrad])
def test_freeze_and_unfreeze_between_steps_are_followed(optimizer, kernels):
    net = mlp([3, 4, 2])
    opt = optimizer(net.parameters(), lr=0.1)
    x = np.random.default_rng(0).normal(size=(5, 3))

    def step():
        net.zero_grad()
        net.forward(x, training=True)
        net.store.grad[...] = 1.0  # a gradient everywhere, frozen or not
        opt.step()

    step()
    first_layer = net.layers[0]
    before = first_layer.weight.data.copy()
    first_layer.weight.requires_grad = False
    step()
    np.testing.assert_array_equal(first_layer.weight.data, before)
    first_layer.weight.requires_grad = True
    step()
    assert not np.array_equal(first_layer.weight.data, before)
    frozen = net.freeze()
    everything = frozen.store.data.copy()
    step()
    np.testing.assert_array_equal(net.store.data, everything)
    net.unfreeze()
    step()
    assert not np.array_equal(net.store.data, everything)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_changed_learning_rate_takes_effect_on_the_next_step(dtype, kernels):
    """Rounded hyperparameters are cached by value: a new lr is a new entry, not a stale one."""
    results = []
    for rates in ((0.1, 0.1, 0.1), (0.1, 0.01, 0.3)):
        net = mlp([3, 2], dtype=dtype)
        opt = Adam(net.parameters(), lr=rates[0])
        for lr in rates:
            opt.lr = lr
            net.store.grad[...] = 0.5
            opt.step()
        results.append(net.store.data.copy())
    reference = mlp([3, 2], dtype=dtype).store.data.copy()
    m, v = 0.0, 0.0
    for step, lr in enumerate((0.1, 0.01, 0.3), start=1):
        m = 0.9 * m + 0.1 * 0.5
        v = 0.999 * v + 0.001 * 0.25
        reference -= lr / (1 - 0.9**step) * m / (np.sqrt(v) / np.sqrt(1 - 0.999**step) + 1e-8)
    assert not np.array_equal(results[0], results[1])
    np.testing.assert_allclose(results[1], reference, rtol=1e-4 if dtype == "float32" else 1e-12, atol=1e-6)


def test_an_optimiser_step_waits_for_a_step_held_by_another_thread():
    net = mlp([3, 2])
    opt = SGD(net.parameters(), lr=0.1)
    net.store.grad[...] = 1.0
    held, release, stepped = threading.Event(), threading.Event(), threading.Event()

    def hold():
        with net.step():
            held.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    before = net.store.data.copy()
    stepper = threading.Thread(target=lambda: (opt.step(), stepped.set()))
    stepper.start()
    assert not stepped.wait(0.2), "the optimiser stepped while another thread held the network"
    np.testing.assert_array_equal(net.store.data, before)
    release.set()
    holder.join(5)
    stepper.join(5)
    assert stepped.is_set() and not np.array_equal(net.store.data, before)


# --- clipping by total norm in one operation ---------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [0, 1, 3, 4, 37, 17795])
def test_the_fused_clip_matches_the_generic_sequence(dtype, size):
    from bpcore import get_backend
    from bpcore.backends.ops.clipping import clip_norm_inplace_generic

    fused = get_backend("cpu", kernels="fused").ops.clip_norm_inplace
    rng = np.random.default_rng(size)
    close = {"rtol": 2e-6, "atol": 0} if dtype == np.float32 else {"rtol": 1e-13, "atol": 0}
    for scale, limit in ((1e-3, 10.0), (1.0, 1.0), (100.0, 0.5), (1.0, 0.0), (1e-30, 1.0)):
        grad = (rng.standard_normal(size) * scale).astype(dtype)
        expected = grad.copy()
        total, reference = np.zeros((), dtype), np.zeros((), dtype)
        assert fused(grad, limit, total) is total
        clip_norm_inplace_generic(np, expected, limit, reference)
        np.testing.assert_allclose(total, reference, **close)
        np.testing.assert_allclose(grad, expected, **close)
        norm = np.sqrt(np.sum(expected.astype(np.float64) ** 2))
        assert norm <= limit * (1 + 1e-5) + 1e-30 or size == 0


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_the_fused_clip_propagates_a_non_finite_norm(bad):
    from bpcore import get_backend

    grad = np.ones(9, np.float32)
    grad[4] = bad
    total = np.zeros((), np.float32)
    get_backend("cpu", kernels="fused").ops.clip_norm_inplace(grad, 1.0, total)
    assert not np.isfinite(total)
    assert np.isnan(grad[4])  # scaled by 0 (inf) or NaN: as torch's clip


def test_the_fused_clip_takes_a_strided_buffer():
    from bpcore import get_backend

    wide = np.random.default_rng(0).standard_normal(40).astype(np.float32) * 10
    before = wide.copy()
    expected = wide[::2].copy()
    got = wide[::2]
    total, reference = np.zeros((), np.float32), np.zeros((), np.float32)
    get_backend("cpu", kernels="fused").ops.clip_norm_inplace(got, 1.0, total)
    get_backend("cpu", kernels="generic").ops.clip_norm_inplace(expected, 1.0, reference)
    np.testing.assert_allclose(got, expected, rtol=2e-6)
    np.testing.assert_array_equal(wide[1::2], before[1::2])  # the entries in between are untouched


@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_grad_norm_of_a_whole_network_equals_the_per_parameter_way(dtype, kernels):
    """The fused flat path and the checked per-parameter path give the same clip."""
    from bpcore.optim import clip_grad_norm

    whole, parts = mlp([3, 8, 2], dtype=dtype), mlp([3, 8, 2], dtype=dtype)
    rng = np.random.default_rng(4)
    for net in (whole, parts):
        net.store.grad[...] = rng.standard_normal(net.store.size) * 5
        rng = np.random.default_rng(4)
    total = clip_grad_norm(whole.parameters(), 1.5)
    reference = clip_grad_norm(list(reversed(parts.parameters())), 1.5)  # not the store's order
    close = 1e-6 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(total, reference, rtol=close)
    np.testing.assert_allclose(whole.store.grad, parts.store.grad, rtol=close, atol=close)
    assert total.shape == () and total.dtype == np.dtype(dtype)
    with pytest.raises(RuntimeError, match="non-finite"):
        whole.store.grad[0] = np.nan
        clip_grad_norm(whole.parameters(), 1.0, error_if_nonfinite=True)
