"""CrossEntropy(ignore_index=...): PyTorch's semantics in the loss, the data checks, evaluate and accuracy."""

from __future__ import annotations

import numpy as np
import pytest

import bpcore
from bpcore.gradcheck import gradcheck
from bpcore.layers import Dense, Embedding
from bpcore.losses import CrossEntropy, get, serialize

DTYPES = [np.float32, np.float64]


def _reference(
    logits: np.ndarray, labels: np.ndarray, ignore: int, reduction: str
) -> tuple[float, np.ndarray]:
    """Loss and gradient in float64 NumPy, independent of bpcore, with PyTorch's ignore rule."""
    z = logits.astype(np.float64).reshape(-1, logits.shape[-1])
    y = labels.reshape(-1)
    keep = y != ignore
    shifted = z - z.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    safe = np.where(keep, y, 0)
    per_label = -log_p[np.arange(y.size), safe] * keep
    grad = (np.exp(log_p) - np.eye(z.shape[1])[safe]) * keep[:, None]
    if reduction == "mean":
        count = keep.sum()
        value = per_label.sum() / count if count else np.nan
        grad = grad / max(count, 1)
    else:
        value = per_label.sum()
    return float(value), grad.reshape(logits.shape)


@pytest.mark.parametrize("ignore", [-100, 0, 2, 255])
@pytest.mark.parametrize("shape", [(12, 4), (5, 6, 4)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_ignored_labels_give_neither_loss_nor_gradient(ignore, shape, dtype, reduction):
    rng = np.random.default_rng(abs(ignore) + len(shape))
    logits = (rng.normal(size=shape) * 3).astype(dtype)
    labels = rng.integers(0, shape[-1], size=shape[:-1])
    labels[rng.random(labels.shape) < 0.4] = ignore
    loss = CrossEntropy(ignore_index=ignore, reduction=reduction)
    value, grad = float(loss(logits, labels)), loss.backward()
    expected_value, expected_grad = _reference(logits, labels, ignore, reduction)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    assert value == pytest.approx(expected_value, rel=tolerance)
    assert grad.dtype == dtype
    np.testing.assert_allclose(grad, expected_grad, rtol=10 * tolerance, atol=tolerance * 1e-2)
    np.testing.assert_array_equal(grad[labels == ignore], 0.0)
    assert np.array_equal(labels, labels.copy())  # the caller's labels are not rewritten


def test_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(30, 7))
    for ignore in (-100, 3):
        labels = rng.integers(0, 7, 30)
        labels[::4] = ignore
        for reduction in ("mean", "sum"):
            z = torch.tensor(logits, requires_grad=True)
            expected = torch.nn.functional.cross_entropy(
                z, torch.tensor(labels), ignore_index=ignore, reduction=reduction
            )
            expected.backward()
            loss = CrossEntropy(ignore_index=ignore, reduction=reduction)
            assert float(loss(logits, labels)) == pytest.approx(expected.item(), rel=1e-12)
            np.testing.assert_allclose(loss.backward(), z.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_every_label_ignored_is_nan_for_the_mean_and_zero_gradient():
    logits = np.random.default_rng(1).normal(size=(3, 5, 4))
    labels = np.full((3, 5), -100)
    loss = CrossEntropy()
    assert np.isnan(float(loss(logits, labels)))
    np.testing.assert_array_equal(loss.backward(), 0.0)
    summed = CrossEntropy(reduction="sum")
    assert float(summed(logits, labels)) == 0.0
    np.testing.assert_array_equal(summed.backward(), 0.0)


def test_gradients_match_finite_differences_with_ignored_labels():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(6, 3, 5))
    labels = rng.integers(0, 5, (6, 3))
    labels[:, 2] = -100
    assert gradcheck(CrossEntropy(), logits, y=labels) < 1e-6
    labels[:, 2] = 1
    assert gradcheck(CrossEntropy(ignore_index=1, reduction="sum"), logits, y=labels) < 1e-6


def test_bad_labels_and_probabilities_are_refused_clearly():
    logits = np.zeros((3, 4))
    message = r"\[0, 3\] for 4 classes \(or equal ignore_index=-100\), got labels from -1 to 0"
    with pytest.raises(ValueError, match=message):
        CrossEntropy()(logits, np.array([0, -1, -100]))
    with pytest.raises(ValueError, match="got labels from 1 to 4"):
        CrossEntropy(ignore_index=9)(logits, np.array([4, 9, 1]))
    with pytest.raises(ValueError, match="ignore_index=0 applies to class labels"):
        CrossEntropy(ignore_index=0)(logits, np.full((3, 4), 0.25))
    assert float(CrossEntropy()(logits, np.full((3, 4), 0.25))) == pytest.approx(np.log(4))
    with pytest.raises(TypeError, match="ignore_index"):
        CrossEntropy(ignore_index=1.5)


def test_config_round_trips():
    loss = CrossEntropy(ignore_index=0, reduction="sum")
    again = get(serialize(loss))
    assert isinstance(again, CrossEntropy) and again.config() == {"ignore_index": 0, "reduction": "sum"}
    assert repr(CrossEntropy()) == "CrossEntropy(ignore_index=-100, reduction='mean')"


def _padded_data(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.integers(1, 20, (23, 7))
    y = rng.integers(0, 3, (23, 7))
    lengths = rng.integers(1, 8, 23)
    padded = np.arange(7)[None, :] >= lengths[:, None]
    x[padded], y[padded] = 0, -100
    y[:2] = -100  # two samples with no label that counts at all
    return x, y


def test_fit_and_evaluate_count_only_the_labels_that_are_not_ignored():
    rng = np.random.default_rng(3)
    x, y = _padded_data(rng)
    net = bpcore.Network([Embedding(20, 6, padding_idx=0), Dense(6, 3)], seed=0)
    history = net.fit(x, y, loss=CrossEntropy(), optimizer=bpcore.optim.Adam(net.parameters(), lr=1e-2),
                      epochs=2, batch_size=8, metrics=["accuracy"], validation_split=0.3, verbose=0)
    assert np.isfinite(history.history["val_loss"]).all()
    out = net.predict(x).astype(np.float64)
    for batch_size in (3, 50):  # batches with no label that counts get no weight
        result = net.evaluate(x, y, loss=CrossEntropy(), metrics=["accuracy"], batch_size=batch_size)
        expected, _ = _reference(out, y, -100, "mean")
        keep = y != -100
        assert result["loss"] == pytest.approx(expected, rel=1e-5)
        assert result["accuracy"] == pytest.approx((out.argmax(-1) == y)[keep].mean(), rel=1e-12)


def test_fit_refuses_labels_that_are_neither_classes_nor_ignored():
    rng = np.random.default_rng(4)
    x, y = _padded_data(rng)
    y[5, 0] = -1
    net = bpcore.Network([Embedding(20, 6), Dense(6, 3)], seed=0)
    with pytest.raises(ValueError, match=r"\[0, 3\) \(or equal ignore_index=-100\).*from -1 to"):
        net.fit(x, y, loss=CrossEntropy(), optimizer=bpcore.optim.SGD(net.parameters(), lr=0.1), epochs=1,
                verbose=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("every_label_ignored", [False, True])
def test_the_count_kept_on_a_device_gives_the_host_result(dtype, every_label_ignored):
    """Labels on a GPU are counted there (a 0-d array, no synchronisation): emulated with 0-d NumPy."""
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(8, 5, 4)).astype(dtype)
    labels = rng.integers(0, 4, (8, 5))
    labels[:, 3:] = -100
    if every_label_ignored:
        labels[...] = -100
    loss = CrossEntropy()
    expected_value, expected_grad = float(loss(logits, labels)), loss.backward().copy()
    backend, pred, target = loss._saved
    loss._count = np.asarray(loss._count)  # what a device keeps: (labels >= 0).sum()
    with np.errstate(invalid="ignore"):  # 0 / 0 on the host warns; CuPy does not
        value = loss._forward(backend, pred, target)
    grad = loss._backward(backend, pred, target)
    assert value.dtype == dtype and grad.dtype == dtype
    if every_label_ignored:
        assert np.isnan(float(value)) and np.isnan(expected_value)
    else:
        assert float(value) == pytest.approx(expected_value, rel=1e-6)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-8)
