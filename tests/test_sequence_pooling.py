"""GlobalMaxPool1D and GlobalAvgPool1D: PyTorch's values, masks (padding anywhere), gradients, errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import bpcore
from bpcore.gradcheck import gradcheck
from bpcore.layers import GRU, Bidirectional, Dense, Embedding, GlobalAvgPool1D, GlobalMaxPool1D, Reshape
from bpcore.losses import CrossEntropy

POOLS = [GlobalMaxPool1D, GlobalAvgPool1D]
# Real steps at the end, at the start, in between, none at all, and all of them.
MASK = np.array(
    [[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 0, 1, 0, 1], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=bool
)


def pooled(kind: type, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The pooling of each sequence's real steps alone, zeros for a sequence without any."""
    rows = []
    for sequence, real in zip(x, mask, strict=True):
        steps = sequence[real]
        if not len(steps):
            rows.append(np.zeros(x.shape[2]))
        else:
            rows.append(steps.max(axis=0) if kind is GlobalMaxPool1D else steps.mean(axis=0))
    return np.array(rows)


def network(*layers: Any, dtype: str = "float64", device: str = "cpu") -> bpcore.Network:
    return bpcore.Network(list(layers), dtype=dtype, seed=0, device=device)


@pytest.mark.parametrize("kind", POOLS)
def test_without_a_mask_it_is_pytorchs_max_or_mean_over_time(kind: type) -> None:
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).normal(size=(4, 6, 3))
    t = torch.tensor(x, requires_grad=True)
    expected = t.max(dim=1).values if kind is GlobalMaxPool1D else t.mean(dim=1)
    grad_out = np.random.default_rng(1).normal(size=(4, 3))
    expected.backward(torch.tensor(grad_out))
    layer = kind()
    net = network(layer)
    np.testing.assert_allclose(net.forward(x), expected.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(layer.backward(grad_out), t.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", POOLS)
def test_a_mask_leaves_the_padded_steps_out_wherever_they_are(
    kind: type, dtype: str, device_name: str
) -> None:
    x = np.random.default_rng(2).normal(size=(5, 5, 4)) - 3.0  # all negative: a zero padded step would win
    net = network(kind(), dtype=dtype, device=device_name)
    out = net.backend.to_numpy(net.forward(x, mask=MASK))
    assert out.dtype == np.dtype(dtype) and out.shape == (5, 4)
    np.testing.assert_allclose(out, pooled(kind, x, MASK), rtol=1e-6 if dtype == "float32" else 1e-12)
    np.testing.assert_array_equal(out[3], 0.0)  # no real step


@pytest.mark.parametrize("kind", POOLS)
def test_padded_steps_and_empty_sequences_get_no_gradient(kind: type) -> None:
    layer = kind()
    net = network(layer)
    x = np.random.default_rng(3).normal(size=(5, 5, 4))
    net.forward(x, mask=MASK)
    grad_in = layer.backward(np.ones((5, 4)))
    np.testing.assert_array_equal(grad_in[~MASK], 0.0)
    np.testing.assert_allclose(grad_in.sum(axis=(1, 2)), [4, 4, 4, 0, 4])  # each output's gradient once


def test_max_sends_the_gradient_to_the_first_maximal_step() -> None:
    layer = GlobalMaxPool1D()
    network(layer)
    x = np.array([[[1.0], [3.0], [3.0], [2.0]]])
    assert layer.forward(x, False)[0, 0] == 3.0
    np.testing.assert_array_equal(layer.backward(np.array([[5.0]]))[0, :, 0], [0, 5, 0, 0])


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("kind", POOLS)
def test_gradients_match_central_differences(kind: type, seed: int) -> None:
    x = np.random.default_rng(seed).normal(size=(5, 5, 3))
    assert gradcheck(kind(), x, seed=seed) < 1e-6
    assert gradcheck(kind(), x, seed=seed, mask=MASK) < 1e-6


@pytest.mark.parametrize("kind", POOLS)
def test_a_padded_network_pools_what_the_unpadded_sequences_give(kind: type) -> None:
    # Embedding(padding_idx=0) starts the mask; the bidirectional GRU and the pooling skip the padding.
    layers = [Embedding(12, 4, padding_idx=0), Bidirectional(GRU(4, 3, return_sequences=True)), kind(),
              Dense(6, 3)]
    net = network(*layers)
    padded = np.array([[5, 7, 2, 0, 0, 0], [3, 9, 11, 4, 8, 1]])
    out = net.forward(padded)
    np.testing.assert_allclose(out[0], net.forward(padded[:1, :3])[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out[1], net.forward(padded[1:])[0], rtol=1e-12, atol=1e-14)
    assert gradcheck(net, padded, y=np.array([0, 2]), loss=CrossEntropy()) < 1e-5
    assert "(N, 6)" in net.summary((6,))


@pytest.mark.parametrize("kind", POOLS)
def test_input_without_a_time_axis_is_refused_by_name(kind: type) -> None:
    net = network(Reshape((4,)), kind())
    with pytest.raises(ValueError, match=rf"{kind.__name__}\(\): expected sequences of shape \(N, T, F\)"):
        net.forward(np.zeros((2, 4)))


@pytest.mark.parametrize("kind", POOLS)
def test_backward_before_forward_is_an_error(kind: type) -> None:
    layer = kind()
    network(layer)
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.zeros((1, 2)))
