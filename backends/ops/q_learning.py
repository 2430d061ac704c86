"""The Q-learning steps of a DQN update, each one pass over the batch.

* ``double_q_target(online, target, rewards, dones, gamma, out)``: the Double
  DQN target ``out[i] = rewards[i] + gamma * (1 - dones[i]) * target[i, argmax(online[i])]``
  for the next states' Q-values of the online network (which chooses the
  action) and of the target network (which values it), both (n, k); the
  product is taken as ``target * (1 - done) * gamma + reward``, in the arrays'
  dtype, the order a loop written with array operations takes.
* ``chosen_huber(q, actions, target, weights, delta, scale, grad, td_error, total)``:
  the importance-weighted Huber loss on the Q-values of the actions taken,
  ``scale * sum_i weights[i] * huber_delta(q[i, actions[i]] - target[i])``
  into the 0-d ``total`` (summed in float64), the TD errors
  ``td_error[i] = q[i, actions[i]] - target[i]``, and dLoss/dq into ``grad``
  (n, k): ``clip(td_error[i], -delta, delta) * scale * weights[i]`` at
  ``[i, actions[i]]``, 0 elsewhere (``grad`` is fully written).  ``scale`` is
  ``1 / n`` for the mean, 1 for the sum.  This is ``Gather``, ``Huber``, its
  backward, the weighting and the scatter back to (n, k) in one call; the
  gradient has the bits of that sequence of array operations.

Actions are trusted here (the caller checks them once).  No CUDA versions:
on a GPU the generic versions run, a handful of CuPy kernels each.
"""

from __future__ import annotations

from typing import Any

from ..kernels import cpu as kcpu
from .registry import Numba, declare

_MODULE = "q_learning_numba"


def _double_q_target_cpu(kernel: Any, generic: Any) -> Any:
    def double_q_target(online, target, rewards, dones, gamma, out):  # type: ignore[no-untyped-def]
        if online.ndim != 2 or target.shape != online.shape or out.shape != online.shape[:1]:
            return generic(online, target, rewards, dones, gamma, out)
        kcpu.pick(kernel, online.size, "rows")(
            online, target, rewards.reshape(-1), dones.reshape(-1), out.dtype.type(gamma), out
        )
        return out

    return double_q_target


@declare(
    "double_q_target",
    "out = rewards + gamma * (1 - dones) * target[i, argmax(online[i])] (Double DQN)",
    cpu=Numba(_double_q_target_cpu, _MODULE),
)
def double_q_target(
    xp: Any, online: Any, target: Any, rewards: Any, dones: Any, gamma: float, out: Any
) -> Any:
    best = online.argmax(axis=1)
    next_q = xp.take_along_axis(target, best[:, None], axis=1)[:, 0]
    xp.subtract(1, dones, out=out)
    xp.multiply(next_q, out, out=out)
    out *= out.dtype.type(gamma)
    out += rewards
    return out


def _chosen_huber_cpu(kernel: Any, generic: Any) -> Any:
    def chosen_huber(q, actions, target, weights, delta, scale, grad, td_error, total):  # type: ignore[no-untyped-def]
        if q.ndim != 2 or grad.shape != q.shape or total.shape != () or td_error.shape != q.shape[:1]:
            return generic(q, actions, target, weights, delta, scale, grad, td_error, total)
        scalar = q.dtype.type
        kcpu.pick(kernel, q.size, "rows")(
            q, actions, target.reshape(-1), weights.reshape(-1), scalar(delta), scalar(scale), grad,
            td_error, total.reshape(1),
        )
        return total

    return chosen_huber


@declare(
    "chosen_huber",
    "total = scale * sum(w * huber(q[i, a_i] - t_i)); td_error; grad = d/dq (DQN loss)",
    cpu=Numba(_chosen_huber_cpu, _MODULE),
)
def chosen_huber(
    xp: Any, q: Any, actions: Any, target: Any, weights: Any, delta: float, scale: float, grad: Any,
    td_error: Any, total: Any,
) -> Any:
    scalar = q.dtype.type
    rows = xp.arange(q.shape[0])
    xp.subtract(q[rows, actions], target.reshape(-1), out=td_error)
    size = xp.abs(td_error)
    inner = xp.minimum(size, scalar(delta)).astype(xp.float64)
    per_row = inner * (size.astype(xp.float64) - 0.5 * inner)
    total[...] = (weights.reshape(-1).astype(xp.float64) * per_row).sum() * float(scalar(scale))
    clipped = xp.minimum(xp.maximum(td_error, -scalar(delta)), scalar(delta))
    clipped *= scalar(scale)
    clipped *= weights.reshape(-1)
    grad.fill(0)
    grad[rows, actions] = clipped
    return total
