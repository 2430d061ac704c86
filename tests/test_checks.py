"""One argument checker for the whole library: numbers, flags and choices refused or accepted alike."""

from __future__ import annotations

import math

import numpy as np
import pytest

import bpcore
from bpcore import checks
from bpcore.checkpoint import ModelCheckpoint
from bpcore.layers import Dense, Dropout, Sigmoid
from bpcore.losses import BinaryCrossEntropy, Huber
from bpcore.optim import SGD, Adam, RMSProp, StepLR, clip_grad_norm
from bpcore.training import EarlyStopping


# --- the checker itself -------------------------------------------------------------------------
@pytest.mark.parametrize("value", [3, np.int64(3), np.int32(3), np.uint8(3)])
def test_integers_accept_numpy_scalars_and_return_python_ints(value) -> None:
    result = checks.positive_int(value, "n")
    assert result == 3 and type(result) is int


@pytest.mark.parametrize(
    ("value", "error", "seen"),
    [
        (True, TypeError, "got True"),
        (np.True_, TypeError, "got bool np.True_"),
        (2.0, TypeError, "got 2.0"),
        ("3", TypeError, "got '3'"),
        (0, ValueError, "got 0"),
        (10**400, ValueError, "got an integer of 401 digits"),
        (2**63, ValueError, "got an integer of 19 digits"),
    ],
)
def test_integers_refuse_bools_floats_strings_and_overflow(value, error, seen) -> None:
    with pytest.raises(error, match=f"n: expected a positive integer, {seen}"):
        checks.positive_int(value, "n")


@pytest.mark.parametrize("value", [0.5, np.float32(0.5), np.float64(0.5), 1, np.int16(1)])
def test_reals_accept_numpy_scalars(value) -> None:
    result = checks.positive(value, "x")
    assert result == float(value) and type(result) is float


@pytest.mark.parametrize(
    ("value", "error"),
    [(True, TypeError), ("1", TypeError), (None, TypeError), (math.nan, ValueError),
     (math.inf, ValueError), (-math.inf, ValueError), (np.float32("nan"), ValueError),
     (10**400, ValueError), (0.0, ValueError), (-1, ValueError)],
)
def test_reals_refuse_bools_strings_non_finite_and_overflow(value, error) -> None:
    with pytest.raises(error, match=r"^x: expected a finite number > 0, got"):
        checks.positive(value, "x")


def test_reals_may_admit_infinity_but_never_nan() -> None:
    assert checks.real(math.inf, "p", above=0.0, finite=False) == math.inf
    with pytest.raises(ValueError, match="p: expected a number"):
        checks.real(math.nan, "p", above=0.0, finite=False)


def test_interval_bounds_are_described() -> None:
    with pytest.raises(ValueError, match=r"q: expected a finite number in \[0, 1\), got 1"):
        checks.real(1, "q", minimum=0.0, below=1.0)


@pytest.mark.parametrize("value", ["False", "True", 0, 1, None, "no"])
def test_flags_refuse_anything_but_booleans(value) -> None:
    with pytest.raises(TypeError, match="f: expected True or False, got"):
        checks.flag(value, "f")
    assert checks.flag(np.False_, "f") is False and checks.flag(True, "f") is True


def test_verbosity_takes_keras_levels_and_booleans_only() -> None:
    assert [checks.verbosity(v, "verbose") for v in (0, 1, 2, np.int64(2), False, True, np.True_)] == [
        0, 1, 2, 2, 0, 1, 1]
    assert type(checks.verbosity(np.int64(1), "verbose")) is int
    for value in ("1", "True", 1.0, None):
        with pytest.raises(TypeError, match="verbose: expected True, False, 0, 1 or 2, got"):
            checks.verbosity(value, "verbose")
    for value in (-1, 3):
        with pytest.raises(ValueError, match="verbose: expected True, False, 0, 1 or 2, got"):
            checks.verbosity(value, "verbose")


def test_choices_compare_types_too() -> None:
    assert checks.choice("min", "mode", ("min", "max")) == "min"
    assert checks.choice(np.str_("max"), "mode", ("min", "max")) == "max"
    with pytest.raises(ValueError, match="mode: expected one of 1, 2, got True"):
        checks.choice(True, "mode", (1, 2))


# --- the checker applied across the library (each of these was accepted or crashed unclearly) ---
def network() -> bpcore.Network:
    return bpcore.Network([Dense(2, 2), Sigmoid()], seed=0)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda p: SGD(p, lr=0.1, momentum=0.9, nesterov="False"), TypeError, "nesterov: expected True or"),
        (lambda p: Adam(p, amsgrad="yes"), TypeError, "amsgrad: expected True or False"),
        (lambda p: RMSProp(p, centered="False"), TypeError, "centered: expected True or False"),
        (lambda p: SGD(p, lr=10**400), ValueError, "lr: expected a finite number >= 0"),
        (lambda p: Adam(p, betas=(0.9, 10**400)), ValueError, r"betas\[1\]: expected a finite number"),
        (lambda p: SGD(p, lr=0.1, dampening=math.nan), ValueError, "dampening: expected a finite number"),
        (lambda p: StepLR(SGD(p, lr=0.1), step_size=10**400), ValueError, "step_size: expected a positive"),
        (lambda p: clip_grad_norm(p, 10**400), ValueError, "max_norm: expected a finite number"),
    ],
)
def test_optimiser_arguments(make, error, message) -> None:
    with pytest.raises(error, match=message):
        make(network().parameters())


