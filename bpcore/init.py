"""Weight initialisers, selectable by name.

Each initialiser draws a NumPy array on the host from a seeded generator, so
a seeded network starts from the same weights on every device.  The rules and
names follow ``torch.nn.init``: Xavier (Glorot) for sigmoid and tanh
networks, He (Kaiming, fan-in, ReLU gain sqrt(2)) for ReLU networks.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Initializer = Callable[[np.random.Generator, tuple[int, ...], int, int], np.ndarray]


def xavier_uniform(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int) -> np.ndarray:
    """U(-a, a) with a = sqrt(6 / (fan_in + fan_out))."""
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=shape)


def xavier_normal(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int) -> np.ndarray:
    """N(0, std^2) with std = sqrt(2 / (fan_in + fan_out))."""
    return rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), size=shape)


def he_uniform(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int) -> np.ndarray:
    """U(-a, a) with a = sqrt(6 / fan_in) (ReLU gain, fan-in mode)."""
    bound = math.sqrt(6.0 / fan_in)
    return rng.uniform(-bound, bound, size=shape)


def he_normal(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int) -> np.ndarray:
    """N(0, std^2) with std = sqrt(2 / fan_in) (ReLU gain, fan-in mode)."""
    return rng.normal(0.0, math.sqrt(2.0 / fan_in), size=shape)


def normal(
    rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int, std: float = 0.01
) -> np.ndarray:
    """N(0, 0.01^2), the classic tutorials' small random start."""
    return rng.normal(0.0, std, size=shape)


def zeros(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int) -> np.ndarray:
    return np.zeros(shape)


def ones(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int) -> np.ndarray:
    return np.ones(shape)


INITIALIZERS: dict[str, Initializer] = {
    "xavier_uniform": xavier_uniform,
    "glorot_uniform": xavier_uniform,
    "xavier_normal": xavier_normal,
    "glorot_normal": xavier_normal,
    "he_uniform": he_uniform,
    "kaiming_uniform": he_uniform,
    "he_normal": he_normal,
    "kaiming_normal": he_normal,
    "normal": normal,
    "zeros": zeros,
    "ones": ones,
}


def get_initializer(init: str | Initializer, *, argument: str = "init") -> Initializer:
    """Look an initialiser up by name, or pass a callable through."""
    if callable(init):
        return init
    if isinstance(init, str) and init in INITIALIZERS:
        return INITIALIZERS[init]
    raise ValueError(f"{argument}: expected one of {sorted(INITIALIZERS)} or a callable, got {init!r}")


def name_of(init: Initializer) -> str | None:
    """The registered name of an initialiser, or None for a custom one."""
    for name, function in INITIALIZERS.items():
        if function is init:
            return name
    return None
