"""RNN, LSTM and GRU: gradients (float64 finite differences, masks too), PyTorch, state, masks, saving."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from recurrent_helpers import KINDS, NAMES, make, torch_twin

import bpcore
from bpcore import gradcheck
from bpcore.layers import GRU, LSTM, RNN, Bidirectional, Dense, Layer, Masking, mask_from_lengths
from bpcore.layers import recurrent as recurrent_module

TOLERANCE = 1e-6


class GivenMask(Layer):
    """A test layer that starts a fixed mask (as Masking or Embedding(padding_idx) would)."""

    def __init__(self, mask: np.ndarray) -> None:
        super().__init__()
        self.mask = mask

    @property
    def produces_mask(self) -> bool:
        return True

    def compute_mask(self, x: Any, mask: Any) -> Any:
        return self.backend.asarray(self.mask)

    def forward(self, x: Any, training: bool) -> Any:
        return x

    def backward(self, grad_out: Any, *, accumulate: bool = True, need_input_grad: bool = True) -> Any:
        return grad_out


def random_mask(rng: np.random.Generator, n: int, steps: int, kind: str) -> np.ndarray:
    if kind == "lengths":
        return mask_from_lengths(rng.integers(0, steps + 1, size=n), steps)
    return rng.random((n, steps)) < 0.6  # padding anywhere, whole sequences of padding included


# --- gradients ------------------------------------------------------------------------------------------
@pytest.mark.slow
@settings(max_examples=10, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    n=st.integers(1, 3),
    steps=st.integers(1, 5),
    features=st.integers(1, 3),
    hidden=st.integers(1, 4),
    sequences=st.booleans(),
    masked=st.sampled_from(["none", "lengths", "anywhere"]),
    seed=st.integers(0, 2**16),
)
def test_gradients_match_finite_differences(
    kind: str, n: int, steps: int, features: int, hidden: int, sequences: bool, masked: str, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    layer = make(kind, features, hidden, return_sequences=sequences)
    layers: list[Layer] = [layer]
    if masked != "none":
        layers.insert(0, GivenMask(random_mask(rng, n, steps, masked)))
    net = bpcore.Network(layers, dtype="float64", seed=seed)
    x = rng.standard_normal((n, steps, features))
    if kind == "rnn-relu":
        x += 0.3  # keep the pre-activations away from ReLU's kink, where differences are one-sided
    assert gradcheck(net, x, seed=seed) < TOLERANCE


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_with_an_initial_state_and_stacked_layers(kind: str) -> None:
    rng = np.random.default_rng(3)
    first, second = make(kind, 2, 3, return_sequences=True), make(kind, 3, 4)
    net = bpcore.Network([GivenMask(random_mask(rng, 3, 6, "lengths")), first, second, Dense(4, 2)],
                         dtype="float64", seed=1)
    start = rng.standard_normal((3, 3)) * 0.5
    first.initial_state = (start, start * 0.5) if kind == "lstm" else start
    assert gradcheck(net, rng.standard_normal((3, 6, 2)), seed=2) < TOLERANCE


def test_a_layer_checks_on_its_own() -> None:
    x = np.random.default_rng(0).standard_normal((2, 5, 3))
    assert gradcheck(LSTM(3, 4, return_sequences=True), x) < TOLERANCE


# --- PyTorch --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("kernels", ["fused", "generic"])
def test_matches_pytorch_with_padded_sequences(
    kind: str, kernels: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (comparison only)")
    monkeypatch.setenv("BPCORE_KERNELS", kernels)
    rng = np.random.default_rng(5)
    n, steps, features, hidden = 5, 7, 3, 4
    lengths = np.array([7, 3, 1, 5, 7])
    mask = mask_from_lengths(lengths, steps)
    layer = make(kind, features, hidden, return_sequences=True)
    net = bpcore.Network([GivenMask(mask), layer], dtype="float64", seed=0)
    assert (net.backend.kernels == kernels)
    twin = torch_twin(layer, torch)
    x = rng.standard_normal((n, steps, features))
    # PyTorch's reference: each sequence alone at its own length (no packing subtleties).
    grad_out = rng.standard_normal((n, steps, hidden)) * mask[:, :, None]
    outputs, last, grads = [], [], []
    for row in range(n):
        tx = torch.from_numpy(x[row : row + 1, : lengths[row]].copy()).requires_grad_()
        out, state = twin(tx)
        (out * torch.from_numpy(grad_out[row : row + 1, : lengths[row]])).sum().backward()
        padded = np.zeros((steps, hidden))
        padded[: lengths[row]] = out.detach().numpy()[0]
        outputs.append(padded)
        last.append((state[0] if kind == "lstm" else state).detach().numpy()[0, 0])
        grad = np.zeros((steps, features))
        grad[: lengths[row]] = tx.grad.numpy()[0]
        grads.append(grad)
    y = net.forward(x, training=True)
    np.testing.assert_allclose(y, np.stack(outputs), atol=1e-12)
    final = layer.state[0] if kind == "lstm" else layer.state
    np.testing.assert_allclose(final, np.stack(last), atol=1e-12)
    net.zero_grad()
    grad_in = net.backward(grad_out)
    np.testing.assert_allclose(grad_in, np.stack(grads), atol=1e-12)
    for name in NAMES:
        np.testing.assert_allclose(
            getattr(layer, name).grad, getattr(twin, f"{name}_l0").grad.numpy(), atol=1e-11, err_msg=name
        )


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_one_input_feature_matches_pytorch(kind: str) -> None:
    # One feature takes another path for the input projection (an outer product).
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (comparison only)")
    layer = make(kind, 1, 4)
    net = bpcore.Network([layer], dtype="float64", seed=2)
    twin = torch_twin(layer, torch)
    x = np.random.default_rng(0).standard_normal((3, 6, 1))
    tx = torch.from_numpy(x).requires_grad_()
    out, _ = twin(tx)
    out[:, -1].sum().backward()
    np.testing.assert_allclose(net.forward(x, training=True), out.detach().numpy()[:, -1], atol=1e-12)
    np.testing.assert_allclose(net.backward(np.ones((3, 4))), tx.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(layer.weight_ih.grad, twin.weight_ih_l0.grad.numpy(), atol=1e-11)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_the_initialisation_is_pytorchs(kind: str) -> None:
    layer = make(kind, 3, 16)
    bpcore.Network([layer], seed=0)
    bound = 1 / np.sqrt(16)
    for name in NAMES:
        values = np.asarray(getattr(layer, name).data)
        assert values.shape[0] == layer.gate_count * 16
        assert np.abs(values).max() <= bound and np.abs(values).max() > 0.8 * bound
    assert layer.weight_ih.shape == (layer.gate_count * 16, 3)
    assert layer.weight_hh.shape == (layer.gate_count * 16, 16)


@pytest.mark.parametrize("sequences", [True, False], ids=["sequences", "last"])
@pytest.mark.parametrize("kind", KINDS)
def test_the_input_projection_step_by_step_matches_the_one_product(
    kind: str, sequences: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On the CPU a few features and a large (T, N, G*H) projection take each step's product in the
    # time loop; here forced for a small shape and compared with the one product over all steps.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 7, 2))
    mask = random_mask(rng, 4, 7, "anywhere")
    results = []
    for size in (0, 1 << 62):
        monkeypatch.setattr(recurrent_module, "PER_STEP_SIZE", size)
        layer = make(kind, 2, 5, return_sequences=sequences)
        net = bpcore.Network([GivenMask(mask), layer], dtype="float64", seed=3)
        for _ in range(2):  # twice: the second step reuses every workspace and the loop's views
            net.zero_grad()
            y = net.forward(x, training=True)
            gx = net.backward(np.linspace(-1.0, 1.0, y.size).reshape(y.shape))
        assert ("xw_step" in layer._workspace) == (size == 0)
        assert ("xw" in layer._workspace) == (size != 0)
        results.append((y, gx, *(np.array(p.grad) for p in layer.parameters())))
    for step_by_step, one_product in zip(*results, strict=True):
        np.testing.assert_allclose(step_by_step, one_product, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_with_the_input_projection_step_by_step(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recurrent_module, "PER_STEP_SIZE", 0)
    rng = np.random.default_rng(6)
    layer = make(kind, 2, 3, return_sequences=True)
    net = bpcore.Network([GivenMask(random_mask(rng, 3, 5, "anywhere")), layer], dtype="float64", seed=6)
    x = rng.standard_normal((3, 5, 2)) + (0.3 if kind == "rnn-relu" else 0.0)
    assert gradcheck(net, x, seed=6) < TOLERANCE
    assert "xw_step" in layer._workspace


# --- float32, masks, state ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_float32_follows_float64(kind: str) -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 9, 3))
    mask = random_mask(rng, 4, 9, "lengths")
    results = []
    for dtype in ("float64", "float32"):
        layer = make(kind, 3, 6, return_sequences=True)
        net = bpcore.Network([GivenMask(mask), layer], dtype=dtype, seed=4)
        y = net.forward(x, training=True)
        net.zero_grad()
        gx = net.backward(np.ones_like(y))
        assert y.dtype == np.dtype(dtype) and gx.dtype == np.dtype(dtype)
        results.append((y, gx, np.asarray(layer.weight_hh.grad)))
    for high, low in zip(*results, strict=True):
        np.testing.assert_allclose(low, high, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_padded_steps_leave_the_state_alone_and_get_no_gradient(kind: str) -> None:
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 6, 2))
    mask = np.array([[1, 1, 0, 1, 0, 0], [0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]], dtype=bool)
    layer = make(kind, 2, 3)
    net = bpcore.Network([GivenMask(mask), layer], dtype="float64", seed=0)
    y = net.forward(x, training=True)
    gx = net.backward(np.ones_like(y))
    assert np.all(gx[~mask] == 0)
    assert kind == "rnn-relu" or np.all(gx[mask] != 0)  # ReLU units may be off: zero gradients there
    # The same as running each sequence's real steps alone, and changing padded input changes nothing.
    for row in range(3):
        alone = bpcore.Network([make(kind, 2, 3)], dtype="float64", seed=0)
        alone.store.data[...] = net.store.data
        np.testing.assert_allclose(y[row], alone.forward(x[row : row + 1, mask[row]])[0], atol=1e-13)
    noisy = x.copy()
    noisy[~mask] = 1e3
    np.testing.assert_array_equal(net.forward(noisy), y)


@pytest.mark.parametrize("kind", KINDS)
def test_the_state_carries_over_between_calls(kind: str) -> None:
    # Truncated backpropagation through time: two halves with the state carried = the whole sequence.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 10, 3))
    layer = make(kind, 3, 4, return_sequences=True)
    net = bpcore.Network([layer], dtype="float64", seed=0)
    assert layer.state is None and layer.initial_state is None
    whole = net.forward(x)
    final = layer.state
    first = net.forward(x[:, :4])
    layer.initial_state = layer.state
    second = net.forward(x[:, 4:])
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, atol=1e-13)
    parts = (lambda state: state if kind == "lstm" else (state,))  # noqa: E731
    for got, want in zip(parts(layer.state), parts(final), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-13)
    layer.reset_state()
    np.testing.assert_array_equal(net.forward(x), whole)


def test_initial_state_errors_are_clear() -> None:
    layer = LSTM(3, 4)
    net = bpcore.Network([layer])
    with pytest.raises(TypeError, match=r"LSTM.initial_state: expected None or a pair \(h, c\)"):
        layer.initial_state = np.zeros((2, 4))
    with pytest.raises(ValueError, match=r"expected arrays of shape \(N, 4\), got shape \(2, 5\)"):
        layer.initial_state = (np.zeros((2, 5)), np.zeros((2, 5)))
    gru = GRU(3, 4, return_sequences=True)
    net_gru = bpcore.Network([gru])
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    y = net_gru.forward(x, training=True)
    gru.initial_state = np.zeros((1, 4))
    with pytest.raises(ValueError, match="expected 2 rows to match the batch of 2 sequences"):
        gru.forward(np.zeros((2, 5, 3), np.float32), False)  # the shapes of the last forward's buffers
    # The refused call changed nothing: the last forward's backward still holds.
    gru.reset_state()
    reference = bpcore.Network([GRU(3, 4, return_sequences=True)])
    reference.store.data[...] = net_gru.store.data
    np.testing.assert_array_equal(reference.forward(x, training=True), y)
    np.testing.assert_allclose(net_gru.backward(np.ones_like(y)), reference.backward(np.ones_like(y)))
    np.testing.assert_allclose(net_gru.store.grad, reference.store.grad, rtol=1e-6)
    layer.initial_state = (np.zeros((2, 4)), np.ones((2, 4)))
    assert layer.initial_state[1].dtype == np.float32
    assert net.forward(np.zeros((2, 5, 3))).shape == (2, 4)


@pytest.mark.parametrize("where", ["stacked", "bidirectional", "predict"])
def test_a_bad_initial_state_deep_in_a_network_fails_before_any_layer_runs(where: str) -> None:
    # The second layer's (or the reverse direction's) state is checked before the first layer
    # moves: the last forward's state and its backward stay as they were.
    rng = np.random.default_rng(3)

    def build() -> list[Layer]:
        if where == "bidirectional":
            return [Bidirectional(GRU(3, 4))]
        return [LSTM(3, 4, return_sequences=True), GRU(4, 2)]

    layers = build()
    first, bad = (layers[0].forward_layer, layers[0].backward_layer) if where == "bidirectional" else layers
    net = bpcore.Network(layers, dtype="float64", seed=0)
    x1, x2 = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 5, 3))
    out = net.forward(x1, training=True)
    g = rng.standard_normal(out.shape)
    state = first.state
    bad.initial_state = np.zeros((3, bad.hidden_size))
    with pytest.raises(ValueError, match="initial_state: expected 2 rows to match the batch of 2 sequences"):
        if where == "predict":
            net.predict(x2)
        else:
            net.forward(x2, training=True)
    for moved, kept in zip(parts_of(first.state), parts_of(state), strict=True):
        np.testing.assert_array_equal(moved, kept)
    bad.reset_state()
    reference = bpcore.Network(build(), dtype="float64")
    reference.store.data[...] = net.store.data
    reference.forward(x1, training=True)
    np.testing.assert_array_equal(net.backward(g), reference.backward(g))
    np.testing.assert_array_equal(net.store.grad, reference.store.grad)


def parts_of(state: object) -> tuple:
    return tuple(state) if isinstance(state, tuple) else (state,)


def test_bad_input_names_the_layer_and_the_shape() -> None:
    net = bpcore.Network([GRU(3, 4)])
    with pytest.raises(ValueError, match=r"expected sequences \(N, T, 3\).*\(N, 5, 2\)"):
        net.forward(np.zeros((2, 5, 2)))
    with pytest.raises(ValueError, match=r"expected sequences \(N, T, 3\)"):
        net.forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"RNN\(nonlinearity\)"):
        RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match=r"LSTM\(hidden_size\): expected a positive integer"):
        LSTM(3, 0)
    with pytest.raises(TypeError, match=r"return_sequences"):
        LSTM(3, 4, return_sequences="yes")  # type: ignore[arg-type]


# --- masks ----------------------------------------------------------------------------------------------
def test_masking_starts_a_mask_from_padded_float_sequences() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 2))
    lengths = np.array([5, 2, 3])
    mask = mask_from_lengths(lengths, 5)
    x[~mask] = 0.0
    masked = bpcore.Network([Masking(0.0), LSTM(2, 3)], dtype="float64", seed=0)
    given = bpcore.Network([GivenMask(mask), LSTM(2, 3)], dtype="float64", seed=0)
    np.testing.assert_array_equal(masked.forward(x), given.forward(x))
    layer = Masking(0.0)
    bpcore.Network([layer], dtype="float64")
    np.testing.assert_array_equal(layer.compute_mask(x, None), mask)
    np.testing.assert_array_equal(layer.compute_mask(x, ~mask), np.zeros_like(mask))
    assert masked.layers[0].produces_mask and not masked.layers[1].produces_mask


def test_masks_go_through_sequence_layers_and_stop_at_the_last_state() -> None:
    rng = np.random.default_rng(0)
    mask = mask_from_lengths([4, 2], 4)
    first, second = LSTM(2, 3, return_sequences=True), GRU(3, 2)
    assert first.compute_mask(None, mask) is mask and second.compute_mask(None, mask) is None
    assert Dense(2, 2).compute_mask(None, mask) is mask
    net = bpcore.Network([GivenMask(mask), first, Dense(3, 3), second], dtype="float64", seed=0)
    x = rng.standard_normal((2, 4, 2))
    y = net.forward(x)
    short = bpcore.Network([LSTM(2, 3, return_sequences=True), Dense(3, 3), GRU(3, 2)], dtype="float64")
    short.store.data[...] = net.store.data
    np.testing.assert_allclose(y[1], short.forward(x[1:, :2])[0], atol=1e-13)


def test_a_network_without_a_mask_producer_threads_no_mask() -> None:
    net = bpcore.Network([LSTM(2, 3)])
    assert net._masked is False
    assert bpcore.Network([Masking(), LSTM(2, 3)])._masked is True


def test_mask_from_lengths() -> None:
    np.testing.assert_array_equal(
        mask_from_lengths([2, 0, 3], 3), [[True, True, False], [False, False, False], [True, True, True]]
    )
    with pytest.raises(ValueError, match=r"lengths: expected lengths in \[0, 3\], got values from 0 to 4"):
        mask_from_lengths([4, 0], 3)
    with pytest.raises(ValueError, match="lengths: expected a 1-D array of integers"):
        mask_from_lengths([1.5], 3)
    with pytest.raises(ValueError, match="steps: expected a positive integer"):
        mask_from_lengths([1], 0)


def test_a_layer_called_by_hand_takes_a_mask() -> None:
    layer = GRU(2, 3)
    bpcore.Network([layer], dtype="float64", seed=0)
    x = np.random.default_rng(0).standard_normal((2, 4, 2))
    y = layer.forward(x, False, mask=mask_from_lengths([4, 1], 4)).copy()
    np.testing.assert_allclose(y[1], layer.forward(x[1:, :1], False)[0], atol=1e-13)


# --- saving, devices, summary ---------------------------------------------------------------------------
def test_save_load_summary_and_to() -> None:
    net = bpcore.Network(
        [Masking(-1.0), LSTM(3, 8, return_sequences=True), GRU(8, 5), Dense(5, 2)], seed=0
    )
    rnn = bpcore.Network([RNN(3, 4, nonlinearity="relu", return_sequences=True)], seed=1)
    x = np.random.default_rng(0).standard_normal((2, 6, 3)).astype(np.float32)
    for network in (net, rnn):
        buffer = io.BytesIO()
        bpcore.save(network, buffer)
        buffer.seek(0)
        loaded = bpcore.load(buffer)
        np.testing.assert_array_equal(loaded.forward(x), network.forward(x))
        assert repr(loaded) == repr(network)
    text = net.summary((6, 3))
    assert "LSTM(3, 8, return_sequences=True)" in text and "(N, 6, 8)" in text and "(N, 5)" in text
    assert f"{4 * 8 * (3 + 8 + 2) + 3 * 5 * (8 + 5 + 2) + 12:,}" in text
    assert repr(rnn.layers[0]) == "RNN(3, 4, nonlinearity='relu', return_sequences=True)"
    lstm = net.layers[1]
    lstm.initial_state = (np.zeros((2, 8)), np.zeros((2, 8)))
    assert net.to("cpu") is net and net.forward(x).shape == (2, 2)
    assert isinstance(lstm.initial_state[0], np.ndarray)


# --- Bidirectional ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn-tanh"])
@pytest.mark.parametrize("sequences", [False, True])
def test_bidirectional_gradients_with_masks(kind: str, sequences: bool) -> None:
    rng = np.random.default_rng(4)
    layer = Bidirectional(make(kind, 2, 3, return_sequences=sequences))
    net = bpcore.Network([GivenMask(random_mask(rng, 3, 5, "anywhere")), layer], dtype="float64", seed=0)
    assert gradcheck(net, rng.standard_normal((3, 5, 2)), seed=1) < TOLERANCE


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_bidirectional_matches_pytorch(kind: str) -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (comparison only)")
    rng = np.random.default_rng(6)
    lengths = np.array([6, 2, 4])
    layer = Bidirectional(make(kind, 3, 4, return_sequences=True))
    net = bpcore.Network([GivenMask(mask_from_lengths(lengths, 6)), layer], dtype="float64", seed=0)
    twin = getattr(torch.nn, kind.upper())(3, 4, batch_first=True, bidirectional=True).double()
    with torch.no_grad():
        for parameter, (name, tensor) in zip(layer.parameters(), twin.named_parameters(), strict=True):
            assert name.replace("_l0", "") == parameter.name and tuple(tensor.shape) == parameter.shape
            tensor.copy_(torch.from_numpy(np.asarray(parameter.data)))
    x = rng.standard_normal((3, 6, 3))
    y = net.forward(x)
    for row in range(3):
        out, _ = twin(torch.from_numpy(x[row : row + 1, : lengths[row]].copy()))
        np.testing.assert_allclose(y[row, : lengths[row]], out.detach().numpy()[0], atol=1e-12)
        assert np.all(y[row, lengths[row] :] == 0)


def test_bidirectional_saves_and_loads() -> None:
    net = bpcore.Network([Bidirectional(GRU(3, 4)), Dense(8, 1)], seed=0)
    buffer = io.BytesIO()
    bpcore.save(net, buffer)
    buffer.seek(0)
    loaded = bpcore.load(buffer)
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.forward(x), net.forward(x))
    assert repr(loaded.layers[0]) == "Bidirectional(GRU(3, 4))"
    assert "(N, 8)" in net.summary((5, 3))
    with pytest.raises(TypeError, match="Bidirectional\\(layer\\): expected an RNN, LSTM or GRU layer"):
        Bidirectional(Dense(2, 2))  # type: ignore[arg-type]


@pytest.mark.parametrize("kernels", ["fused", "generic"])
def test_a_relu_rnn_passes_a_nan_on_as_torch_relu_does(kernels: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # relu(NaN) is NaN in PyTorch: a diverged value must not come out as a clean 0.
    monkeypatch.setenv("BPCORE_KERNELS", kernels)
    layer = RNN(2, 3, nonlinearity="relu", return_sequences=True)
    net = bpcore.Network([layer], dtype="float64", seed=0)
    x = np.ones((2, 3, 2))
    x[0, 1, 0] = np.nan
    out = net.forward(x, check=False)
    assert np.isnan(out[0, 1:]).all() and not np.isnan(out[0, 0]).any() and not np.isnan(out[1]).any()
