"""An Embedding followed by an RNN, LSTM or GRU runs as one plan entry whose input projection is a lookup.

The fused pair (:class:`bpcore.layers.embedded_recurrent.EmbeddedRecurrent`)
must give what the two layers give one after the other: outputs, every
parameter gradient (the recurrent layer's and the embedding's), with padding
rows, masks, initial states, frozen parameters, on its own gradients checked
by finite differences.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from recurrent_helpers import KINDS, make

import bpcore
from bpcore.layers import Bidirectional, Dense, Embedding
from bpcore.layers.embedded_recurrent import EmbeddedRecurrent
from bpcore.losses import CrossEntropy

VOCABULARY, FEATURES, HIDDEN, N, STEPS = 7, 3, 4, 5, 6


def _network(kind: str, *, fused: bool, sequences: bool, padding_idx: int | None = None,
             dtype: str = "float64") -> bpcore.Network:
    embedding = Embedding(VOCABULARY, FEATURES, padding_idx=padding_idx)
    if not fused:  # the reference: the two layers one after the other
        embedding.absorb = lambda following: False  # type: ignore[method-assign]
    recurrent = make(kind, FEATURES, HIDDEN, return_sequences=sequences)
    return bpcore.Network([embedding, recurrent, Dense(HIDDEN, 3)], dtype=dtype, seed=0)


def _step(net: bpcore.Network, x: np.ndarray, **options: Any) -> tuple[np.ndarray, list[np.ndarray]]:
    net.zero_grad()
    out = net.forward(x, training=True, **options)
    net.backward(np.linspace(-1.0, 1.0, out.size).reshape(out.shape))
    return out, [np.array(parameter.grad) for parameter in net.parameters()]


def _indices(rng: np.random.Generator, low: int = 0) -> np.ndarray:
    return rng.integers(low, VOCABULARY, (N, STEPS))


@pytest.mark.parametrize("kind", KINDS)
def test_the_plan_runs_the_pair_as_one_entry_and_each_layer_keeps_its_meaning(kind: str) -> None:
    net = _network(kind, fused=True, sequences=True)
    assert isinstance(net._plan[0], EmbeddedRecurrent) and len(net._plan) == 2
    net.forward(_indices(np.random.default_rng(0)))
    assert net._plan[0].looked_up
    x = _indices(np.random.default_rng(0))
    embedding = net.layers[0]
    np.testing.assert_array_equal(embedding.forward(x, False), np.asarray(embedding.weight.data)[x])


@pytest.mark.parametrize("sequences", [True, False], ids=["sequences", "last"])
@pytest.mark.parametrize("kind", KINDS)
def test_outputs_and_every_gradient_match_the_two_layers_in_turn(kind: str, sequences: bool) -> None:
    x = _indices(np.random.default_rng(1))
    fused, plain = (_network(kind, fused=f, sequences=sequences) for f in (True, False))
    for _ in range(2):  # twice: the second step reuses every workspace and the loops' views
        out, grads = _step(fused, x)
        expected, expected_grads = _step(plain, x)
        np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-14)
        for got, want in zip(grads, expected_grads, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn-tanh"])
def test_padding_rows_lengths_and_initial_states(kind: str) -> None:
    rng = np.random.default_rng(2)
    x = _indices(rng, low=1)
    lengths = np.array([6, 4, 1, 3, 5])
    x[np.arange(STEPS)[None, :] >= lengths[:, None]] = 0  # padding_idx 0 at the padded steps
    fused, plain = (_network(kind, fused=f, sequences=True, padding_idx=0) for f in (True, False))
    state = [rng.standard_normal((N, HIDDEN)) for _ in range(2 if kind == "lstm" else 1)]
    for net in (fused, plain):
        net.layers[1].initial_state = tuple(state) if kind == "lstm" else state[0]
    out, grads = _step(fused, x)
    expected, expected_grads = _step(plain, x)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-14)
    for got, want in zip(grads, expected_grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)
    np.testing.assert_array_equal(grads[0][0], 0.0)  # the padding row gets no gradient
    shorter = np.minimum(lengths, 4)  # and a mask given with the call combines with the padding's
    out, grads = _step(fused, x, lengths=shorter)
    expected, expected_grads = _step(plain, x, lengths=shorter)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-14)
    for got, want in zip(grads, expected_grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("frozen", ["embedding", "weight_ih", "bias_ih"])
def test_frozen_parameters_get_no_gradient_and_the_others_theirs(frozen: str) -> None:
    x = _indices(np.random.default_rng(3))
    nets = [_network("gru", fused=f, sequences=True) for f in (True, False)]
    for net in nets:
        target = net.layers[0].weight if frozen == "embedding" else getattr(net.layers[1], frozen)
        target.requires_grad = False
    (_, grads), (_, expected) = (_step(net, x) for net in nets)
    for got, want in zip(grads, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_match_finite_differences(kind: str) -> None:
    rng = np.random.default_rng(4)
    x = _indices(rng)
    net = _network(kind, fused=True, sequences=True)
    labels = rng.integers(0, 3, (N, STEPS))
    assert bpcore.gradcheck(net, x, y=labels, loss=CrossEntropy(), seed=1) < 1e-5  # float64 noise ~1e-6


def test_float32_training_matches_the_two_layers() -> None:
    x = _indices(np.random.default_rng(5))
    (out, grads), (expected, want) = (
        _step(_network("lstm", fused=f, sequences=True, dtype="float32"), x) for f in (True, False)
    )
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    for got, reference in zip(grads, want, strict=True):
        np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_a_vocabulary_larger_than_half_the_positions_runs_the_two_layers(kind: str) -> None:
    vocabulary = N * STEPS // 2 + 1
    x = np.random.default_rng(6).integers(0, vocabulary, (N, STEPS))
    nets = []
    for fused in (True, False):
        embedding = Embedding(vocabulary, FEATURES)
        if not fused:
            embedding.absorb = lambda following: False  # type: ignore[method-assign]
        layers = [embedding, make(kind, FEATURES, HIDDEN, return_sequences=True), Dense(HIDDEN, 3)]
        nets.append(bpcore.Network(layers, dtype="float64", seed=0))
    (out, grads), (expected, want) = (_step(net, x) for net in nets)
    assert nets[0]._plan[0].looked_up is False
    np.testing.assert_array_equal(out, expected)
    for got, reference in zip(grads, want, strict=True):
        np.testing.assert_array_equal(got, reference)


def test_only_the_plain_recurrent_classes_are_absorbed() -> None:
    layers = [Embedding(VOCABULARY, FEATURES), Bidirectional(make("gru", FEATURES, HIDDEN))]
    net = bpcore.Network(layers, seed=0)
    assert not any(isinstance(entry, EmbeddedRecurrent) for entry in net._plan)
