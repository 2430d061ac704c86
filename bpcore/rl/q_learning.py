"""The loss and target of a DQN update, each one pass over the batch on the CPU.

A Double DQN update written with the general pieces (``Gather``, ``Huber``,
array operations) makes a dozen and a half calls on arrays of a few dozen
rows, each costing more to start than to run.  These two do the same
arithmetic in one call each (see :mod:`bpcore.backends.ops.q_learning`)::

    target_of, loss = bpcore.rl.DoubleQTarget(gamma=0.99), bpcore.rl.ChosenHuber()
    td_target = target_of(online.forward(next_obs, check=False), target.forward(next_obs, check=False),
                          rewards, dones, check=False)
    loss(online.forward(obs, training=True, check=False), actions, td_target, weights, check=False)
    online.backward(loss.backward(), check=False, input_grad=False, accumulate=False)  # no zero_grad
    priorities_from = loss.td_errors

They are PyTorch's ``r + gamma * (1 - done) * q_target.gather(1, q_online.argmax(1, keepdim=True))``
and ``(w * huber_loss(q.gather(1, a[:, None]).squeeze(1), td_target, reduction="none")).mean()``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import checks
from ..backends import Backend, backend_of, device_scope
from ..interop import import_array, to_backend


def _values(array: Any, argument: str) -> Any:
    array = import_array(array, argument=argument)
    if array.ndim != 2 or array.dtype.kind != "f":
        raise ValueError(
            f"{argument}: expected a 2-D float array (samples, actions), got {array.dtype} of shape "
            f"{tuple(array.shape)}"
        )
    return array


def _per_row(array: Any, backend: Backend, dtype: Any, rows: int, argument: str) -> Any:
    """``array`` as one value per row, in ``dtype`` on ``backend``'s device (shape (rows,) or (rows, 1))."""
    array = import_array(array, argument=argument)
    if array.dtype.kind not in "biuf" or tuple(array.shape) not in ((rows,), (rows, 1)):
        raise ValueError(
            f"{argument}: expected {rows} numbers (one per sample), got {array.dtype} of shape "
            f"{tuple(array.shape)}"
        )
    return to_backend(array, backend, dtype).reshape(rows)


def _actions(array: Any, backend: Backend, rows: int, choices: int) -> Any:
    array = import_array(array, argument="actions")
    if array.dtype.kind not in "iu":
        raise TypeError(f"actions: expected an integer array, got dtype {array.dtype}")
    if tuple(array.shape) != (rows,):
        raise ValueError(
            f"actions: expected shape ({rows},) (one action per sample), got {tuple(array.shape)}"
        )
    array = backend.asarray(array, dtype=np.int64)
    if rows and not bool(((array >= 0) & (array < choices)).all()):
        raise ValueError(f"actions: every entry must be in [0, {choices}), got values outside it")
    return array


class DoubleQTarget:
    """The Double DQN target ``rewards + gamma * (1 - dones) * target_next_q[i, argmax(online_next_q[i])]``.

    ``target_of(online_next_q, target_next_q, rewards, dones)`` takes the two
    networks' Q-values of the next states, (n, k) (the online network
    chooses the action, the target network values it), and one reward and
    done flag (1.0 where the episode ended) per sample, and returns the (n,)
    targets in the Q-values' dtype on their device: a buffer reused by the
    next call (copy to keep it).  ``check=False`` trusts the arguments:
    arrays of that dtype on that device, of the right shapes.
    """

    def __init__(self, gamma: float = 0.99) -> None:
        self.gamma = checks.real(gamma, "DoubleQTarget(gamma)")
        self._backend: Backend | None = None
        self._out: Any = None

    def __repr__(self) -> str:
        return f"DoubleQTarget(gamma={self.gamma!r})"

    def __call__(
        self, online_next_q: Any, target_next_q: Any, rewards: Any, dones: Any, *, check: bool = True
    ) -> Any:
        if check:
            online_next_q = _values(online_next_q, "online_next_q")
            target_next_q = _values(target_next_q, "target_next_q")
            if target_next_q.shape != online_next_q.shape or target_next_q.dtype != online_next_q.dtype:
                raise ValueError(
                    f"target_next_q: expected {online_next_q.dtype} of shape {tuple(online_next_q.shape)} "
                    f"(online_next_q's), got {target_next_q.dtype} of shape {tuple(target_next_q.shape)}"
                )
        backend = self._backend
        if backend is None or not backend.owns(online_next_q):
            backend = self._backend = backend_of(online_next_q)
        with device_scope(backend):  # the Q-values' GPU current, whichever the calling thread has
            return self._target(backend, online_next_q, target_next_q, rewards, dones, check)

    def _target(self, backend: Backend, online_next_q: Any, target_next_q: Any, rewards: Any, dones: Any,
                check: bool) -> Any:
        rows, dtype = online_next_q.shape[0], online_next_q.dtype
        if check:
            target_next_q = backend.asarray(target_next_q)
            rewards = _per_row(rewards, backend, dtype, rows, "rewards")
            dones = _per_row(dones, backend, dtype, rows, "dones")
        out = self._out
        if out is None or out.shape != (rows,) or out.dtype != dtype or not backend.owns(out):
            out = self._out = backend.empty((rows,), dtype)
        return backend.ops.double_q_target(online_next_q, target_next_q, rewards, dones, self.gamma, out)


