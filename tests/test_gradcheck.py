"""gradcheck itself: it accepts correct gradients, catches wrong ones, and leaves targets untouched."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import bpcore
from bpcore.gradcheck import gradcheck
from bpcore.layers import BatchNorm, Dense, Dropout, ReLU, Residual, Sigmoid, Tanh


class SquaredError:
    """A minimal loss object with the bpcore loss protocol: ``loss(pred, y)`` then ``backward()``."""

    def __init__(self, wrong: bool = False, off_by: float = 0.01) -> None:
        self.wrong = wrong
        self.off_by = off_by

    def __call__(self, pred: Any, target: Any) -> Any:
        self._diff = pred - target
        return (self._diff**2).mean()

    def backward(self) -> Any:
        grad = 2 * self._diff / self._diff.size
        return grad * (1 + self.off_by) if self.wrong else grad


class TanhWithWrongBackward(Tanh):
    """tanh whose backward forgets the 1 - y^2 factor for negative outputs."""

    def backward(self, grad_out: Any, *, accumulate: bool = True, need_input_grad: bool = True) -> Any:
        good = super().backward(grad_out)
        return np.where(self._saved < 0, grad_out, good)


class DenseWithWrongBiasGrad(Dense):
    def backward(self, grad_out: Any, *, accumulate: bool = True, need_input_grad: bool = True) -> Any:
        result = super().backward(grad_out, accumulate=accumulate, need_input_grad=need_input_grad)
        self.bias.grad *= 0.5
        return result


def x_of(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape)


def test_correct_gradients_score_near_zero() -> None:
    assert gradcheck(Dense(4, 3), x_of((5, 4))) < 1e-6
    assert gradcheck(SquaredError(), x_of((5, 3)), y=x_of((5, 3), 1)) < 1e-6


@pytest.mark.parametrize(
    ("target", "where"),
    [(TanhWithWrongBackward(), "x"), (DenseWithWrongBiasGrad(3, 2), "bias")],
)
def test_wrong_gradients_are_caught_and_located(target: Any, where: str) -> None:
    error, location = gradcheck(target, x_of((6, 3)), seed=1, directions=0, return_location=True)
    assert error > 0.1
    assert where in location


def test_a_wrong_loss_gradient_is_caught() -> None:
    assert gradcheck(SquaredError(wrong=True), x_of((4, 2)), y=x_of((4, 2), 1)) > 5e-3


def test_rounding_noise_does_not_count_but_a_small_real_error_does() -> None:
    # Entries whose gradient is tiny beside the largest were scored by the last bits of the loss
    # (which differ between CPUs): the difference quotient's rounding noise counts as agreement now.
    x, y = x_of((4, 3)), x_of((4, 3), 1)
    y[0, 0] = x[0, 0] + 1e-4  # one entry's gradient 1e-4 times the others'
    assert gradcheck(SquaredError(), x, y=y) == 0.0
    # ... while an error of one part in 10^5, far above the noise, is still seen
    assert gradcheck(SquaredError(wrong=True, off_by=1e-5), x, y=y) > 5e-6


class TinySquaredError(SquaredError):
    """A squared error scaled so far down that its gradients drown in the difference quotient's noise."""

    def __call__(self, pred: Any, target: Any) -> Any:
        return super().__call__(pred, target) * 1e-12

    def backward(self) -> Any:
        return super().backward() * 1e-12


def test_gradients_below_the_noise_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="bpcore"):
        gradcheck(TinySquaredError(wrong=True), x_of((4, 3)), y=x_of((4, 3), 1))
    assert "below the rounding noise" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="bpcore"):
        gradcheck(SquaredError(), x_of((4, 3)), y=x_of((4, 3), 1))
    assert caplog.text == ""


def test_directional_checks_alone_catch_a_wrong_gradient() -> None:
    network = bpcore.Network([DenseWithWrongBiasGrad(3, 40), Sigmoid()], dtype="float64", seed=0)
    assert gradcheck(network, x_of((4, 3)), max_elements=0, directions=2) > 1e-3
    good = bpcore.Network([Dense(3, 40), Sigmoid()], dtype="float64", seed=0)
    assert gradcheck(good, x_of((4, 3)), max_elements=0, directions=2) < 1e-6


def test_large_arrays_are_sampled() -> None:
    network = bpcore.Network([Dense(30, 30), Tanh(), Dense(30, 2)], dtype="float64", seed=0)
    assert gradcheck(network, x_of((8, 30)), max_elements=16, directions=2) < 1e-6


def test_network_with_a_loss() -> None:
    network = bpcore.Network([Dense(3, 5), ReLU(), Dense(5, 2)], dtype="float64", seed=0)
    assert gradcheck(network, x_of((6, 3)), loss=SquaredError(), y=x_of((6, 2), 1)) < 1e-6


def test_dropout_is_checked_with_one_fixed_mask() -> None:
    network = bpcore.Network([Dense(4, 6), Dropout(0.5), Dense(6, 2)], dtype="float64", seed=0)
    assert gradcheck(network, x_of((5, 4)), training=True) < 1e-6
    assert gradcheck(Dropout(0.5), x_of((5, 4)), training=True) < 1e-6


