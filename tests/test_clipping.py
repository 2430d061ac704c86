"""Gradient clipping: torch's norm and value semantics on the flat and per-parameter paths."""

from __future__ import annotations

import numpy as np
import pytest

from bpcore import Network
from bpcore.layers import Dense
from bpcore.optim import clip_grad_norm, clip_grad_value


@pytest.fixture(params=["fused", "generic"])
def kernels(request, monkeypatch):
    """Run a test with the compiled kernels (where present) and with the generic reference code."""
    monkeypatch.setenv("BPCORE_KERNELS", request.param)
    return request.param


def network_with_grads(grads, dtype: str = "float64") -> Network:
    network = Network([Dense(2, 1)], dtype=dtype, seed=0)  # weight (2, 1) then bias (1,)
    network.store.grad[...] = np.asarray(grads)
    return network


@pytest.mark.parametrize("flat", [True, False], ids=["flat", "per-parameter"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_clip_grad_norm_scales_to_max_norm_and_returns_the_norm(flat, dtype, kernels):
    network = network_with_grads([3.0, 0.0, 4.0], dtype)
    params = network.parameters() if flat else network.parameters()[::-1]
    total = clip_grad_norm(params, max_norm=1.0)
    assert isinstance(total, np.ndarray) and total.shape == () and total.dtype == np.dtype(dtype)
    np.testing.assert_allclose(total, 5.0, rtol=1e-7)
    coefficient = 1.0 / (5.0 + 1e-6)  # torch: max_norm / (total_norm + 1e-6)
    rtol = 1e-6 if dtype == "float32" else 1e-15
    np.testing.assert_allclose(network.store.grad, [3 * coefficient, 0.0, 4 * coefficient], rtol=rtol)


def test_clip_grad_norm_leaves_small_gradients_alone():
    network = network_with_grads([0.3, -0.4, 0.0])
    total = clip_grad_norm(network.parameters(), max_norm=10)
    np.testing.assert_allclose(total, 0.5, rtol=1e-15)
    np.testing.assert_array_equal(network.store.grad, [0.3, -0.4, 0.0])


@pytest.mark.parametrize("flat", [True, False], ids=["flat", "per-parameter"])
@pytest.mark.parametrize(
    ("norm_type", "norm"),
    [(1.0, 9.0), (3, (27 + 8 + 64) ** (1 / 3)), (float("inf"), 4.0), ("inf", 4.0)],
)
def test_other_norms(flat, norm_type, norm, kernels):
    network = network_with_grads([3.0, -2.0, -4.0])
    params = network.parameters() if flat else network.parameters()[::-1]
    total = clip_grad_norm(params, max_norm=2.0, norm_type=norm_type)
    np.testing.assert_allclose(total, norm, rtol=1e-14)
    expected = np.array([3.0, -2.0, -4.0]) * 2.0 / (norm + 1e-6)
    np.testing.assert_allclose(network.store.grad, expected, rtol=1e-14)


def test_clip_only_touches_the_given_parameters():
    network = network_with_grads([3.0, 4.0, 100.0])
    weight, _bias = network.parameters()
    total = clip_grad_norm([weight], max_norm=1.0)
    np.testing.assert_allclose(total, 5.0)
    assert network.store.grad[2] == 100.0
    clip_grad_value([weight], 0.1)
    np.testing.assert_allclose(network.store.grad, [0.1, 0.1, 100.0])


def test_nonfinite_norm():
    network = network_with_grads([np.nan, 1.0, 0.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm(network.parameters(), 1.0, error_if_nonfinite=True)
    assert np.isnan(clip_grad_norm(network.parameters(), 1.0))  # torch's default: scale anyway


def test_empty_parameter_list_has_norm_zero():
    assert float(clip_grad_norm([], 1.0)) == 0.0
    clip_grad_value([], 1.0)


@pytest.mark.parametrize("flat", [True, False], ids=["flat", "per-parameter"])
def test_clip_grad_value(flat, kernels):
    network = network_with_grads([-0.5, 2.0, -3.0])
    params = network.parameters() if flat else network.parameters()[::-1]
    assert clip_grad_value(params, 1.0) is None
    np.testing.assert_array_equal(network.store.grad, [-0.5, 1.0, -1.0])


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda p: clip_grad_norm(p, -1.0), ValueError, "max_norm: expected a finite number >= 0"),
        (lambda p: clip_grad_norm(p, float("nan")), ValueError, "max_norm"),
        (lambda p: clip_grad_norm(p, "1"), TypeError, "max_norm: expected a finite number >= 0, got '1'"),
        (lambda p: clip_grad_norm(p, 1.0, norm_type=0), ValueError, "norm_type: expected a number > 0"),
        (lambda p: clip_grad_norm(p, 1.0, norm_type="fro"), TypeError, "norm_type"),
        (lambda p: clip_grad_value(p, -1.0), ValueError, "clip_value: expected a finite number >= 0"),
        (lambda p: clip_grad_value([np.zeros(3)], 1.0), TypeError, r"params\[0\]: expected a bpcore"),
    ],
)
def test_bad_arguments_raise_one_clear_error_and_leave_gradients(call, error, match):
    network = network_with_grads([3.0, 4.0, 5.0])
    with pytest.raises(error, match=match):
        call(network.parameters())
    np.testing.assert_array_equal(network.store.grad, [3.0, 4.0, 5.0])


def test_matches_torch_when_available():
    torch = pytest.importorskip("torch")
    grads = np.random.default_rng(0).normal(size=3) * 10
    for norm_type in (2.0, 1.0, float("inf")):
        network = network_with_grads(grads)
        total = clip_grad_norm(network.parameters(), 1.5, norm_type)
        tensor = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        tensor.grad = torch.tensor(grads)
        torch_total = torch.nn.utils.clip_grad_norm_([tensor], 1.5, norm_type)
        np.testing.assert_allclose(total, torch_total.item(), rtol=1e-14)
        np.testing.assert_allclose(network.store.grad, tensor.grad.numpy(), rtol=1e-14)
