"""``Network.forward(x, mask=...)`` / ``lengths=``: a mask given with the input, no layer starting one."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import bpcore
from bpcore import gradcheck
from bpcore.layers import GRU, LSTM, RNN, Bidirectional, Dense, Embedding, Masking, mask_from_lengths
from bpcore.layers.recurrent import Recurrent
from bpcore.losses import MSE


def make(kind: str, features: int, hidden: int, **options: Any) -> Recurrent:
    if kind == "lstm":
        return LSTM(features, hidden, **options)
    if kind == "gru":
        return GRU(features, hidden, **options)
    return RNN(features, hidden, **options)


def twins(kind: str, sequences: bool, masking: bool) -> tuple[bpcore.Network, bpcore.Network]:
    """The same recurrent network without and with a Masking layer in front (same parameters)."""
    layers = [make(kind, 3, 4, return_sequences=sequences), Dense(4, 2)]
    plain = bpcore.Network(layers, dtype="float64", seed=0)
    other = [make(kind, 3, 4, return_sequences=sequences), Dense(4, 2)]
    masked = bpcore.Network([Masking(0.0), *other] if masking else other, dtype="float64", seed=1)
    masked.store.data[...] = plain.store.data
    return plain, masked


def padded(rng: np.random.Generator, mask: np.ndarray, features: int = 3) -> np.ndarray:
    x = rng.standard_normal((*mask.shape, features))
    x[~mask] = 0.0
    return x


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("sequences", [False, True])
def test_a_given_mask_equals_a_masking_layer_forward_and_backward(kind: str, sequences: bool) -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((4, 6)) < 0.6  # any pattern
    mask[0] = True
    x = padded(rng, mask)
    plain, masking = twins(kind, sequences, masking=True)
    want = masking.forward(x, training=True)
    got = plain.forward(x, training=True, mask=mask)
    np.testing.assert_array_equal(got, want)
    g = rng.standard_normal(want.shape)
    masking.zero_grad()
    plain.zero_grad()
    np.testing.assert_array_equal(plain.backward(g), masking.backward(g))
    np.testing.assert_array_equal(plain.store.grad, masking.store.grad)
    # Without the mask the padding is read as input: another result.
    assert not np.allclose(plain.forward(x), got)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_lengths_equal_each_sequence_run_alone(kind: str) -> None:
    rng = np.random.default_rng(1)
    lengths = [6, 2, 4, 1]
    x = rng.standard_normal((4, 6, 3))  # the padding holds values: the lengths alone decide
    plain, alone = twins(kind, True, masking=False)
    y = plain.forward(x, lengths=lengths)
    np.testing.assert_array_equal(y, plain.forward(x, mask=mask_from_lengths(lengths, 6)))
    np.testing.assert_array_equal(y, plain.forward(x, lengths=np.array(lengths)))
    for row, length in enumerate(lengths):
        np.testing.assert_allclose(y[row, :length], alone.forward(x[row : row + 1, :length])[0], atol=1e-13)
        # After the recurrent layer the padded steps are zero, and Dense(4, 2) maps zero to its bias.
        bias = plain.layers[1].bias.data
        np.testing.assert_allclose(y[row, length:], np.broadcast_to(bias, (6 - length, 2)))


def test_a_given_mask_is_combined_with_the_one_an_embedding_starts() -> None:
    rng = np.random.default_rng(2)
    ids = rng.integers(1, 9, size=(3, 5))
    ids[0, 3:] = 0  # padding_idx
    extra = np.ones((3, 5), dtype=bool)
    extra[1, 1] = extra[2, 4] = False
    net = bpcore.Network([Embedding(9, 4, padding_idx=0), GRU(4, 3)], dtype="float64", seed=0)
    got = net.forward(ids, mask=extra)
    both = (ids != 0) & extra
    for row in range(3):
        alone = net.forward(ids[row : row + 1, both[row]])
        np.testing.assert_allclose(got[row], alone[0], atol=1e-13)
    assert not np.allclose(got, net.forward(ids))


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("sequences", [False, True])
def test_gradcheck_with_a_mask(kind: str, sequences: bool) -> None:
    rng = np.random.default_rng(3)
    mask = rng.random((3, 5)) < 0.6
    net = bpcore.Network([make(kind, 2, 3, return_sequences=sequences), Dense(3, 2)], dtype="float64", seed=4)
    x = rng.standard_normal((3, 5, 2))
    assert gradcheck(net, x, mask=mask, seed=5) < 1e-6
    bidirectional = bpcore.Network([Bidirectional(make(kind, 2, 3, return_sequences=sequences))],
                                   dtype="float64", seed=6)
    assert gradcheck(bidirectional, x, mask=mask, seed=7) < 1e-6
    assert gradcheck(make(kind, 2, 3, return_sequences=sequences), x, mask=mask, seed=8) < 1e-6


def test_the_gradient_check_sees_the_mask() -> None:
    # gradcheck(mask=) differentiates the masked function: a backward that forgot the mask fails it.
    rng = np.random.default_rng(9)
    mask = mask_from_lengths([5, 2, 3], 5)
    net = bpcore.Network([GRU(2, 3), Dense(3, 1)], dtype="float64", seed=0)
    x = rng.standard_normal((3, 5, 2))
    forward = net._forward

    def forgetful(x: Any, training: bool, mask: Any = None) -> Any:
        value = forward(x, training, mask).copy()
        forward(x, training, None)  # the layers now hold an unmasked run for the backward
        return value

    net._forward = forgetful  # type: ignore[method-assign]
    assert gradcheck(net, x, mask=mask, seed=1) > 1e-3


def test_predict_and_evaluate_take_a_mask_in_batches() -> None:
    rng = np.random.default_rng(4)
    lengths = rng.integers(0, 7, size=11)
    mask = mask_from_lengths(lengths, 6)
    x = rng.standard_normal((11, 6, 3))
    y = rng.standard_normal((11, 2))
    net = bpcore.Network([LSTM(3, 4), Dense(4, 2)], dtype="float64", seed=0)
    want = net.forward(x, mask=mask)
    np.testing.assert_allclose(net.predict(x, mask=mask, batch_size=4), want, atol=1e-14)
    np.testing.assert_allclose(net.predict(x, lengths=lengths, batch_size=20), want, atol=1e-14)
    assert not np.allclose(net.predict(x, batch_size=4), want)
    mse = MSE()
    expected = float(mse(want, y))
    got = net.evaluate(x, y, loss="mse", mask=mask, batch_size=3)["loss"]
    assert got == pytest.approx(expected, rel=1e-12)
    assert net.evaluate(x, y, loss="mse", lengths=lengths)["loss"] == pytest.approx(expected, rel=1e-12)


def test_a_custom_loop_trains_on_padded_series_with_lengths() -> None:
    # Series of different lengths, padded with values that are no marker: only lengths tell them apart.
    rng = np.random.default_rng(5)
    n, steps = 64, 8
    lengths = rng.integers(1, steps + 1, size=n)
    x = rng.standard_normal((n, steps, 1))
    target = np.array([[x[row, : lengths[row], 0].sum()] for row in range(n)])
    net = bpcore.Network([GRU(1, 16), Dense(16, 1)], dtype="float64", seed=0)
    optimizer = bpcore.optim.Adam(net.parameters(), lr=2e-2)
    mse = MSE()
    mask = net.as_mask(lengths=lengths, shape=x.shape)
    assert mask.dtype == np.bool_ and mask.shape == (n, steps)
    losses = []
    for _ in range(150):
        losses.append(float(mse(net.forward(x, training=True, mask=mask, check=False), target)))
        net.zero_grad()
        net.backward(mse.backward())
        optimizer.step()
    assert losses[-1] < 0.1 * losses[0]


def test_bad_masks_are_one_clear_error_and_change_nothing() -> None:
    rng = np.random.default_rng(6)
    net = bpcore.Network([LSTM(3, 4, return_sequences=True)], dtype="float64", seed=0)
    layer = net.layers[0]
    x = rng.standard_normal((2, 5, 3))
    mask = mask_from_lengths([5, 3], 5)
    want = net.forward(x, mask=mask)
    state = layer.state
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"mask": mask[:, :4]}, ValueError,
         r"mask: expected shape \(2, 5\) \(N, T: the first two axes of x\), got \(2, 4\)"),
        ({"mask": mask[:1]}, ValueError, r"mask: expected shape \(2, 5\)"),
        ({"mask": mask.astype(np.int64)}, TypeError, "mask: expected a boolean array .* got dtype int64"),
        ({"mask": mask.astype(np.float32)}, TypeError, "mask: expected a boolean array .* got dtype float32"),
        ({"mask": mask, "lengths": [5, 3]}, ValueError, "mask, lengths: expected one of them"),
        ({"lengths": [5, 3, 1]}, ValueError, r"lengths: expected 2 lengths \(one per sequence of x\)"),
        ({"lengths": [5, 6]}, ValueError, r"lengths: expected lengths in \[0, 5\], got values from 5 to 6"),
        ({"lengths": [5.0, 3.0]}, ValueError, "lengths: expected a 1-D array of integers"),
    ]
    for options, error, message in cases:
        with pytest.raises(error, match=message):
            net.forward(x, **options)
        with pytest.raises(error, match=message):
            net.predict(x, **options)
    for got, kept in zip(layer.state, state, strict=True):
        np.testing.assert_array_equal(got, kept)  # nothing ran
    np.testing.assert_array_equal(net.forward(x, mask=mask), want)
    mlp = bpcore.Network([Dense(3, 2)], seed=0)
    with pytest.raises(ValueError, match="mask: no layer of this network uses a mask"):
        mlp.forward(np.zeros((2, 5, 3), dtype=np.float32), mask=np.ones((2, 5), dtype=bool))
    with pytest.raises(ValueError, match="lengths: no layer of this network uses a mask"):
        mlp.predict(np.zeros((2, 5, 3), dtype=np.float32), lengths=[1, 2])
    with pytest.raises(ValueError, match=r"gradcheck\(mask\): .*takes no mask"):
        gradcheck(Dense(3, 2), x, mask=np.ones((2, 5), dtype=bool))
    with pytest.raises(ValueError, match=r"gradcheck\(mask\): expected a boolean array of shape \(2, 5\)"):
        gradcheck(GRU(3, 2), x, mask=np.ones((2, 4), dtype=bool))


def test_networks_without_a_given_mask_behave_as_before() -> None:
    rng = np.random.default_rng(7)
    mask = mask_from_lengths([4, 2], 4)
    x = padded(rng, mask)
    plain, masking = twins("gru", True, masking=True)
    np.testing.assert_array_equal(masking.forward(x), masking.forward(x, mask=np.ones((2, 4), dtype=bool)))
    # predict may run the generic kernels (BPCORE_KERNELS=auto, a small input) where forward runs the fused
    # ones: equal to rounding, not bit for bit.
    np.testing.assert_allclose(masking.predict(x), masking.forward(x), rtol=1e-13, atol=1e-15)
    assert not plain._masked  # no mask is threaded when none is given or started


# --- fit ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("batch_size", "shuffle"), [(4, True), (4, False), (None, True)])
def test_fit_with_a_mask_equals_fit_with_a_masking_layer(batch_size: int | None, shuffle: bool) -> None:
    rng = np.random.default_rng(8)
    mask = mask_from_lengths(rng.integers(1, 7, size=16), 6)
    x = padded(rng, mask)
    y = rng.standard_normal((16, 2))
    plain, masking = twins("lstm", False, masking=True)
    histories = []
    for net, options in ((plain, {"mask": mask}), (masking, {})):
        optimizer = bpcore.optim.Adam(net.parameters(), lr=1e-2)
        history = net.fit(x, y, loss="mse", optimizer=optimizer, epochs=3, batch_size=batch_size,
                          shuffle=shuffle, validation_split=0.25, seed=3, verbose=0, **options)
        histories.append((history["loss"], history["val_loss"]))
    assert histories[0] == histories[1]
    np.testing.assert_array_equal(plain.store.data, masking.store.data)
    # Without the mask the padding counts as input: another training.
    other, _ = twins("lstm", False, masking=False)
    other.fit(x, y, loss="mse", optimizer=bpcore.optim.Adam(other.parameters(), lr=1e-2), epochs=3,
              batch_size=batch_size, shuffle=shuffle, validation_split=0.25, seed=3, verbose=0)
    assert not np.allclose(other.store.data, plain.store.data)


def test_fit_with_lengths_and_validation_data_with_its_mask() -> None:
    rng = np.random.default_rng(9)
    n, steps = 48, 7
    lengths = rng.integers(1, steps + 1, size=n)
    x = rng.standard_normal((n, steps, 1))
    y = np.array([[x[row, : lengths[row], 0].sum()] for row in range(n)])
    net = bpcore.Network([GRU(1, 8), Dense(8, 1)], dtype="float64", seed=0)
    x_val, lengths_val = x[:12], lengths[:12]
    val = (x_val, y[:12], mask_from_lengths(lengths_val, steps))
    history = net.fit(x, y, loss="mse", optimizer=bpcore.optim.Adam(net.parameters(), lr=2e-2), epochs=40,
                      batch_size=16, lengths=lengths, validation_data=val, seed=0, verbose=0)
    assert history["loss"][-1] < 0.2 * history["loss"][0]
    assert history["val_loss"][-1] == pytest.approx(
        net.evaluate(x_val, y[:12], loss="mse", lengths=lengths_val)["loss"], rel=1e-12
    )


def test_fit_mask_errors_name_the_argument_and_change_nothing() -> None:
    rng = np.random.default_rng(10)
    x, y = rng.standard_normal((8, 5, 3)), rng.standard_normal((8, 2))
    mask = mask_from_lengths([5, 4, 3, 2, 1, 5, 4, 3], 5)
    net = bpcore.Network([GRU(3, 4), Dense(4, 2)], dtype="float64", seed=0)
    before = net.store.data.copy()
    optimizer = bpcore.optim.SGD(net.parameters(), lr=0.1)
    common: dict[str, Any] = {"loss": "mse", "optimizer": optimizer, "epochs": 1, "verbose": 0}
    with pytest.raises(ValueError, match=r"^mask: expected shape \(8, 5\) \(N, T: the first two axes of x\)"):
        net.fit(x, y, mask=mask[:, :4], **common)
    with pytest.raises(ValueError, match=r"^validation_data: fit has a mask for x, so the validation "
                                         r"sequences need theirs: pass \(x_val, y_val, mask_val\)"):
        net.fit(x, y, mask=mask, validation_data=(x[:2], y[:2]), **common)
    with pytest.raises(ValueError, match=r"^validation_data\[2\]: expected shape \(2, 5\) \(N, T: the first "
                                         r"two axes of validation_data\[0\]\), got \(2, 4\)"):
        net.fit(x, y, mask=mask, validation_data=(x[:2], y[:2], mask[:2, :4]), **common)
    with pytest.raises(TypeError, match=r"^validation_data: expected a pair \(x_val, y_val\) or, for padded "
                                        r"sequences, \(x_val, y_val, mask_val\), got tuple of length 4"):
        net.fit(x, y, validation_data=(x, y, mask, mask), **common)
    with pytest.raises(ValueError, match=r"^lengths: expected 8 lengths \(one per sequence of x\)"):
        net.fit(x, y, lengths=[5, 4], **common)
    np.testing.assert_array_equal(net.store.data, before)


def test_a_given_mask_is_combined_with_the_one_a_masking_layer_starts() -> None:
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 5, 3))
    x[0, 3:] = 0.0  # Masking(0.0) marks these as padding
    given = np.ones((2, 5), dtype=bool)
    given[1, 2] = False
    net = bpcore.Network([Masking(0.0), GRU(3, 4)], dtype="float64", seed=0)
    got = net.forward(x, mask=given)
    both = given & (x != 0).any(axis=2)
    for row in range(2):
        np.testing.assert_allclose(got[row], net.forward(x[row : row + 1, both[row]])[0], atol=1e-13)