def test_the_network_is_left_exactly_as_it_was() -> None:
    batchnorm = BatchNorm(6)
    network = bpcore.Network(
        [Dense(4, 6), batchnorm, Dropout(0.3), Residual(Dense(6, 6), Tanh()), Dense(6, 2)],
        dtype="float64",
        seed=3,
    )
    x = x_of((5, 4))
    network.forward(x, training=True)
    network.backward(np.ones((5, 2)))
    data, grad = network.store.data.copy(), network.store.grad.copy()
    stats = batchnorm.running_mean.copy(), batchnorm.running_var.copy()
    twin = bpcore.Network(
        [Dense(4, 6), BatchNorm(6), Dropout(0.3), Residual(Dense(6, 6), Tanh()), Dense(6, 2)],
        dtype="float64",
        seed=3,
    )
    twin.forward(x, training=True)

    assert gradcheck(network, x, seed=0) < 1e-6

    np.testing.assert_array_equal(network.store.data, data)
    np.testing.assert_array_equal(network.store.grad, grad)
    np.testing.assert_array_equal(batchnorm.running_mean, stats[0])
    np.testing.assert_array_equal(batchnorm.running_var, stats[1])
    # the dropout stream continues where it was, as in an untouched twin
    np.testing.assert_array_equal(network.forward(x, training=True), twin.forward(x, training=True))


def test_an_unbuilt_layer_stays_unbuilt() -> None:
    layer = Dense(3, 2)
    gradcheck(layer, x_of((4, 3)))
    assert not layer.built and layer.weight.data is None
    bpcore.Network([layer])  # still free to join a network


def test_a_built_float64_layer_is_checked_in_place() -> None:
    layer = Dense(3, 2)
    network = bpcore.Network([layer], dtype="float64", seed=0)
    before = network.store.data.copy()
    assert gradcheck(layer, x_of((4, 3))) < 1e-6
    np.testing.assert_array_equal(network.store.data, before)


def test_float32_targets_are_refused_with_the_reason() -> None:
    network = bpcore.Network([Dense(3, 2)], dtype="float32", seed=0)
    with pytest.raises(ValueError, match=r"gradcheck needs float64.*float32.*rounding.*dtype='float64'"):
        gradcheck(network, x_of((4, 3)))
    with pytest.raises(ValueError, match=r"gradcheck needs float64.*Dense"):
        gradcheck(network.layers[0], x_of((4, 3)))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: gradcheck("relu", x_of((2, 2))), TypeError, r"gradcheck\(target\): expected a bpcore Layer"),
        (lambda: gradcheck(Tanh(), np.ones((2, 2), int)), TypeError, r"gradcheck\(x\): expected a floating"),
        (lambda: gradcheck(Tanh(), np.full((2, 2), np.nan)), ValueError, r"gradcheck\(x\): contains NaN"),
        (lambda: gradcheck(Tanh(), np.ones((0, 2))), ValueError, r"gradcheck\(x\): expected a non-empty"),
        (
            lambda: gradcheck(Dense(3, 2), x_of((2, 4))),
            ValueError,
            r"gradcheck\(x\).*expected 3 input features",
        ),
        (lambda: gradcheck(Tanh(), x_of((2, 2)), eps=0), ValueError, r"gradcheck\(eps\)"),
        (lambda: gradcheck(Tanh(), x_of((2, 2)), max_elements=0, directions=0), ValueError, "nothing"),
        (lambda: gradcheck(Tanh(), x_of((2, 2)), loss=SquaredError()), ValueError, r"gradcheck\(y\)"),
        (lambda: gradcheck(Tanh(), x_of((2, 2)), loss=max, y=1), TypeError, r"gradcheck\(loss\)"),
        (lambda: gradcheck(SquaredError(), x_of((2, 2))), ValueError, r"gradcheck\(y\)"),
        (lambda: gradcheck(BatchNorm(2), x_of((1, 2))), ValueError, r"more than 1 value per channel"),
    ],
)
def test_bad_arguments(call: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        call()


def test_network_input_is_validated_like_forward() -> None:
    network = bpcore.Network([Dense(3, 2)], dtype="float64", seed=0)
    with pytest.raises(ValueError, match=r"x: expected 3 features per sample, got shape \(2, 4\)"):
        gradcheck(network, x_of((2, 4)))


def test_the_library_losses_pass_through_gradcheck() -> None:
    losses = pytest.importorskip("bpcore.losses")
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    labels = np.array([0, 1, 2, 1, 0])
    assert gradcheck(losses.MSE(), pred, y=target) < 1e-6
    assert gradcheck(losses.CrossEntropy(), pred, y=labels) < 1e-6
    network = bpcore.Network([Dense(3, 4), Tanh(), Dense(4, 3)], dtype="float64", seed=0)
    assert gradcheck(network, pred, loss=losses.CrossEntropy(), y=labels) < 1e-6