class ChosenHuber:
    """The Huber loss on the Q-values of the actions taken, importance-weighted: a DQN's loss in one pass.

    ``loss(q, actions, td_target, weights)`` is ``mean_i weights[i] *
    huber(q[i, actions[i]] - td_target[i])`` (``reduction="sum"``: the sum;
    no ``weights``: all ones), with ``huber`` PyTorch's ``HuberLoss`` of
    ``delta``, returned as a 0-d array on ``q``'s device; ``backward()`` is
    dLoss/dq, shape (n, k), zero except at the chosen entries; ``td_errors``
    is ``q[i, actions[i]] - td_target[i]`` (for a prioritised replay's
    priorities).  Both are buffers reused by the next call (copy to keep
    them).  This is ``Gather``, ``Huber``, the weighting and the gradient's
    scatter back to (n, k) in one call, with the same gradient bits.

    ``check=False`` trusts the arguments: ``q`` a C-contiguous 2-D float
    array, ``actions`` int64 in ``[0, k)``, ``td_target`` and ``weights``
    ``q``'s dtype, all on ``q``'s device, one value per row.  An action out
    of range is then undefined behaviour, as in a CUDA kernel.
    """

    def __init__(self, delta: float = 1.0, *, reduction: str = "mean") -> None:
        self.delta = checks.positive(delta, "ChosenHuber(delta)")
        self.reduction = checks.choice(reduction, "reduction", ("mean", "sum"))
        self._backend: Backend | None = None
        self._buffers: dict[str, Any] = {}
        self._ones: Any = None
        self._grad: Any = None
        self._td_errors: Any = None

    def __repr__(self) -> str:
        return f"ChosenHuber(delta={self.delta!r}, reduction={self.reduction!r})"

    @property
    def td_errors(self) -> Any:
        """``q[i, actions[i]] - td_target[i]`` of the last call, shape (n,)."""
        if self._td_errors is None:
            raise RuntimeError("ChosenHuber.td_errors: call the loss on (q, actions, td_target) first")
        return self._td_errors

    def __call__(
        self, q: Any, actions: Any, td_target: Any, weights: Any = None, *, check: bool = True
    ) -> Any:
        backend = self._backend
        if check:
            q = _values(q, "q")
        if backend is None or not backend.owns(q):
            backend = self._backend = backend_of(q)
            self._buffers = {}
        with device_scope(backend):  # q's GPU current, whichever the calling thread has
            return self._loss(backend, q, actions, td_target, weights, check)

    def _loss(self, backend: Backend, q: Any, actions: Any, td_target: Any, weights: Any, check: bool) -> Any:
        rows, choices = q.shape
        if check:
            q = backend.xp.ascontiguousarray(q)
            actions = _actions(actions, backend, rows, choices)
            td_target = _per_row(td_target, backend, q.dtype, rows, "td_target")
            if weights is not None:
                weights = _per_row(weights, backend, q.dtype, rows, "weights")
        if weights is None:
            weights = self._buffer("ones", backend, (rows,), q.dtype, fill=1.0)
        grad = self._buffer("grad", backend, q.shape, q.dtype)
        td_errors = self._buffer("td_errors", backend, (rows,), q.dtype)
        total = backend.empty((), q.dtype)
        scale = 1.0 / rows if self.reduction == "mean" else 1.0
        backend.ops.chosen_huber(q, actions, td_target, weights, self.delta, scale, grad, td_errors, total)
        self._grad, self._td_errors = grad, td_errors
        return total

    def backward(self) -> Any:
        """dLoss/dq for the last call, shape (n, k) (a buffer reused by the next call)."""
        if self._grad is None:
            raise RuntimeError("ChosenHuber.backward(): call the loss on (q, actions, td_target) first")
        return self._grad

    def _buffer(
        self, key: str, backend: Backend, shape: tuple[int, ...], dtype: Any, fill: Any = None
    ) -> Any:
        array = self._buffers.get(key)
        if array is None or array.shape != shape or array.dtype != dtype:
            array = self._buffers[key] = backend.empty(shape, dtype)
            if fill is not None:
                array.fill(fill)
        return array