def test_numpy_scalars_work_where_python_numbers_do() -> None:
    params = network().parameters()
    opt = SGD(params, lr=np.float32(0.5), momentum=np.float64(0.9), nesterov=np.True_)
    assert opt.lr == 0.5 and opt.nesterov is True
    assert StepLR(opt, step_size=np.int64(2)).step_size == 2
    assert Dropout(np.float32(0.25)).p == 0.25


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: Dense(2, 2, bias="False"), TypeError, r"Dense\(bias\): expected True or False"),
        (lambda: EarlyStopping(restore_best_weights=0), TypeError, r"EarlyStopping\(restore_best_weights\)"),
        (lambda: ModelCheckpoint(".", save_best="False"), TypeError, r"ModelCheckpoint\(save_best\)"),
        (lambda: Huber(10**400), ValueError, r"Huber\(delta\): expected a finite number > 0"),
        (lambda: EarlyStopping(min_delta=math.inf), ValueError, r"EarlyStopping\(min_delta\)"),
        (lambda: bpcore.Network([Dense(2, 2)], seed=10**400), ValueError, "seed: expected None or"),
    ],
)
def test_layer_loss_and_callback_arguments(make, error, message) -> None:
    with pytest.raises(error, match=message):
        make()


# --- input values -------------------------------------------------------------------------------
def test_input_finiteness_is_checked_after_the_cast_to_the_network_dtype() -> None:
    net = network()
    with pytest.raises(ValueError, match="x: contains NaN or Inf values after conversion to float32"):
        net.forward(np.array([[1e39, 0.0]]))
    with pytest.raises(ValueError, match="x: contains NaN or Inf"):
        net.predict(np.array([[0.0, -1e39]]))
    x, y = np.array([[1e39, 0.0], [0.0, 1.0]]), np.array([[1.0, 0.0], [0.0, 1.0]])
    before = net.store.data.copy()
    with pytest.raises(ValueError, match="x: contains NaN or Inf"):
        net.fit(x, y, loss="mse", optimizer=SGD(net.parameters(), lr=0.1), epochs=1)
    assert np.array_equal(net.store.data, before)
    assert np.isfinite(bpcore.Network([Dense(2, 1)], dtype="float64").forward(x)).all()


def test_binary_cross_entropy_refuses_probabilities_outside_0_1() -> None:
    loss = BinaryCrossEntropy()
    target = np.array([[1.0], [0.0]])
    for bad in ([[1.5], [0.5]], [[-0.1], [0.5]], [[math.nan], [0.5]]):
        with pytest.raises(ValueError, match=r"BinaryCrossEntropy\(pred\): expected probabilities in \[0, 1"):
            loss(np.array(bad), target)
    assert math.isfinite(float(loss(np.array([[1.0], [0.0]]), target)))
    assert math.isfinite(float(BinaryCrossEntropy(from_logits=True)(np.array([[5.0], [-3.0]]), target)))


@pytest.mark.parametrize(
    ("grad", "error", "message"),
    [
        (np.array([[math.nan, 0.0]] * 3), ValueError, "grad_out: contains NaN or Inf"),
        (np.array([[1e39, 0.0]] * 3), ValueError, "grad_out: contains NaN or Inf values after conversion"),
        (np.array([[object(), 0.0]] * 3, dtype=object), TypeError, "grad_out: expected a numeric"),
        (np.array([["1", "0"]] * 3), TypeError, "grad_out: expected a numeric"),
        (np.ones((3, 3)), ValueError, "grad_out: expected the shape of the last forward"),
    ],
)
def test_backward_refuses_bad_gradients_and_changes_nothing(grad, error, message) -> None:
    net = network()
    net.forward(np.ones((3, 2), np.float32), training=True)
    before = net.store.grad.copy()
    with pytest.raises(error, match=message):
        net.backward(grad)
    assert np.array_equal(net.store.grad, before)


def test_resume_from_errors_name_resume_from(tmp_path) -> None:
    net = network()
    x, y = np.ones((4, 2), np.float32), np.ones((4, 2), np.float32)
    garbage = tmp_path / "garbage.bpcore"
    garbage.write_bytes(b"not a zip")

    def fit(resume_from):
        net.fit(x, y, loss="mse", optimizer=SGD(net.parameters(), lr=0.1), epochs=2, resume_from=resume_from)

    with pytest.raises(FileNotFoundError, match="resume_from: cannot read the checkpoint"):
        fit(tmp_path / "missing.bpcore")
    with pytest.raises(IsADirectoryError, match="resume_from:"):
        fit(tmp_path)
    with pytest.raises(bpcore.ModelFileError, match=r"garbage\.bpcore: resume_from: not a bpcore model file"):
        fit(garbage)
    with pytest.raises(TypeError, match="resume_from: expected the path of a checkpoint file, got int"):
        fit(5)


def test_the_training_flag_refuses_strings() -> None:
    net = bpcore.Network([Dense(2, 2), Dropout(0.5)], seed=0)
    with pytest.raises(TypeError, match="training: expected True or False, got 'False'"):
        net.forward(np.ones((4, 2), np.float32), training="False")  # would have drawn dropout masks
    with pytest.raises(TypeError, match=r"gradcheck\(training\): expected True or False"):
        bpcore.gradcheck(Dense(2, 2), np.ones((3, 2)), training="no")


def test_fit_with_probabilities_outside_0_1_says_what_binary_cross_entropy_expects() -> None:
    net = bpcore.Network([Dense(2, 1)], dtype="float64", seed=0)  # no Sigmoid: outputs are not probabilities
    x = np.array([[1.0, 2.0], [-3.0, 1.0], [2.0, -2.0], [0.5, 0.5]])
    with pytest.raises(bpcore.TrainingDivergedError, match=r"end the network with Sigmoid\(\)"):
        net.fit(x, np.array([1.0, 0.0, 1.0, 0.0]), loss=BinaryCrossEntropy(),
                optimizer=SGD(net.parameters(), lr=0.1), epochs=1)
