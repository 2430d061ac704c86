"""Experience replay for deep Q-learning: uniform and prioritised.

Both buffers keep transitions ``(observation, action, reward,
next_observation, done)`` in preallocated ring arrays on the host (the
oldest transition is overwritten once ``capacity`` is reached) and return
sampled batches as arrays on the device the buffer was made for, in the
network's dtype, ready for ``network.forward``.  A prioritised buffer draws
transition ``i`` with probability ``p_i**alpha / sum_k p_k**alpha``
(Schaul et al., 2016, proportional variant) through a :class:`SumTree`, and
returns the importance-sampling weights ``(N * P(i))**-beta`` divided by
their maximum over the batch, as in the paper's algorithm.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import numpy as np

from ..backends import DeviceLike, get_backend
from ..interop import host_array
from ..validation import check_dtype
from .sum_tree import SumTree


class Transitions(NamedTuple):
    """A sampled batch; ``weights`` are all ones for uniform sampling."""

    observations: Any
    actions: Any
    rewards: Any
    next_observations: Any
    dones: Any
    weights: Any
    indices: np.ndarray


def _positive_int(value: Any, argument: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{argument}: expected a positive integer, got {value!r}")
    return int(value)


def _shape(value: Any, argument: str) -> tuple[int, ...]:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    try:
        shape = tuple(int(s) for s in value)
    except TypeError:
        raise TypeError(f"{argument}: expected a shape (a tuple of integers), got {value!r}") from None
    if any(s < 1 for s in shape):
        raise ValueError(f"{argument}: expected positive sizes, got {shape}")
    return shape


class ReplayBuffer:
    """A ring buffer of transitions, sampled uniformly.

    ``observation_shape`` is one observation's shape; ``action_shape`` is
    ``()`` for a discrete action (stored as ``action_dtype``, int64 by
    default) or e.g. ``(2,)`` for a continuous one.  Observations, rewards
    and done flags are stored in ``dtype`` (the network's) and sampled onto
    ``device`` (default: the current device).  ``seed`` makes sampling
    reproducible.
    """

    def __init__(
        self,
        capacity: int,
        observation_shape: Any,
        *,
        action_shape: Any = (),
        action_dtype: Any = "int64",
        dtype: str | np.dtype = "float32",
        device: DeviceLike | None = None,
        seed: int | None = None,
    ) -> None:
        self.capacity = _positive_int(capacity, "capacity")
        self.observation_shape = _shape(observation_shape, "observation_shape")
        self.action_shape = () if action_shape == () else _shape(action_shape, "action_shape")
        self.dtype = check_dtype(dtype)
        self.action_dtype = np.dtype(action_dtype)
        self.backend = get_backend(device)
        self.rng = np.random.default_rng(seed)
        n = self.capacity
        self.observations = np.zeros((n, *self.observation_shape), self.dtype)
        self.next_observations = np.zeros((n, *self.observation_shape), self.dtype)
        self.actions = np.zeros((n, *self.action_shape), self.action_dtype)
        self.rewards = np.zeros(n, self.dtype)
        self.dones = np.zeros(n, self.dtype)
        self._position = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def _batched(self, value: Any, shape: tuple[int, ...], dtype: np.dtype, argument: str) -> np.ndarray:
        array = host_array(value, dtype)
        if array.shape == shape:
            return array[None]
        if array.shape[1:] != shape or array.ndim != len(shape) + 1:
            raise ValueError(f"{argument}: expected shape {shape} or (n, *{shape}), got {array.shape}")
        return array

    def add(self, observation: Any, action: Any, reward: Any, next_observation: Any, done: Any) -> np.ndarray:
        """Store one transition, or a batch of them (a leading axis on every argument).

        Returns the slots written.  Values are checked (shapes, finite
        observations and rewards) before anything is stored.
        """
        obs = self._batched(observation, self.observation_shape, self.dtype, "observation")
        nxt = self._batched(next_observation, self.observation_shape, self.dtype, "next_observation")
        act = self._batched(action, self.action_shape, self.action_dtype, "action")
        rew = self._batched(reward, (), self.dtype, "reward")
        don = self._batched(done, (), self.dtype, "done")
        count = obs.shape[0]
        if not all(a.shape[0] == count for a in (nxt, act, rew, don)):
            raise ValueError(
                "add: every argument must hold the same number of transitions, got "
                f"{[a.shape[0] for a in (obs, act, rew, nxt, don)]}"
            )
        if count > self.capacity:
            raise ValueError(f"add: {count} transitions do not fit a buffer of capacity {self.capacity}")
        if not (np.isfinite(obs).all() and np.isfinite(nxt).all() and np.isfinite(rew).all()):
            raise ValueError("add: observations and rewards must be finite (found NaN or Inf)")
        slots = (self._position + np.arange(count)) % self.capacity
        self.observations[slots] = obs
        self.next_observations[slots] = nxt
        self.actions[slots] = act
        self.rewards[slots] = rew
        self.dones[slots] = don
        self._position = int((self._position + count) % self.capacity)
        self._size = min(self._size + count, self.capacity)
        self._stored(slots)
        return slots

    def _stored(self, slots: np.ndarray) -> None:
        """Hook for subclasses: ``slots`` were just written."""

    def _check_batch(self, batch_size: int) -> int:
        batch_size = _positive_int(batch_size, "batch_size")
        if self._size == 0:
            raise ValueError("sample: the buffer is empty; add transitions first")
        return batch_size

    def sample(self, batch_size: int) -> Transitions:
        """``batch_size`` transitions drawn uniformly with replacement, on the buffer's device."""
        batch_size = self._check_batch(batch_size)
        indices = self.rng.integers(0, self._size, size=batch_size)
        return self._gather(indices, None)

    def _gather(self, indices: np.ndarray, weights: np.ndarray | None) -> Transitions:
        put = self.backend.asarray
        if weights is None:
            weights = np.ones(indices.shape[0], self.dtype)
        return Transitions(
            put(self.observations[indices]),
            put(self.actions[indices]),
            put(self.rewards[indices]),
            put(self.next_observations[indices]),
            put(self.dones[indices]),
            put(weights.astype(self.dtype, copy=False)),
            indices,
        )


class PrioritizedReplayBuffer(ReplayBuffer):
    """Proportional prioritised replay (Schaul et al., 2016) over a sum tree.

    New transitions get the largest priority seen so far, so each is
    replayed at least once soon.  After learning from a batch, call
    :meth:`update_priorities` with its ``indices`` and the TD errors; the
    stored priority is ``(|td_error| + eps) ** alpha``.  ``beta`` rises
    linearly to ``beta_final`` over ``beta_steps`` calls of :meth:`sample`
    (the usual annealing; ``beta_steps=None`` keeps it fixed); set
    ``buffer.beta`` to drive it yourself.
    """

    alpha: float
    beta: float
    beta_final: float
    beta_steps: int | None
    eps: float
    tree: SumTree
    _beta_start: float
    _max_priority: float
    _samples: int

    def __init__(
        self,
        capacity: int,
        observation_shape: Any,
        *,
        alpha: float = 0.6,
        beta: float = 0.4,
        beta_final: float = 1.0,
        beta_steps: int | None = None,
        eps: float = 1e-6,
        **options: Any,
    ) -> None:
        super().__init__(capacity, observation_shape, **options)
        for argument, value in (("alpha", alpha), ("beta", beta), ("beta_final", beta_final)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1e6:
                raise ValueError(f"{argument}: expected a number >= 0, got {value!r}")
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 < eps < math.inf:
            raise ValueError(f"eps: expected a positive number, got {eps!r}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self._beta_start, self.beta_final = float(beta), float(beta_final)
        self.beta_steps = None if beta_steps is None else _positive_int(beta_steps, "beta_steps")
        self.eps = float(eps)
        self.tree = SumTree(self.capacity)
        self._max_priority = 1.0
        self._samples = 0

    def _stored(self, slots: np.ndarray) -> None:
        self.tree.update(slots, np.full(slots.shape[0], self._max_priority**self.alpha))

    def sample(self, batch_size: int) -> Transitions:
        """``batch_size`` transitions drawn in proportion to ``priority**alpha`` (stratified), weighted."""
        batch_size = self._check_batch(batch_size)
        total = self.tree.total
        mass = (np.arange(batch_size) + self.rng.random(batch_size)) * (total / batch_size)
        indices = self.tree.find(np.minimum(mass, np.nextafter(total, 0.0)))
        probabilities = self.tree.get(indices) / total
        weights = (self._size * probabilities) ** -self.beta
        weights /= weights.max()
        self._samples += 1
        if self.beta_steps is not None:
            progress = min(1.0, self._samples / self.beta_steps)
            self.beta = self._beta_start + progress * (self.beta_final - self._beta_start)
        return self._gather(indices, weights)

    def update_priorities(self, indices: Any, td_errors: Any) -> None:
        """Set the priorities of sampled transitions from their TD errors (host or device arrays)."""
        indices = host_array(indices, np.int64).reshape(-1)
        errors = np.abs(host_array(td_errors, np.float64).reshape(-1))
        if errors.shape != indices.shape:
            raise ValueError(
                f"td_errors: expected {indices.shape[0]} values (one per index), got {errors.size}"
            )
        if not np.isfinite(errors).all():
            raise ValueError("td_errors: contains NaN or Inf")
        if indices.size and (indices.min() < 0 or indices.max() >= self._size):
            raise ValueError(f"indices: expected slots in [0, {self._size}), got values outside it")
        priorities = errors + self.eps
        self._max_priority = max(self._max_priority, float(priorities.max(initial=0.0)))
        self.tree.update(indices, priorities**self.alpha)
