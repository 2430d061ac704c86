"""Losses: values against direct formulas, gradients against central differences, bad targets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bpcore.gradcheck import gradcheck
from bpcore.losses import MSE, BinaryCrossEntropy, CrossEntropy, Huber, Loss, get, serialize

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["mean", "sum"]


@pytest.fixture(params=["fused", "generic"])
def kernels(request, monkeypatch):
    """Run a test with the compiled kernels (where present) and with the generic reference code."""
    monkeypatch.setenv("BPCORE_KERNELS", request.param)
    return request.param


def numeric_grad(loss: Loss, pred: np.ndarray, target: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of ``loss(pred, target)`` with respect to every entry of ``pred`` (float64)."""
    pred = pred.astype(np.float64).copy()
    grad = np.zeros_like(pred)
    flat, out = pred.reshape(-1), grad.reshape(-1)
    for index in range(flat.size):
        saved = flat[index]
        flat[index] = saved + eps
        up = float(loss(pred, target))
        flat[index] = saved - eps
        down = float(loss(pred, target))
        flat[index] = saved
        out[index] = (up - down) / (2 * eps)
    return grad


def reduce(values: np.ndarray, reduction: str, count: int) -> float:
    return float(values.sum() / count if reduction == "mean" else values.sum())


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# --- values -------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_value_and_gradient(dtype, reduction, kernels):
    rng = np.random.default_rng(1)
    pred, target = rng.normal(size=(5, 3)).astype(dtype), rng.normal(size=(5, 3)).astype(dtype)
    loss = MSE(reduction=reduction)
    value = loss(pred, target)
    assert isinstance(value, np.ndarray) and value.shape == () and value.dtype == dtype
    d = pred.astype(np.float64) - target
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(value, reduce(d**2, reduction, d.size), rtol=rtol)
    scale = 1 / d.size if reduction == "mean" else 1.0
    np.testing.assert_allclose(loss.backward(), 2 * d * scale, rtol=rtol, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_huber_value(dtype, reduction, kernels):
    rng = np.random.default_rng(2)
    pred, target = (3 * rng.normal(size=(6, 2))).astype(dtype), rng.normal(size=(6, 2)).astype(dtype)
    delta = 0.7
    d = pred.astype(np.float64) - target
    expected = np.where(np.abs(d) < delta, 0.5 * d**2, delta * (np.abs(d) - 0.5 * delta))
    value = Huber(delta, reduction=reduction)(pred, target)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(value, reduce(expected, reduction, d.size), rtol=rtol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_value_on_probabilities_and_logits(dtype, reduction, kernels):
    rng = np.random.default_rng(3)
    z = rng.normal(size=(7, 2))
    p = 1 / (1 + np.exp(-z))
    t = rng.uniform(size=(7, 2))
    expected = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    value = BinaryCrossEntropy(reduction=reduction)(p.astype(dtype), t.astype(dtype))
    np.testing.assert_allclose(value, reduce(expected, reduction, z.size), rtol=rtol)
    value = BinaryCrossEntropy(from_logits=True, reduction=reduction)(z.astype(dtype), t.astype(dtype))
    np.testing.assert_allclose(value, reduce(expected, reduction, z.size), rtol=rtol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_value_with_labels_and_probabilities(dtype, reduction, kernels):
    rng = np.random.default_rng(4)
    z = rng.normal(size=(6, 4))
    labels = rng.integers(0, 4, size=6)
    log_softmax = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    expected = -log_softmax[np.arange(6), labels]
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    loss = CrossEntropy(reduction=reduction)
    np.testing.assert_allclose(loss(z.astype(dtype), labels), reduce(expected, reduction, 6), rtol=rtol)
    soft = rng.dirichlet(np.ones(4), size=6)
    expected = -(soft * log_softmax).sum(axis=1)
    value = loss(z.astype(dtype), soft.astype(dtype))
    np.testing.assert_allclose(value, reduce(expected, reduction, 6), rtol=rtol)
    scale = 1 / 6 if reduction == "mean" else 1.0
    np.testing.assert_allclose(loss.backward(), (softmax(z) - soft) * scale, rtol=rtol, atol=1e-7)


# --- gradients against central differences (float64) ---------------------------
def _cases():
    rng = np.random.default_rng(5)
    z = rng.normal(size=(4, 3))
    yield "mse", MSE(), z, rng.normal(size=(4, 3))
    yield "mse-column", MSE(), rng.normal(size=(5, 1)), rng.normal(size=5)
    yield "huber", Huber(0.5), 2 * z, rng.normal(size=(4, 3))
    yield "bce", BinaryCrossEntropy(), rng.uniform(0.05, 0.95, size=(4, 3)), rng.uniform(size=(4, 3))
    yield "bce-logits", BinaryCrossEntropy(from_logits=True), z, rng.uniform(size=(4, 3))
    yield "ce-labels", CrossEntropy(), z, rng.integers(0, 3, size=4)
    yield "ce-probs", CrossEntropy(), z, rng.dirichlet(np.ones(3), size=4)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", list(_cases()), ids=lambda case: case[0])
def test_gradient_matches_central_differences(case, reduction, kernels):
    _name, loss, pred, target = case
    loss = type(loss)(**{**loss.config(), "reduction": reduction})
    loss(pred, target)
    analytic = loss.backward().copy()
    numeric = numeric_grad(loss, pred, target)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("case", list(_cases()), ids=lambda case: case[0])
def test_gradcheck_agrees(case):
    _name, loss, pred, target = case
    assert gradcheck(loss, pred, y=target) < 1e-6


# --- extremes -----------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_logits_stay_finite(dtype, kernels):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], dtype=dtype)
    ce = CrossEntropy()
    value = ce(z, np.array([1, 2]))
    assert np.isfinite(value) and np.isfinite(ce.backward()).all()
    np.testing.assert_allclose(value, 1e4, rtol=1e-6)  # (2e4 + 0) / 2
    np.testing.assert_allclose(ce.backward(), [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]], atol=1e-7)
    bce = BinaryCrossEntropy(from_logits=True)
    value = bce(z, np.array([[0, 1, 1], [1, 0, 0.5]], dtype=dtype))
    assert np.isfinite(value) and np.isfinite(bce.backward()).all()
    np.testing.assert_allclose(value, (1e4 + 1e4 + np.log(2) + 1e4 + 0 + 0.5e4) / 6, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_on_saturated_probabilities_is_finite_like_torch(dtype, kernels):
    p = np.array([[0.0, 1.0, 0.0, 1.0]], dtype=dtype)
    t = np.array([[0.0, 1.0, 1.0, 0.0]], dtype=dtype)
    loss = BinaryCrossEntropy(reduction="sum")
    np.testing.assert_allclose(loss(p, t), 200.0)  # each log clamped at -100
    grad = loss.backward()
    np.testing.assert_allclose(grad, [[0.0, 0.0, -1e12, 1e12]], rtol=1e-6)


# --- device, buffers, config ----------------------------------------------------
def test_value_is_zero_dimensional_array_and_gradient_buffer_is_reused():
    loss = MSE()
    pred = np.ones((3, 2))
    loss(pred, np.zeros((3, 2)))
    first = loss.backward()
    loss(pred, np.ones((3, 2)))
    assert loss.backward() is first and not first.any()
    loss(np.ones((4, 2)), np.zeros((4, 2)))
    assert loss.backward().shape == (4, 2)


def test_target_moves_to_prediction_dtype_and_column_targets_are_accepted():
    loss = MSE()
    value = loss(np.ones((3, 1), dtype=np.float32), [0, 1, 2])
    assert value.dtype == np.float32
    np.testing.assert_allclose(value, (1 + 0 + 1) / 3)
    assert loss.backward().shape == (3, 1)


def test_one_hot_integer_targets_are_probabilities():
    z = np.random.default_rng(0).normal(size=(3, 4))
    labels = np.array([0, 3, 1])
    loss = CrossEntropy()
    expected = float(loss(z, labels))
    assert float(loss(z, np.eye(4, dtype=np.int64)[labels])) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "loss", [MSE(), Huber(2.0, reduction="sum"), BinaryCrossEntropy(True), CrossEntropy()]
)
def test_config_round_trips_through_json(loss):
    rebuilt = get(json.loads(json.dumps(serialize(loss))))
    assert type(rebuilt) is type(loss) and rebuilt.config() == loss.config()


def test_get_by_name():
    assert isinstance(get("mse"), MSE)
    assert isinstance(get("CrossEntropy"), CrossEntropy)
    loss = Huber()
    assert get(loss) is loss
    with pytest.raises(ValueError, match="loss: expected one of"):
        get("hinge")
    with pytest.raises(TypeError, match="loss: expected a Loss"):
        get(3)


# --- errors ---------------------------------------------------------------------
def test_backward_before_call():
    with pytest.raises(RuntimeError, match=r"MSE.backward\(\): call the loss"):
        MSE().backward()


@pytest.mark.parametrize(
    ("make", "pred", "target", "error", "match"),
    [
        (MSE, np.zeros((3, 2)), np.zeros((3, 3)), ValueError, r"expected shape \(3, 2\).*got \(3, 3\)"),
        (MSE, np.zeros((3, 2)), np.array([[np.nan, 0]] * 3), ValueError, "NaN or Inf"),
        (MSE, np.zeros((3, 2)), np.array([["a", "b"]] * 3), TypeError, "numeric array"),
        (MSE, np.zeros((3, 2), dtype=np.int64), np.zeros((3, 2)), TypeError, "pred.*float32 or float64"),
        (MSE, np.zeros((0, 2)), np.zeros((0, 2)), ValueError, "non-empty"),
        (Huber, np.zeros(3), np.array([0, np.inf, 0]), ValueError, "NaN or Inf"),
        (BinaryCrossEntropy, np.full((2, 1), 0.5), [[0.5], [1.5]], ValueError, r"probabilities in \[0, 1\]"),
        (BinaryCrossEntropy, np.full((2, 1), 0.5), [[0.5], [-0.1]], ValueError, r"in \[0, 1\]"),
        (CrossEntropy, np.zeros((3, 4)), [0, 4, 1], ValueError, r"must lie in \[0, 3\].*from 0 to 4"),
        (CrossEntropy, np.zeros((3, 4)), np.array([0, -1, 1]), ValueError, r"from -1 to 1"),
        (CrossEntropy, np.zeros((3, 4)), [0.0, 1.0, 2.0], TypeError, "integer class labels.*astype"),
        (CrossEntropy, np.zeros((3, 4)), np.array([0, 1]), ValueError, r"expected 3 class labels"),
        (CrossEntropy, np.zeros((3, 4)), np.zeros((3, 3)), ValueError, r"probabilities of shape \(3, 4\)"),
        (CrossEntropy, np.zeros((3, 4)), np.full((3, 4), 0.3), ValueError, "sum to 1"),
        (CrossEntropy, np.zeros((3, 4)), np.array([[1.5, -0.5, 0, 0]] * 3), ValueError, "non-negative"),
        (CrossEntropy, np.zeros((3, 4)), np.array([[np.nan, 1, 0, 0]] * 3), ValueError, "NaN or Inf"),
        (CrossEntropy, np.zeros(4), np.array([0]), ValueError, r"logits of shape \(n_samples, n_classes\)"),
        (CrossEntropy, np.zeros((3, 4)), np.array([True, False, True]), TypeError, "integer class labels"),
    ],
)
def test_bad_input_raises_one_clear_error(make, pred, target, error, match):
    with pytest.raises(error, match=match):
        make()(pred, target)


def test_check_false_skips_value_checks_but_not_shape_checks():
    loss = CrossEntropy()
    with pytest.raises(ValueError, match="expected 3 class labels"):
        loss(np.zeros((3, 4)), np.array([0, 1]), check=False)
    loss(np.zeros((3, 4)), np.array([0, 1, 2]), check=False)
    with pytest.raises(ValueError, match="must lie in"):
        loss.check_target(np.array([0, 9, 1]), (3, 4))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: MSE(reduction="none"), "reduction: expected one of 'mean', 'sum', got 'none'"),
        (lambda: Huber(0), r"Huber\(delta\): expected a finite number > 0, got 0"),
        (lambda: Huber(float("nan")), r"Huber\(delta\)"),
        (lambda: BinaryCrossEntropy(from_logits="yes"), "from_logits"),
    ],
)
def test_bad_constructor_arguments(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


@pytest.mark.gpu
def test_losses_run_on_the_gpu_without_host_copies():
    import cupy

    rng = np.random.default_rng(6)
    z = rng.normal(size=(5, 3))
    labels = rng.integers(0, 3, size=5)
    expected = CrossEntropy()(z, labels)
    loss = CrossEntropy()
    value = loss(cupy.asarray(z), cupy.asarray(labels))
    assert isinstance(value, cupy.ndarray) and value.shape == ()
    np.testing.assert_allclose(cupy.asnumpy(value), expected, rtol=1e-12)
    assert isinstance(loss.backward(), cupy.ndarray)
