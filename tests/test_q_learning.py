"""The DQN loss and target of bpcore.rl: against the general pieces they replace, finite differences
and NumPy's argmax, on the compiled and the generic CPU kernels."""

from __future__ import annotations

import numpy as np
import pytest

from bpcore import Gather
from bpcore.losses import Huber
from bpcore.rl import ChosenHuber, DoubleQTarget

DTYPES = [np.float32, np.float64]


@pytest.fixture(params=["fused", "generic"])
def kernels(request, monkeypatch):
    monkeypatch.setenv("BPCORE_KERNELS", request.param)
    return request.param


def replay_batch(dtype, n=64, k=3, seed=0):
    rng = np.random.default_rng(seed)
    q = (2.0 * rng.normal(size=(n, k))).astype(dtype)
    actions = rng.integers(0, k, size=n)
    target = rng.normal(size=n).astype(dtype)
    weights = rng.uniform(0.2, 1.0, size=n).astype(dtype)
    return q, actions, target, weights


@pytest.mark.parametrize("dtype", DTYPES)
def test_chosen_huber_has_the_gradient_bits_of_gather_huber_and_weighting(dtype, kernels):
    q, actions, target, weights = replay_batch(dtype)
    loss = ChosenHuber()
    value = loss(q, actions, target, weights)
    pick, huber = Gather(), Huber()
    chosen = pick(q, actions)
    huber(chosen, target)
    grad = huber.backward().copy()
    grad *= weights
    np.testing.assert_array_equal(loss.backward(), pick.backward(grad))
    np.testing.assert_array_equal(loss.td_errors, chosen - target)
    d = (chosen - target).astype(np.float64)
    per_row = np.where(np.abs(d) < 1.0, 0.5 * d * d, np.abs(d) - 0.5)
    np.testing.assert_allclose(float(value), np.mean(weights * per_row), rtol=1e-6)
    assert value.shape == () and value.dtype == dtype


@pytest.mark.parametrize("check", [True, False])
def test_chosen_huber_gradient_matches_finite_differences(check, kernels):
    q, actions, target, weights = replay_batch(np.float64, n=8)
    loss = ChosenHuber(delta=0.7, reduction="sum")
    loss(q, actions, target, weights, check=check)
    analytic = loss.backward().copy()
    numeric = np.zeros_like(q)
    eps = 1e-6
    for index in np.ndindex(*q.shape):
        step = np.zeros_like(q)
        step[index] = eps
        numeric[index] = (float(loss(q + step, actions, target, weights)) -
                          float(loss(q - step, actions, target, weights))) / (2 * eps)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


def test_chosen_huber_without_weights_is_the_plain_huber_mean(kernels):
    q, actions, target, _ = replay_batch(np.float64)
    value = ChosenHuber(delta=2.0)(q, actions, target)
    expected = Huber(delta=2.0)(Gather()(q, actions), target)
    np.testing.assert_allclose(float(value), float(expected), rtol=1e-12)


def test_chosen_huber_refuses_bad_input():
    q, actions, target, _ = replay_batch(np.float32, n=4)
    loss = ChosenHuber()
    with pytest.raises(ValueError, match=r"actions: every entry must be in \[0, 3\)"):
        loss(q, np.array([0, 1, 3, 0]), target)
    with pytest.raises(TypeError, match="actions: expected an integer array"):
        loss(q, actions.astype(np.float32), target)
    with pytest.raises(ValueError, match="td_target: expected 4 numbers"):
        loss(q, actions, target[:3])
    with pytest.raises(ValueError, match="q: expected a 2-D float array"):
        loss(q[:, 0], actions, target)
    with pytest.raises(RuntimeError, match="call the loss"):
        ChosenHuber().backward()
    with pytest.raises(ValueError):
        ChosenHuber(delta=0.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_double_q_target_has_the_bits_of_argmax_gather_and_array_operations(dtype, kernels):
    rng = np.random.default_rng(1)
    online, values = rng.normal(size=(64, 3)).astype(dtype), rng.normal(size=(64, 3)).astype(dtype)
    online[:4] = [[1.0, 1.0, 0.0], [0.0, np.nan, 2.0], [np.nan, 5.0, np.nan], [-1.0, 0.0, 0.0]]  # ties, NaN
    rewards = rng.normal(size=64).astype(dtype)
    dones = (rng.random(64) < 0.3).astype(dtype)
    expected = values[np.arange(64), online.argmax(axis=1)] * (1.0 - dones)
    expected *= dtype(0.99)
    expected += rewards
    target_of = DoubleQTarget(gamma=0.99)
    np.testing.assert_array_equal(target_of(online, values, rewards, dones), expected)
    out = target_of(online, values, rewards, dones, check=False)
    np.testing.assert_array_equal(out, expected)
    assert out is target_of(online, values, rewards, dones, check=False)  # a buffer, reused


def test_double_q_target_refuses_mismatched_q_values():
    target_of = DoubleQTarget()
    with pytest.raises(ValueError, match="target_next_q: expected float32 of shape"):
        target_of(np.zeros((4, 2), np.float32), np.zeros((4, 3), np.float32), np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match="dones: expected 4 numbers"):
        target_of(np.zeros((4, 2)), np.zeros((4, 2)), np.zeros(4), np.zeros(5))
