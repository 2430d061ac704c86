"""CrossEntropy on logits (n, ..., k), the classes on the last axis: per-time-step and per-pixel losses."""

from __future__ import annotations

import numpy as np
import pytest

from bpcore import Network
from bpcore.gradcheck import gradcheck
from bpcore.layers import Dense, Tanh
from bpcore.losses import CrossEntropy
from bpcore.optim import Adam

SHAPES = [(4, 5, 3), (2, 3, 4, 5)]  # (N, T, K) and (N, H, W, K)
DTYPES = [np.float32, np.float64]


def _reference(logits: np.ndarray, target: np.ndarray, reduction: str) -> tuple[float, np.ndarray]:
    """Loss and gradient in float64 NumPy, independent of bpcore (log-sum-exp over the last axis)."""
    z = logits.astype(np.float64)
    k = z.shape[-1]
    if target.ndim == z.ndim - 1:
        target = np.eye(k)[target]
    shifted = z - z.max(axis=-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    per_label = -(target * log_p).sum(axis=-1)
    count = per_label.size if reduction == "mean" else 1
    return float(per_label.sum() / count), (np.exp(log_p) - target) / count


def _targets(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> np.ndarray:
    if kind == "labels":
        return rng.integers(0, shape[-1], size=shape[:-1])
    weights = rng.random(shape)
    return weights / weights.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["labels", "probabilities"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_values_and_gradients_match_numpy(shape, dtype, kind, reduction):
    rng = np.random.default_rng(sum(shape))
    logits = (rng.normal(size=shape) * 3).astype(dtype)
    target = _targets(rng, shape, kind)
    if kind == "probabilities":
        target = target.astype(dtype)
    loss = CrossEntropy(reduction=reduction)
    value = loss(logits, target)
    grad = loss.backward()
    expected_value, expected_grad = _reference(logits, target, reduction)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    assert value.shape == ()
    assert float(value) == pytest.approx(expected_value, rel=tolerance)
    assert grad.shape == shape and grad.dtype == dtype
    np.testing.assert_allclose(grad, expected_grad, rtol=10 * tolerance, atol=tolerance * 1e-2)


def test_mean_is_the_mean_over_every_label_and_matches_the_flattened_loss():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(3, 4, 6))
    labels = rng.integers(0, 6, size=(3, 4))
    per_step = CrossEntropy()(logits, labels)
    flat = CrossEntropy()(logits.reshape(12, 6), labels.reshape(12))
    assert float(per_step) == pytest.approx(float(flat), rel=1e-14)
    summed = CrossEntropy(reduction="sum")(logits, labels)
    assert float(summed) == pytest.approx(12 * float(per_step), rel=1e-14)


def test_non_contiguous_logits_and_labels_give_the_same_result():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(3, 5, 4))
    labels = rng.integers(0, 4, size=(3, 5))
    strided = np.asfortranarray(logits)
    expected = float(CrossEntropy()(logits, labels))
    loss = CrossEntropy()
    assert float(loss(strided, np.asfortranarray(labels))) == pytest.approx(expected, rel=1e-14)
    np.testing.assert_allclose(loss.backward(), _reference(logits, labels, "mean")[1], rtol=1e-12)
    # channels-first (n, k, t) moved to channels-last, as the documentation recommends
    channels_first = np.ascontiguousarray(logits.transpose(0, 2, 1))
    moved = channels_first.transpose(0, 2, 1)
    assert float(CrossEntropy()(moved, labels)) == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize("kind", ["labels", "probabilities"])
def test_loss_gradcheck_float64(kind):
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(2, 3, 4))
    assert gradcheck(CrossEntropy(), logits, y=_targets(rng, (2, 3, 4), kind)) < 1e-6


def test_network_with_per_step_output_gradcheck_float64():
    rng = np.random.default_rng(6)
    network = Network([Dense(3, 5), Tanh(), Dense(5, 4)], dtype="float64", seed=0)
    x = rng.normal(size=(2, 3, 3))
    labels = rng.integers(0, 4, size=(2, 3))
    assert gradcheck(network, x, y=labels, loss=CrossEntropy()) < 1e-6


@pytest.mark.parametrize(
    ("pred_shape", "target", "error", "pattern"),
    [
        ((2, 3, 4), np.zeros((2, 4), dtype=np.int64), ValueError,
         r"CrossEntropy\(target\): expected 6 class labels \(shape \(2, 3\)\) or probabilities of shape "
         r"\(2, 3, 4\).*got shape \(2, 4\)"),
        ((2, 3, 4), np.zeros((2, 3), dtype=np.float64), TypeError,
         r"CrossEntropy\(target\): expected integer class labels of shape \(2, 3\), got dtype float64"),
        ((2, 3, 4), np.array([[0, 1, 4], [0, 0, 0]]), ValueError,
         r"CrossEntropy\(target\): class labels must lie in \[0, 3\].*from 0 to 4.*shape \(2, 3\)"),
        ((2, 3, 4), np.array([[0, -1, 1], [0, 0, 0]]), ValueError, r"from -1 to 1"),
        ((2, 3, 4), np.full((2, 3, 4), 0.3), ValueError, r"sum to 1 over the last \(class\) axis"),
        ((2, 3, 4), np.zeros((2, 3, 5)), ValueError,
         r"probabilities of shape \(2, 3, 4\).*got shape \(2, 3, 5\)"),
    ],
)
def test_bad_targets_raise_one_clear_error(pred_shape, target, error, pattern):
    loss = CrossEntropy()
    with pytest.raises(error, match=pattern):
        loss(np.zeros(pred_shape), target)
    with pytest.raises(error, match=pattern):
        loss.check_target(target, pred_shape)


