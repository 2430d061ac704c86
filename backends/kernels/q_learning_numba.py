"""Numba kernels of the Q-learning operations (imported only when Numba is wanted).

One serial pass each over a batch of a few hundred rows (a replay sample):
far below the size where threads pay off.  Each is named after its
operation (:mod:`bpcore.backends.ops.q_learning`) and compiled on first use
(:mod:`.numba_jit`).  Elementwise arithmetic is in the arrays' dtype, in the
order of the generic versions (the scalars arrive rounded to that dtype), so
the targets and gradients are bit-identical to them; only the loss value is
summed in float64.
"""

from __future__ import annotations

import numpy as np

from .numba_jit import serial_kernel


@serial_kernel
def double_q_target(online, target, rewards, dones, gamma, out):  # type: ignore[no-untyped-def]
    rows, cols = online.shape
    one = out.dtype.type(1)
    for r in range(rows):
        best = 0
        top = online[r, 0]
        if top == top:  # NumPy's argmax: the first maximum, or the first NaN
            for c in range(1, cols):
                value = online[r, c]
                if value != value:
                    best = c
                    break
                if value > top:
                    top = value
                    best = c
        out[r] = target[r, best] * (one - dones[r]) * gamma + rewards[r]


@serial_kernel
def chosen_huber(q, actions, target, weights, delta, scale, grad, td_error, total):  # type: ignore[no-untyped-def]
    rows, cols = q.shape
    zero = q.dtype.type(0)
    acc = 0.0
    for r in range(rows):
        chosen = actions[r]
        d = q[r, chosen] - target[r]
        td_error[r] = d
        size = abs(d)
        inner = size if size < delta else delta  # min(|d|, delta); NaN stays NaN
        if size != size:
            inner = size
        wide = np.float64(inner)
        acc += np.float64(weights[r]) * (wide * (np.float64(size) - 0.5 * wide))
        clipped = d  # clip(d, -delta, delta), NaN kept
        if clipped < -delta:
            clipped = -delta
        elif clipped > delta:
            clipped = delta
        g = clipped * scale * weights[r]
        for c in range(cols):
            grad[r, c] = g if c == chosen else zero
    total[0] = acc * np.float64(scale)
