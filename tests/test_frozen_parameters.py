"""Every layer with parameters follows ``requires_grad`` and ``backward(parameter_grads=False)``.

A frozen parameter's gradient is left exactly as it was (no write, no
addition), and every other gradient is what the same network computes with
nothing frozen: for each parameterised layer kind, its fused combinations
(Conv2D + ReLU + MaxPool2D, Dense + ReLU), both kernel modes, both
``accumulate`` settings.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from bpcore import Network
from bpcore.layers import (
    GRU,
    LSTM,
    RNN,
    BatchNorm,
    Bidirectional,
    Conv2D,
    Dense,
    Embedding,
    Flatten,
    MaxPool2D,
    ReLU,
)

STALE = 7.0


def _images(rng: np.random.Generator) -> np.ndarray:
    return rng.normal(size=(3, 2, 6, 6))


def _sequences(rng: np.random.Generator) -> np.ndarray:
    return rng.normal(size=(3, 4, 2))


def _indices(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 5, size=(3, 4))


CASES: dict[str, tuple[Callable[[], list], Callable[[np.random.Generator], np.ndarray]]] = {
    "dense-relu": (lambda: [Dense(4, 5), ReLU(), Dense(5, 2)], lambda rng: rng.normal(size=(6, 4))),
    "batchnorm": (lambda: [Dense(4, 5), BatchNorm(5), Dense(5, 2)], lambda rng: rng.normal(size=(6, 4))),
    "conv-relu-pool": (
        lambda: [Conv2D(2, 3, 3, padding=1), ReLU(), MaxPool2D(2), Flatten(), Dense(27, 2)],
        _images,
    ),
    "conv-groups": (lambda: [Conv2D(2, 4, 3, groups=2), Flatten(), Dense(64, 2)], _images),
    "conv-batchnorm": (lambda: [Conv2D(2, 3, 3), BatchNorm(3), ReLU(), Flatten(), Dense(48, 2)], _images),
    "lstm": (lambda: [LSTM(2, 3), Dense(3, 2)], _sequences),
    "gru-sequences": (lambda: [GRU(2, 3, return_sequences=True), Flatten(), Dense(12, 2)], _sequences),
    "rnn": (lambda: [RNN(2, 3), Dense(3, 2)], _sequences),
    "bidirectional": (lambda: [Bidirectional(GRU(2, 3)), Dense(6, 2)], _sequences),
    "embedding-lstm": (lambda: [Embedding(5, 3), LSTM(3, 4), Dense(4, 2)], _indices),
}


@pytest.fixture(params=["fused", "generic"])
def kernels(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("BPCORE_KERNELS", request.param)
    return str(request.param)


def _forward(case: str) -> tuple[Network, np.ndarray, np.ndarray]:
    """The case's network after one training forward: the network, its input and a gradient for its output."""
    make, data = CASES[case]
    rng = np.random.default_rng(0)
    network = Network(make(), dtype="float64", seed=1)
    x = data(rng)
    out = network.forward(x, training=True)
    return network, x, rng.normal(size=out.shape)


def _gradients(case: str, frozen: int | None, accumulate: bool) -> tuple[Network, np.ndarray]:
    network, _, grad_out = _forward(case)
    if frozen is not None:
        network.parameters()[frozen].requires_grad = False
    network.store.grad[...] = STALE
    network.backward(grad_out, accumulate=accumulate)
    return network, network.store.grad.copy()


@pytest.mark.parametrize("accumulate", [True, False], ids=["accumulate", "write"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_frozen_parameter_keeps_its_gradient_and_the_others_get_theirs(
    case: str, accumulate: bool, kernels: str
) -> None:
    reference_net, reference = _gradients(case, None, accumulate)
    for position, parameter in enumerate(reference_net.parameters()):
        network, grads = _gradients(case, position, accumulate)
        frozen = network.parameters()[position]
        span = slice(frozen.offset, frozen.offset + frozen.size)
        assert (grads[span] == STALE).all(), f"{case}: frozen {parameter.name} got a gradient"
        others = np.ones(grads.size, bool)
        others[span] = False
        np.testing.assert_allclose(
            grads[others], reference[others], rtol=1e-12, atol=1e-12,
            err_msg=f"{case}: freezing {parameter.name} changed the other gradients",
        )


@pytest.mark.parametrize("case", sorted(CASES))
def test_backward_without_parameter_grads_leaves_every_gradient_and_gives_the_input_gradient(
    case: str, kernels: str
) -> None:
    network, x, grad_out = _forward(case)
    full = network.backward(grad_out)
    network.store.grad[...] = STALE
    only_input = network.backward(grad_out, parameter_grads=False)
    assert (network.store.grad == STALE).all()
    if full is not None and np.issubdtype(np.asarray(x).dtype, np.floating):
        np.testing.assert_allclose(only_input, full, rtol=1e-12, atol=1e-12)
