"""Concatenate: branches over one input joined on the last axis; masks, gradients, saving, errors."""

from __future__ import annotations

import io

import numpy as np
import pytest

import bpcore
from bpcore.gradcheck import gradcheck
from bpcore.layers import (
    GRU,
    Bidirectional,
    Concatenate,
    Dense,
    Dropout,
    Embedding,
    GlobalAvgPool1D,
    GlobalMaxPool1D,
    Masking,
    Tanh,
)
from bpcore.losses import CrossEntropy
from bpcore.serialization import load, save

# Real steps at the end, at the start, in between, none at all, and all of them.
MASK = np.array(
    [[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 0, 1, 0, 1], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=bool
)
TOKENS = np.array([[3, 4, 5, 0, 0], [1, 2, 0, 0, 0], [7, 8, 9, 2, 1]])


def network(*layers: bpcore.layers.Layer, device: str = "cpu", dtype: str = "float64") -> bpcore.Network:
    return bpcore.Network(list(layers), dtype=dtype, seed=0, device=device)


def text_model() -> bpcore.Network:
    """Embedding, then a bidirectional GRU's maximum beside a small dense read-out of the mean embedding."""
    return network(
        Embedding(10, 4, padding_idx=0),
        Concatenate([Bidirectional(GRU(4, 3, return_sequences=True)), GlobalMaxPool1D()],
                    [GlobalAvgPool1D(), Dense(4, 2), Tanh()]),
        Dense(8, 3),
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_it_joins_what_each_branch_gives_alone_with_the_mask_in_every_branch(
    dtype: str, device_name: str
) -> None:
    x = np.random.default_rng(0).normal(size=(5, 5, 4)) - 3.0  # all negative: a padded step would win the max
    joined = network(Concatenate(GlobalMaxPool1D(), GlobalAvgPool1D()), device=device_name, dtype=dtype)
    for mask in (MASK, None):
        out = joined.backend.to_numpy(joined.forward(x, mask=mask))
        alone = [network(pool(), dtype=dtype).forward(x, mask=mask)
                 for pool in (GlobalMaxPool1D, GlobalAvgPool1D)]
        assert out.shape == (5, 8) and out.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(out, np.concatenate(alone, axis=1))


def test_the_backward_pass_adds_the_branches_input_gradients() -> None:
    x = np.random.default_rng(1).normal(size=(5, 5, 4))
    layer = Concatenate(GlobalMaxPool1D(), [GlobalAvgPool1D(), Dropout(0.0)])
    network(layer).forward(x, mask=MASK)
    grad_out = np.random.default_rng(2).normal(size=(5, 8))
    expected = 0.0
    for pool, part in ((GlobalMaxPool1D(), grad_out[:, :4]), (GlobalAvgPool1D(), grad_out[:, 4:])):
        network(pool).forward(x, mask=MASK)
        expected = expected + pool.backward(part)
    np.testing.assert_allclose(layer.backward(grad_out), expected, rtol=1e-14, atol=1e-15)
    assert layer.backward(grad_out, need_input_grad=False) is None


@pytest.mark.parametrize("seed", [0, 1])
def test_gradients_match_finite_differences(seed: int) -> None:
    x = np.random.default_rng(seed).normal(size=(5, 5, 4))
    branches = ([Dense(4, 3), Tanh(), GlobalMaxPool1D()], GlobalAvgPool1D())
    assert gradcheck(Concatenate(*branches), x, seed=seed) < 1e-6
    branches = ([Dense(4, 3), Tanh(), GlobalMaxPool1D()], GlobalAvgPool1D())
    assert gradcheck(Concatenate(*branches), x, seed=seed, mask=MASK) < 1e-6
    assert gradcheck(text_model(), TOKENS, y=np.array([0, 2, 1]), loss=CrossEntropy()) < 1e-5


def test_a_recurrent_branch_skips_the_padding() -> None:
    net = text_model()
    padded = np.concatenate([TOKENS, np.zeros((3, 4), dtype=TOKENS.dtype)], axis=1)
    np.testing.assert_allclose(net.forward(padded), net.forward(TOKENS), rtol=1e-13, atol=1e-15)
    first = net.forward(TOKENS[:1, :3])  # the first sequence without any padding
    np.testing.assert_allclose(net.forward(TOKENS)[:1], first, rtol=1e-13, atol=1e-15)


def test_the_mask_passes_on_when_the_time_axis_stays() -> None:
    x = np.random.default_rng(3).normal(size=(5, 5, 4)) - 3.0
    layer = Concatenate(Bidirectional(GRU(4, 2, return_sequences=True)), Dense(4, 3))
    joined = network(layer, GlobalMaxPool1D())
    lengths = np.array([3, 5, 1, 0, 2])
    out = joined.forward(x, lengths=lengths)
    assert out.shape == (5, 7)
    np.testing.assert_array_equal(out[3], 0.0)  # no real step: the pooling saw the mask
    for row, length in enumerate(lengths):
        if length:  # the same as the sequence without its padding
            alone = joined.forward(x[row : row + 1, :length])
            np.testing.assert_allclose(out[row : row + 1], alone, rtol=1e-12, atol=1e-15)
    real = np.ones((2, 5), dtype=bool)
    assert layer.compute_mask(x[:2], real) is real and layer.compute_mask(x[:2], None) is None
    assert Concatenate(GlobalMaxPool1D(), GlobalAvgPool1D()).compute_mask(x[:2], real) is None


def test_saved_and_loaded_it_gives_the_same_outputs() -> None:
    net = text_model()
    buffer = io.BytesIO()
    save(net, buffer)
    buffer.seek(0)
    loaded = load(buffer)
    layer = loaded.layers[1]
    assert isinstance(layer, Concatenate) and layer.config() == {"branch_lengths": [2, 3]}
    assert [type(branch[0]).__name__ for branch in layer.branches] == ["Bidirectional", "GlobalAvgPool1D"]
    np.testing.assert_array_equal(loaded.forward(TOKENS), net.forward(TOKENS))


def test_wrong_branches_are_one_clear_error() -> None:
    with pytest.raises(ValueError, match="at least two branches"):
        Concatenate(GlobalMaxPool1D())
    with pytest.raises(ValueError, match="add up to 3, but 2 layers"):
        Concatenate(GlobalMaxPool1D(), GlobalAvgPool1D(), branch_lengths=[2, 1])
    with pytest.raises(ValueError, match="takes indices or starts a mask"):
        Concatenate(Embedding(5, 2), GlobalAvgPool1D())
    with pytest.raises(ValueError, match="takes indices or starts a mask"):
        Concatenate(Masking(), GlobalAvgPool1D())
    with pytest.raises(TypeError, match="must be a bpcore Layer"):
        Concatenate(GlobalMaxPool1D(), [GlobalAvgPool1D(), "relu"])  # type: ignore[list-item]
    pool = GlobalMaxPool1D()
    with pytest.raises(ValueError, match="appears twice"):
        Concatenate(pool, pool)
    with pytest.raises(ValueError, match="agree on every axis but the last"):
        network(Concatenate(Bidirectional(GRU(4, 2, return_sequences=True)), Bidirectional(GRU(4, 2))))