def _per_step_task(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each time step's class is the index of its largest feature: learnable by one Dense per step."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6, 3)).astype(np.float32)
    return x, x.argmax(axis=-1)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_fit_and_evaluate_a_per_time_step_task(reduction):
    x, y = _per_step_task(256, 0)
    x_val, y_val = _per_step_task(64, 1)
    network = Network([Dense(3, 16), Tanh(), Dense(16, 3)], seed=0)
    history = network.fit(
        x, y, loss=CrossEntropy(reduction=reduction), optimizer=Adam(network.parameters(), lr=0.02),
        epochs=25, batch_size=32, metrics=["accuracy"], validation_data=(x_val, y_val), seed=0,
    )
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert history.history["val_accuracy"][-1] > 0.9
    result = network.evaluate(x_val, y_val, loss=CrossEntropy(reduction=reduction), metrics=["accuracy"])
    pred = network.predict(x_val)
    assert pred.shape == (64, 6, 3)
    expected_accuracy = float((pred.argmax(axis=-1) == y_val).mean())
    assert result["accuracy"] == pytest.approx(expected_accuracy, abs=1e-12)
    assert result["accuracy"] == pytest.approx(history.history["val_accuracy"][-1], abs=1e-12)
    expected_loss = float(CrossEntropy(reduction=reduction)(pred, y_val))
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-5)
    batched = network.evaluate(x_val, y_val, loss=CrossEntropy(reduction=reduction), metrics=["accuracy"],
                               batch_size=24)  # uneven batches: 24, 24, 16
    assert batched["loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert batched["accuracy"] == pytest.approx(expected_accuracy, abs=1e-12)


def test_fit_takes_per_step_probabilities_and_reports_accuracy_over_every_label():
    x, y = _per_step_task(128, 2)
    one_hot = np.eye(3, dtype=np.float32)[y]
    network = Network([Dense(3, 3)], seed=1)
    labels_result = network.evaluate(x, y, loss=CrossEntropy(), metrics=["accuracy"])
    probs_result = network.evaluate(x, one_hot, loss=CrossEntropy(), metrics=["accuracy", "mse"])
    assert probs_result["loss"] == pytest.approx(labels_result["loss"], rel=1e-6)
    assert probs_result["accuracy"] == pytest.approx(labels_result["accuracy"], abs=1e-12)
    pred = network.predict(x)
    assert probs_result["mse"] == pytest.approx(float(((pred - one_hot) ** 2).mean()), rel=1e-5)


@pytest.mark.parametrize(
    ("y", "error", "pattern"),
    [
        (np.zeros((16, 5), dtype=np.int64), ValueError,
         r"y: CrossEntropy takes integer class labels of shape \(16, 6\) or class probabilities of shape "
         r"\(16, 6, 3\).*got shape \(16, 5\)"),
        (np.zeros((16, 6)), TypeError,
         r"y: CrossEntropy takes integer class labels of shape \(16, 6\).*float64"),
        (np.full((16, 6), 3), ValueError, r"y: class labels must lie in \[0, 3\).*from 3 to 3"),
        (np.full((16, 6, 3), 0.5), ValueError,
         r"y: CrossEntropy expects class probabilities to sum to 1 over the last \(class\) axis"),
        (np.zeros((15, 6), dtype=np.int64), ValueError, r"x and y: expected the same number of samples"),
    ],
)
def test_fit_rejects_bad_per_step_targets_before_training(y, error, pattern):
    x, _ = _per_step_task(16, 3)
    network = Network([Dense(3, 3)], seed=0)
    before = network.store.data.copy()
    with pytest.raises(error, match=pattern):
        network.fit(x, y, loss=CrossEntropy(), optimizer=Adam(network.parameters()), epochs=1)
    np.testing.assert_array_equal(network.store.data, before)


def test_channels_first_conv_output_recipe_matches_finite_differences():
    """The documented recipe for a per-pixel loss on a Conv2D output (n, k, h, w): move k last, and back."""
    from bpcore.layers import Conv2D

    rng = np.random.default_rng(7)
    network = Network([Conv2D(2, 3, 3, padding="same")], dtype="float64", seed=0)
    x = rng.normal(size=(2, 2, 3, 4))
    y = rng.integers(0, 3, size=(2, 3, 4))
    loss = CrossEntropy()

    def value(inputs: np.ndarray) -> float:
        return float(CrossEntropy()(network.forward(inputs, training=False).transpose(0, 2, 3, 1), y))

    loss(network.forward(x, training=True).transpose(0, 2, 3, 1), y)
    network.zero_grad()
    grad_x = network.backward(loss.backward().transpose(0, 3, 1, 2))
    assert grad_x.shape == x.shape
    for index in [(0, 0, 0, 0), (1, 1, 2, 3), (0, 1, 1, 2)]:
        step = np.zeros_like(x)
        step[index] = 1e-6
        numeric = (value(x + step) - value(x - step)) / 2e-6
        assert grad_x[index] == pytest.approx(numeric, rel=1e-6, abs=1e-9)
