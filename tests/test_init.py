"""Initialisers: the torch.nn.init rules, the names, and seeded reproducibility."""

from __future__ import annotations

import math

import numpy as np
import pytest

import bpcore
from bpcore import init
from bpcore.layers import Dense

FAN_IN, FAN_OUT = 300, 200
SHAPE = (FAN_IN, FAN_OUT)


def draw(initializer, seed: int = 0) -> np.ndarray:
    return np.asarray(initializer(np.random.default_rng(seed), SHAPE, FAN_IN, FAN_OUT))


@pytest.mark.parametrize(
    ("name", "bound"),
    [("xavier_uniform", math.sqrt(6 / (FAN_IN + FAN_OUT))), ("he_uniform", math.sqrt(6 / FAN_IN))],
)
def test_uniform_initialisers_fill_their_interval(name: str, bound: float) -> None:
    w = draw(init.INITIALIZERS[name])
    assert w.shape == SHAPE
    assert np.abs(w).max() <= bound
    assert np.abs(w).max() > 0.99 * bound  # the whole interval is used
    assert abs(w.std() - bound / math.sqrt(3)) < 0.02 * bound


@pytest.mark.parametrize(
    ("name", "std"),
    [
        ("xavier_normal", math.sqrt(2 / (FAN_IN + FAN_OUT))),
        ("he_normal", math.sqrt(2 / FAN_IN)),
        ("normal", 0.01),
    ],
)
def test_normal_initialisers_have_the_documented_spread(name: str, std: float) -> None:
    w = draw(init.INITIALIZERS[name])
    assert abs(w.mean()) < 0.02 * std * 10
    assert abs(w.std() - std) < 0.02 * std


def test_constant_initialisers() -> None:
    assert not draw(init.zeros).any()
    assert np.all(draw(init.ones) == 1)


@pytest.mark.parametrize("alias", [("glorot_uniform", "xavier_uniform"), ("kaiming_normal", "he_normal")])
def test_aliases_select_the_same_function(alias: tuple[str, str]) -> None:
    assert init.get_initializer(alias[0]) is init.get_initializer(alias[1])


def test_required_names_exist() -> None:
    for name in ("xavier_uniform", "xavier_normal", "he_uniform", "he_normal", "normal", "zeros"):
        assert init.get_initializer(name) is getattr(init, name)
        assert init.name_of(getattr(init, name)) is not None


def test_unknown_names_and_non_callables_are_refused() -> None:
    with pytest.raises(
        ValueError, match=r"init: expected one of \[.*'he_normal'.*\] or a callable, got 'glorot'"
    ):
        init.get_initializer("glorot")
    with pytest.raises(ValueError, match="bias_init: expected one of"):
        Dense(2, 2, bias_init=3)  # type: ignore[arg-type]


def test_the_same_seed_draws_the_same_values() -> None:
    np.testing.assert_array_equal(draw(init.he_normal, 4), draw(init.he_normal, 4))
    assert not np.array_equal(draw(init.he_normal, 4), draw(init.he_normal, 5))


def test_dense_uses_its_initialisers_with_its_fans() -> None:
    dense = Dense(50, 20, init="he_uniform", bias_init="ones")
    bpcore.Network([dense], dtype="float64", seed=0)
    assert np.abs(dense.weight.data).max() <= math.sqrt(6 / 50)
    assert np.all(dense.bias.data == 1)
    assert dense.config()["init"] in ("he_uniform", "kaiming_uniform")


def test_a_custom_callable_initialiser() -> None:
    seen = {}

    def constant(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int) -> np.ndarray:
        seen.update(shape=shape, fan_in=fan_in, fan_out=fan_out)
        return np.full(shape, 0.25)

    dense = Dense(3, 4, init=constant)
    bpcore.Network([dense], seed=0)
    assert seen == {"shape": (3, 4), "fan_in": 3, "fan_out": 4}
    assert np.all(dense.weight.data == np.float32(0.25))
    assert dense.config()["init"] == "custom"
