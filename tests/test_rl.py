"""Replay buffers: ring storage, uniform and prioritised sampling, the sum tree's invariants."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from bpcore.rl import PrioritizedReplayBuffer, ReplayBuffer, SumTree


def fill(buffer, count, start=0):
    for k in range(start, start + count):
        buffer.add(np.full(4, k), k % 2, float(k), np.full(4, k + 1), k % 3 == 0)


def test_ring_buffer_wraps_around_and_keeps_the_newest():
    buffer = ReplayBuffer(5, 4, seed=0)
    fill(buffer, 7)
    assert len(buffer) == 5
    assert sorted(buffer.rewards.tolist()) == [2.0, 3.0, 4.0, 5.0, 6.0]
    np.testing.assert_array_equal(buffer.observations[0], np.full(4, 5.0))  # slot 0 overwritten by #5
    batch = buffer.sample(64)
    assert batch.observations.shape == (64, 4) and batch.observations.dtype == np.float32
    assert batch.actions.dtype == np.int64 and batch.actions.shape == (64,)
    np.testing.assert_array_equal(batch.next_observations, batch.observations + 1)
    np.testing.assert_array_equal(batch.rewards, batch.observations[:, 0])
    assert (batch.weights == 1).all() and set(batch.indices.tolist()) <= set(range(5))


def test_batched_add_equals_one_at_a_time():
    one, many = ReplayBuffer(6, (2,), seed=1), ReplayBuffer(6, (2,), seed=1)
    obs = np.arange(16.0).reshape(8, 2)
    for k in range(8):
        one.add(obs[k], k, k, obs[k] + 1, False)
    many.add(obs[:5], np.arange(5), np.arange(5), obs[:5] + 1, np.zeros(5))
    many.add(obs[5:], np.arange(5, 8), np.arange(5, 8), obs[5:] + 1, np.zeros(3))
    for name in ("observations", "actions", "rewards", "next_observations", "dones"):
        np.testing.assert_array_equal(getattr(one, name), getattr(many, name))


def test_bad_input_is_refused_and_stores_nothing():
    buffer = ReplayBuffer(4, 3)
    with pytest.raises(ValueError, match="observation"):
        buffer.add(np.zeros(2), 0, 0.0, np.zeros(3), False)
    with pytest.raises(ValueError, match="finite"):
        buffer.add(np.zeros(3), 0, np.nan, np.zeros(3), False)
    assert len(buffer) == 0
    with pytest.raises(ValueError, match="empty"):
        buffer.sample(2)
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(0, 3)


def test_sum_tree_update_and_descent():
    tree = SumTree(5)
    tree.update(np.arange(5), np.array([1.0, 0.0, 2.0, 3.0, 4.0]))
    assert tree.total == 10.0
    found = tree.find(np.array([0.0, 0.99, 1.0, 2.999, 3.0, 5.99, 6.0, 9.999]))
    np.testing.assert_array_equal(found, [0, 0, 2, 2, 3, 3, 4, 4])
    tree.update(np.array([4, 4]), np.array([5.0, 0.5]))  # repeated index: the last value wins
    assert tree.total == 6.5
    # Never a zero-priority leaf, even for mass at the very end.
    assert tree.find(np.array([np.nextafter(6.5, 0)]))[0] == 4


def test_prioritized_sampling_frequencies_follow_priority_power_alpha():
    alpha = 0.6
    buffer = PrioritizedReplayBuffer(50, 4, alpha=alpha, seed=3)
    fill(buffer, 50)
    priorities = np.random.default_rng(0).uniform(0.1, 5.0, size=50)
    buffer.update_priorities(np.arange(50), priorities - buffer.eps)
    counts = np.zeros(50)
    for _ in range(400):
        counts += np.bincount(buffer.sample(100).indices, minlength=50)
    expected = priorities**alpha / (priorities**alpha).sum() * counts.sum()
    # Stratified sampling is less variable than multinomial, so the test is conservative.
    _statistic, p_value = stats.chisquare(counts, expected)
    assert p_value > 1e-3
    np.testing.assert_allclose(counts / counts.sum(), expected / expected.sum(), atol=0.005)


def test_importance_weights_are_normalised_and_beta_anneals():
    buffer = PrioritizedReplayBuffer(8, 4, alpha=1.0, beta=0.4, beta_steps=4, seed=0)
    fill(buffer, 8)
    buffer.update_priorities(np.arange(8), np.arange(1.0, 9.0))
    batch = buffer.sample(32)
    assert batch.weights.max() == pytest.approx(1.0) and (batch.weights > 0).all()
    p = buffer.tree.get(batch.indices) / buffer.tree.total
    expected = (8 * p) ** -0.4
    np.testing.assert_allclose(batch.weights, expected / expected.max(), rtol=1e-6)
    # The rarest transition sampled has the largest weight.
    assert batch.weights[np.argmin(p)] == batch.weights.max()
    assert buffer.beta == pytest.approx(0.4 + 0.6 / 4)
    for _ in range(10):
        buffer.sample(4)
    assert buffer.beta == 1.0


def test_new_transitions_get_the_maximum_priority_and_wrap_around():
    buffer = PrioritizedReplayBuffer(4, 4, alpha=1.0, seed=0)
    fill(buffer, 4)
    buffer.update_priorities([0, 1, 2, 3], [0.5, 7.0, 0.5, 0.5])
    fill(buffer, 2, start=4)  # overwrites slots 0 and 1 with the max priority (7 + eps)
    np.testing.assert_allclose(buffer.tree.get(np.arange(4)), [7.0, 7.0, 0.5, 0.5], atol=1e-5)
    assert len(buffer) == 4
    with pytest.raises(ValueError, match="td_errors"):
        buffer.update_priorities([0], [np.inf])
    with pytest.raises(ValueError, match="indices"):
        buffer.update_priorities([9], [1.0])


def test_samples_land_on_the_requested_device_and_dtype():
    buffer = ReplayBuffer(4, 2, dtype="float64", device="cpu")
    buffer.add(np.ones(2), 1, 1.0, np.ones(2), True)
    batch = buffer.sample(3)
    assert isinstance(batch.observations, np.ndarray) and batch.observations.dtype == np.float64
    assert (batch.dones == 1.0).all()


@pytest.mark.gpu
def test_samples_on_a_gpu():
    import cupy

    buffer = PrioritizedReplayBuffer(4, 2, device="cuda")
    buffer.add(np.ones(2), 1, 1.0, np.ones(2), True)
    batch = buffer.sample(3)
    assert isinstance(batch.observations, cupy.ndarray) and isinstance(batch.weights, cupy.ndarray)
    buffer.update_priorities(batch.indices, cupy.ones(3))
