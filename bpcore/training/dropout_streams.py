"""Dropout's random numbers during ``fit``: a fresh generator per epoch, derived on the host.

A checkpoint must let a resumed run draw the same dropout masks as the
uninterrupted one.  On the CPU the network's NumPy generator could simply be
saved, but CuPy's generators cannot be: a ``cupy.random.Generator`` keeps its
cuRAND states in device memory, its bit generator's ``state()`` returns only
a device pointer, and nothing sets a state (CuPy 14's
``cupy/random/_bit_generator.pyx``).  So ``fit`` never relies on a generator's
position across epochs.  When a run starts it draws one integer, the run's
*entropy*, from the network's own dropout generator (seeded from
``Network(seed=...)``); every epoch's masks then come from a new generator on
the network's device seeded from ``SeedSequence(entropy, spawn_key=(epoch,))``.
A checkpoint records the entropy, and resuming re-creates the generator of
each remaining epoch from it: the same masks as the uninterrupted run, on
either device, from one saved integer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backends import Backend, device_scope
from ..layers.base import Layer

#: Entropies are drawn from [0, ENTROPY_BOUND): non-negative int64 values, exact in JSON.
ENTROPY_BOUND = 2**63 - 1


def draws_random(network: Any) -> bool:
    """Whether any layer of ``network`` takes a random generator (one that overrides ``bind_random``)."""
    return any(type(layer).bind_random is not Layer.bind_random for layer in network.walk())


def draw_entropy(network: Any) -> int:
    """One integer from the network's own dropout generator, brought to the host.

    ``integers(low, high, size=1, dtype=int64)`` has the same meaning in
    NumPy and CuPy; CuPy returns a device array (and draws only while the
    generator's device is current), hence the scope and ``to_numpy``.
    """
    with device_scope(network.backend):
        drawn = network._random.integers(0, ENTROPY_BOUND, size=1, dtype=np.int64)
    return int(network.backend.to_numpy(drawn)[0])


def epoch_generator(backend: Backend, entropy: int, epoch: int) -> Any:
    """The generator of ``epoch``'s dropout masks, seeded from ``(entropy, epoch)``, on ``backend``."""
    sequence = np.random.SeedSequence(entropy, spawn_key=(epoch,))
    return backend.random(int(sequence.generate_state(1, np.uint64)[0]))


def bind(network: Any, generator: Any) -> None:
    """Give every layer of ``network`` ``generator`` for its random draws."""
    for layer in network.walk():
        layer.bind_random(generator)


def check_entropy(value: Any) -> int | None:
    """A recorded entropy, checked: None or an integer in [0, ENTROPY_BOUND)."""
    if value is None:
        return None
    if type(value) is not int or not 0 <= value < ENTROPY_BOUND:
        raise ValueError(f"dropout_entropy: expected null or an integer in [0, 2**63 - 1), got {value!r:.40}")
    return value
