"""Gradients of recurrent states: ``initial_state_grad`` out, ``final_state_grad`` in (float64, PyTorch)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from recurrent_helpers import KINDS, NAMES, central_difference, make, torch_twin

import bpcore
from bpcore.layers import GRU, LSTM, Bidirectional, mask_from_lengths
from bpcore.layers.recurrent import Recurrent

EPS = 1e-6


def parts(state: Any) -> tuple[Any, ...]:
    return tuple(state) if isinstance(state, tuple) else (state,)


def as_state(layer: Recurrent, arrays: list[np.ndarray]) -> Any:
    return tuple(arrays) if layer.state_count > 1 else arrays[0]


def make_mask(rng: np.random.Generator, n: int, steps: int, masked: str) -> np.ndarray | None:
    if masked == "none":
        return None
    if masked == "lengths":
        return mask_from_lengths(np.array([steps, 0, 2][:n]), steps)
    mask = rng.random((n, steps)) < 0.6  # padding anywhere
    mask[0, 1] = False
    return mask


class Problem:
    """loss = <output, g_out> + <final state, g_final>: both gradients reach the initial state."""

    def __init__(self, kind: str, sequences: bool, masked: str, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.n, self.steps, features, hidden = 3, 5, 2, 3
        self.layer = make(kind, features, hidden, return_sequences=sequences)
        self.net = bpcore.Network([self.layer], dtype="float64", seed=seed)
        self.x = rng.standard_normal((self.n, self.steps, features))
        if kind == "rnn-relu":
            self.x += 0.3  # away from ReLU's kink
        self.mask = make_mask(rng, self.n, self.steps, masked)
        count = self.layer.state_count
        self.start = [rng.standard_normal((self.n, hidden)) * 0.5 for _ in range(count)]
        self.g_final = [rng.standard_normal((self.n, hidden)) for _ in range(count)]
        shape = (self.n, self.steps, hidden) if sequences else (self.n, hidden)
        self.g_out = rng.standard_normal(shape)

    def loss(self) -> float:
        self.layer.initial_state = as_state(self.layer, self.start)
        y = self.layer.forward(self.x, True, mask=self.mask)
        final = parts(self.layer.state)
        through_state = sum((s * g).sum() for s, g in zip(final, self.g_final, strict=True))
        return float((y * self.g_out).sum() + through_state)

    def analytic(self) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        self.loss()
        self.net.zero_grad()
        self.layer.final_state_grad = as_state(self.layer, self.g_final)
        grad_x = self.layer.backward(self.g_out)
        return parts(self.layer.initial_state_grad), grad_x.copy()

    def numeric(self, array: np.ndarray) -> np.ndarray:
        return central_difference(array, self.loss, EPS)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sequences", [False, True])
@pytest.mark.parametrize("masked", ["none", "lengths", "anywhere"])
def test_state_gradients_match_finite_differences(kind: str, sequences: bool, masked: str) -> None:
    problem = Problem(kind, sequences, masked)
    initial_grad, grad_x = problem.analytic()
    weights = {name: getattr(problem.layer, name).grad.copy() for name in NAMES}
    assert problem.layer.final_state_grad is None  # used once
    for got, start in zip(initial_grad, problem.start, strict=True):
        np.testing.assert_allclose(got, problem.numeric(start), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grad_x, problem.numeric(problem.x), rtol=1e-6, atol=1e-8)
    for name in ("weight_hh", "bias_hh"):  # the final-state gradient reaches the parameters too
        np.testing.assert_allclose(weights[name], problem.numeric(getattr(problem.layer, name).data),
                                   rtol=1e-6, atol=1e-8, err_msg=name)
    if problem.mask is not None:  # a sequence of padding only: both gradients pass straight through
        empty = ~problem.mask.any(axis=1)
        for got, g_final in zip(initial_grad, problem.g_final, strict=True):
            want = g_final[empty].copy()
            if not sequences and got is initial_grad[0]:
                want += problem.g_out[empty]
            np.testing.assert_allclose(got[empty], want, atol=1e-15)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sequences", [False, True])
def test_state_gradients_match_pytorch(kind: str, sequences: bool) -> None:
    # PyTorch: h0 (and c0) are inputs with .grad, and h_n (c_n) take part in the loss.  Each sequence runs
    # alone at its own length there; bpcore runs the padded batch.
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (comparison only)")
    rng = np.random.default_rng(7)
    n, steps, features, hidden = 4, 6, 3, 5
    lengths = np.array([6, 2, 4, 1])
    mask = mask_from_lengths(lengths, steps)
    layer = make(kind, features, hidden, return_sequences=sequences)
    net = bpcore.Network([layer], dtype="float64", seed=3)
    twin = torch_twin(layer, torch)
    x = rng.standard_normal((n, steps, features))
    count = layer.state_count
    start = [rng.standard_normal((n, hidden)) * 0.5 for _ in range(count)]
    g_final = [rng.standard_normal((n, hidden)) for _ in range(count)]
    g_out = rng.standard_normal((n, steps, hidden) if sequences else (n, hidden))
    if sequences:
        g_out *= mask[:, :, None]
    want_start: list[list[np.ndarray]] = [[] for _ in range(count)]
    for row in range(n):
        length = lengths[row]
        tx = torch.from_numpy(x[row : row + 1, :length].copy())
        t_start = [torch.from_numpy(part[row : row + 1][None].copy()).requires_grad_() for part in start]
        out, state = twin(tx, tuple(t_start) if count > 1 else t_start[0])
        t_final = tuple(state) if count > 1 else (state,)
        if sequences:
            total = (out * torch.from_numpy(g_out[row : row + 1, :length])).sum()
        else:
            total = (out[:, -1] * torch.from_numpy(g_out[row : row + 1])).sum()
        for part, g in zip(t_final, g_final, strict=True):
            total = total + (part[0] * torch.from_numpy(g[row : row + 1])).sum()
        total.backward()
        for k, part in enumerate(t_start):
            want_start[k].append(part.grad.numpy()[0, 0])
    layer.initial_state = as_state(layer, start)
    layer.forward(x, True, mask=mask)
    net.zero_grad()
    layer.final_state_grad = as_state(layer, g_final)
    layer.backward(g_out)
    for got, want in zip(parts(layer.initial_state_grad), want_start, strict=True):
        np.testing.assert_allclose(got, np.stack(want), atol=1e-12)
    for name in NAMES:
        np.testing.assert_allclose(
            getattr(layer, name).grad, getattr(twin, f"{name}_l0").grad.numpy(), atol=1e-11, err_msg=name
        )


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_bidirectional_directions_each_have_their_state_gradients(kind: str) -> None:
    rng = np.random.default_rng(2)
    layer = Bidirectional(make(kind, 2, 3))
    net = bpcore.Network([layer], dtype="float64", seed=0)
    x = rng.standard_normal((2, 4, 2))
    mask = np.array([[True, True, False, True], [False, True, True, False]])
    directions = (layer.forward_layer, layer.backward_layer)
    starts = [[rng.standard_normal((2, 3)) * 0.5 for _ in range(d.state_count)] for d in directions]
    g_out = rng.standard_normal((2, 6))

    def loss() -> float:
        for direction, start in zip(directions, starts, strict=True):
            direction.initial_state = as_state(direction, start)
        return float((net.forward(x, training=True, mask=mask) * g_out).sum())

    loss()
    net.backward(g_out)
    for direction, start in zip(directions, starts, strict=True):
        grads = parts(direction.initial_state_grad)
        for got, array in zip(grads, start, strict=True):
            np.testing.assert_allclose(got, central_difference(array, loss, EPS), rtol=1e-6, atol=1e-8)


def test_no_initial_state_gives_no_gradient_and_the_forward_decides() -> None:
    rng = np.random.default_rng(0)
    layer = LSTM(2, 3)
    net = bpcore.Network([layer], dtype="float64", seed=0)
    x = rng.standard_normal((2, 4, 2))
    assert layer.initial_state_grad is None and layer.final_state_grad is None
    net.forward(x, training=True)
    net.backward(np.ones((2, 3)))
    assert layer.initial_state_grad is None  # zeros are a constant (PyTorch: no h0 given, no h0.grad)
    # The forward that ran decides, not an initial state set between it and the backward (as in
    # truncated backpropagation through time: `layer.initial_state = layer.state` right after a forward).
    start = (rng.standard_normal((2, 3)), rng.standard_normal((2, 3)))
    layer.initial_state = start
    net.forward(x, training=True)
    layer.initial_state = layer.state
    net.backward(np.ones((2, 3)))
    first = layer.initial_state_grad
    assert isinstance(first, tuple) and [part.shape for part in first] == [(2, 3), (2, 3)]
    layer.initial_state = start
    net.forward(x, training=True)
    net.backward(np.ones((2, 3)))
    for got, want in zip(layer.initial_state_grad, first, strict=True):
        np.testing.assert_array_equal(got, want)
    assert layer.initial_state_grad[0] is not first[0]  # fresh arrays each backward
    layer.reset_state()
    net.forward(x, training=True)
    net.backward(np.ones((2, 3)))
    assert layer.initial_state_grad is None


def test_a_final_state_gradient_equals_a_gradient_through_the_output() -> None:
    # With return_sequences=False the output is the final h: a gradient set there adds to grad_out.
    rng = np.random.default_rng(1)
    layer = GRU(2, 3)
    net = bpcore.Network([layer], dtype="float64", seed=0)
    x, g = rng.standard_normal((2, 5, 2)), rng.standard_normal((2, 3))
    net.forward(x, training=True)
    net.zero_grad()
    through_output = net.backward(2 * g)
    weight = layer.weight_hh.grad.copy()
    net.forward(x, training=True)
    net.zero_grad()
    layer.final_state_grad = g
    np.testing.assert_allclose(net.backward(g), through_output, atol=1e-14)
    np.testing.assert_allclose(layer.weight_hh.grad, weight, atol=1e-14)


def test_final_state_grad_errors_are_clear_and_change_nothing() -> None:
    layer = LSTM(2, 3)
    net = bpcore.Network([layer], dtype="float64", seed=0)
    with pytest.raises(TypeError, match=r"LSTM.final_state_grad: expected None or a pair \(h, c\)"):
        layer.final_state_grad = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"LSTM.final_state_grad: expected arrays of shape \(N, 3\), got "
                                         r"shape \(2, 4\)"):
        layer.final_state_grad = (np.zeros((2, 4)), np.zeros((2, 4)))
    assert layer.final_state_grad is None
    x = np.random.default_rng(0).standard_normal((2, 4, 2))
    net.forward(x, training=True)
    net.zero_grad()
    want = net.backward(np.ones((2, 3)))
    layer.final_state_grad = (np.zeros((5, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="LSTM.final_state_grad: expected 2 rows to match the batch of the "
                                         r"last forward, got shape \(5, 3\)"):
        net.backward(np.ones((2, 3)))
    layer.final_state_grad = None
    net.zero_grad()
    np.testing.assert_array_equal(net.backward(np.ones((2, 3))), want)


@pytest.mark.parametrize("where", ["stacked", "bidirectional"])
def test_a_bad_final_state_grad_on_an_earlier_layer_fails_before_any_gradient_is_written(where: str) -> None:
    rng = np.random.default_rng(5)
    if where == "bidirectional":
        outer = Bidirectional(GRU(2, 3))
        bad: Recurrent = outer.backward_layer
        layers: list = [outer]
    else:
        bad = LSTM(2, 3, return_sequences=True)
        layers = [bad, GRU(3, 2)]
    net = bpcore.Network(layers, dtype="float64", seed=0)
    out = net.forward(rng.standard_normal((2, 4, 2)), training=True)
    pending = np.ones((3, 3))
    bad.final_state_grad = (pending, pending) if bad.state_count > 1 else pending
    net.store.grad[...] = 7.0
    with pytest.raises(ValueError, match=r"final_state_grad: expected 2 rows to match the batch of the last "
                                         r"forward, got shape \(3, 3\)"):
        net.backward(np.ones(out.shape))
    assert (net.store.grad == 7.0).all()
    assert bad.final_state_grad is not None  # still pending: nothing was consumed


def test_state_gradients_are_no_part_of_a_model_file(tmp_path: Path) -> None:
    layer = GRU(2, 3)
    net = bpcore.Network([layer], seed=0)
    layer.final_state_grad = np.ones((2, 3))
    assert layer.final_state_grad.dtype == np.float32  # converted to the network's dtype
    bpcore.save(net, tmp_path / "model.bpcore")
    loaded = bpcore.load(tmp_path / "model.bpcore")
    assert repr(loaded.layers[0]) == "GRU(2, 3)" and loaded.layers[0].final_state_grad is None


def test_an_lstm_encoder_decoder_gets_its_gradients_through_both_states() -> None:
    # The README's LSTM recipe: dh goes in through the encoder's output, dc as its final_state_grad.
    rng = np.random.default_rng(4)
    enc_layer, dec_layer = LSTM(2, 3), LSTM(1, 3, return_sequences=True)
    encoder = bpcore.Network([enc_layer], dtype="float64", seed=0)
    decoder = bpcore.Network([dec_layer], dtype="float64", seed=1)
    x, previous = rng.standard_normal((2, 4, 2)), rng.standard_normal((2, 3, 1))
    mask = np.array([[True, True, True, False], [True, False, True, True]])
    g_out = rng.standard_normal((2, 3, 3))

    def loss() -> float:
        enc_layer.forward(x, True, mask=mask)
        dec_layer.initial_state = enc_layer.state
        return float((decoder.forward(previous, training=True) * g_out).sum())

    loss()
    encoder.zero_grad()
    decoder.zero_grad()
    decoder.backward(g_out)
    dh, dc = dec_layer.initial_state_grad
    enc_layer.final_state_grad = (np.zeros_like(dc), dc)
    grad_x = enc_layer.backward(dh)
    checked = [(x, grad_x.copy())]
    checked += [(getattr(enc_layer, name).data, getattr(enc_layer, name).grad.copy()) for name in NAMES]
    for array, analytic in checked:
        np.testing.assert_allclose(analytic, central_difference(array, loss, EPS), rtol=1e-6, atol=1e-8)


def test_a_learned_initial_state_gets_the_batch_sum_of_the_gradients() -> None:
    # The README's recipe: one (H,) vector repeated over the batch; its gradient is the sum over the rows.
    rng = np.random.default_rng(5)
    layer = GRU(2, 3, return_sequences=True)
    net = bpcore.Network([layer], dtype="float64", seed=0)
    x, g = rng.standard_normal((4, 5, 2)), rng.standard_normal((4, 5, 3))
    learned = rng.standard_normal(3)

    def loss() -> float:
        layer.initial_state = np.repeat(learned[None], 4, axis=0)
        return float((net.forward(x, training=True) * g).sum())

    loss()
    net.backward(g)
    analytic = layer.initial_state_grad.sum(axis=0)
    np.testing.assert_allclose(analytic, central_difference(learned, loss, EPS), rtol=1e-6, atol=1e-8)


def _readme_example() -> str:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Recurrent networks", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    found = [block for block in blocks if "initial_state_grad" in block]
    assert len(found) == 1, "README's recurrent section: expected one example using initial_state_grad"
    return found[0]


def test_the_readme_encoder_decoder_learns_through_the_state() -> None:
    # The decoder sees the sequence only through its initial state (the encoder's final state).  A random
    # encoder's state already tells it something; the gradient reaching the encoder makes the difference.
    code = _readme_example()
    backward = "encoder.backward(decoder_gru.initial_state_grad)"
    assert code.count(backward) == 1
    results = []
    for variant in (code, code.replace(backward, "pass")):
        namespace: dict[str, Any] = {}
        exec(compile(variant, "README.md", "exec"), namespace)
        results.append((namespace["losses"][0], namespace["losses"][-1]))
    (first, trained), (_, frozen) = results
    assert first > 0.8 and trained < 0.15 * first and trained < 0.5 * frozen
