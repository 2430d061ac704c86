"""fit / predict / evaluate: training modes, history, early stopping, validation, reproducibility,
divergence, bad input, progress and logging."""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pytest

import bpcore
from bpcore.layers import BatchNorm, Dense, Dropout, ReLU, Sigmoid, Tanh
from bpcore.losses import MSE, BinaryCrossEntropy, CrossEntropy
from bpcore.optim import SGD, Adam
from bpcore.training import Callback, EarlyStopping, History, TrainingDivergedError, evaluate, fit, predict


def regression_data(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = (np.tanh(x @ np.array([[1.0], [-2.0], [0.5]])) + 0.05 * rng.normal(size=(n, 1))).astype(np.float32)
    return x, y


def classification_data(n: int = 150, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    centres = np.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    x = (centres[labels] + 0.6 * rng.normal(size=(n, 2))).astype(np.float32)
    return x, labels


def regressor(seed: int = 0, dtype: str = "float32") -> bpcore.Network:
    return bpcore.Network([Dense(3, 8), Tanh(), Dense(8, 1)], seed=seed, dtype=dtype)


def classifier(seed: int = 0) -> bpcore.Network:
    return bpcore.Network([Dense(2, 8), ReLU(), Dense(8, 3)], seed=seed)


def params(network: bpcore.Network) -> np.ndarray:
    return network.backend.to_numpy(network.store.data).copy()


# --- training modes -----------------------------------------------------------
@pytest.mark.parametrize(("batch_size", "lr"), [(None, 0.2), (500, 0.2), (16, 0.05), (1, 0.01)])
def test_every_mode_reduces_the_loss(batch_size: int | None, lr: float) -> None:
    x, y = regression_data()
    network = regressor()
    history = network.fit(x, y, loss=MSE(), optimizer=SGD(network.parameters(), lr=lr), epochs=15,
                          batch_size=batch_size, seed=0)
    assert len(history.loss) == 15
    assert history.loss[-1] < 0.5 * history.loss[0]
    assert network.evaluate(x, y, loss=MSE())["loss"] < 0.5 * history.loss[0]


def test_fit_matches_a_hand_written_loop_with_the_documented_batch_order() -> None:
    """fit == forward, loss, backward, step over batches in the order drawn from default_rng(seed)."""
    x, y = regression_data(n=50)
    seed, batch_size, epochs = 7, 16, 3
    trained = regressor(dtype="float64")
    fit(trained, x, y, loss=MSE(), optimizer=SGD(trained.parameters(), lr=0.1, momentum=0.9),
        epochs=epochs, batch_size=batch_size, seed=seed)

    manual = regressor(dtype="float64")
    optimizer, loss = SGD(manual.parameters(), lr=0.1, momentum=0.9), MSE()
    rng, order = np.random.default_rng(seed), np.arange(len(x))
    for _ in range(epochs):
        rng.shuffle(order)
        for start in range(0, len(x), batch_size):
            index = order[start : start + batch_size]
            manual.zero_grad()
            out = manual.forward(x[index], training=True)
            loss(out, y[index])
            manual.backward(loss.backward())
            optimizer.step()
    np.testing.assert_allclose(params(trained), params(manual), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_epoch_loss_is_the_loss_over_all_samples(reduction: str) -> None:
    """With lr=0 the weights stay put, so each epoch's loss must equal evaluate()'s (last batch smaller)."""
    x, y = regression_data(n=50)
    network = regressor()
    loss = MSE(reduction=reduction)
    history = network.fit(x, y, loss=loss, optimizer=SGD(network.parameters(), lr=0.0), epochs=2,
                          batch_size=16, metrics=["mse", "mae"])
    pred = network.predict(x)
    expected = float(((pred - y) ** 2).astype(np.float64).mean())
    scale = y.size if reduction == "sum" else 1
    assert history.loss == pytest.approx([expected * scale] * 2, rel=1e-5)
    assert history["mse"] == pytest.approx([expected] * 2, rel=1e-5)
    assert history["mae"][0] == pytest.approx(float(np.abs(pred - y).astype(np.float64).mean()), rel=1e-5)
    assert network.evaluate(x, y, loss=loss)["loss"] == pytest.approx(expected * scale, rel=1e-5)


def test_accuracy_for_class_indices_one_hot_and_single_column() -> None:
    x, labels = classification_data()
    network = classifier()
    history = network.fit(x, labels, loss=CrossEntropy(), optimizer=SGD(network.parameters(), lr=0.0),
                          epochs=1, batch_size=32, metrics=["accuracy"])
    expected = float(np.mean(network.predict(x).argmax(axis=1) == labels))
    assert history["accuracy"] == [pytest.approx(expected)]
    one_hot = np.eye(3, dtype=np.float32)[labels]
    assert network.evaluate(x, one_hot, loss=CrossEntropy(), metrics=["accuracy"])["accuracy"] == (
        pytest.approx(expected))

    binary = (labels == 0).astype(np.float32)
    probabilities = bpcore.Network([Dense(2, 1), Sigmoid()], seed=1)
    out = probabilities.predict(x)[:, 0]
    got = probabilities.evaluate(x, binary, loss=BinaryCrossEntropy(), metrics=["accuracy"])["accuracy"]
    assert got == pytest.approx(float(np.mean((out > 0.5) == (binary > 0.5))))
    logits = bpcore.Network([Dense(2, 1)], seed=1)
    z = logits.predict(x)[:, 0]
    got = logits.evaluate(x, binary, loss=BinaryCrossEntropy(from_logits=True), metrics=["accuracy"])
    assert got["accuracy"] == pytest.approx(float(np.mean((z > 0) == (binary > 0.5))))


def test_classifier_learns() -> None:
    x, labels = classification_data()
    network = classifier()
    history = network.fit(x, labels, loss="cross_entropy", optimizer=Adam(network.parameters(), lr=0.02),
                          epochs=30, batch_size=32, metrics=["accuracy"], seed=0)
    assert history["accuracy"][-1] > 0.9
    assert network.evaluate(x, labels, loss=CrossEntropy(), metrics=["accuracy"])["accuracy"] > 0.9


# --- history ------------------------------------------------------------------
def test_history_contents_and_json() -> None:
    x, labels = classification_data()
    network = classifier()
    optimizer = SGD(network.parameters(), lr=0.1)
    history = network.fit(x, labels, loss=CrossEntropy(), optimizer=optimizer, epochs=4, batch_size=32,
                          metrics=["accuracy"], validation_split=0.2, seed=0)
    assert isinstance(history, History) and len(history) == 4 and history.epochs == [1, 2, 3, 4]
    assert set(history.keys()) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert all(len(values) == 4 for values in history.history.values())
    assert history["lr"] == [0.1] * 4
    assert history.monitor == "val_loss"
    assert history.best_epoch == 1 + int(np.argmin(history.val_loss))
    assert history.best == min(history.val_loss)
    assert all(isinstance(v, float) for values in history.history.values() for v in values)
    decoded = json.loads(history.to_json())
    assert decoded["history"]["val_accuracy"] == history["val_accuracy"]
    assert decoded["best_epoch"] == history.best_epoch and decoded["stopped_early"] is False
    with pytest.raises(KeyError, match="records"):
        history["val_mse"]


def test_best_epoch_of_an_accuracy_monitor_is_the_maximum() -> None:
    history = History(monitor="val_accuracy")
    for epoch, value in enumerate([0.5, 0.9, 0.7], start=1):
        history.append(epoch, {"val_accuracy": value})
    assert history.best_epoch == 2
    assert History().best_epoch is None


# --- validation data ------------------------------------------------------------
def test_validation_split_holds_out_the_last_samples() -> None:
    x, y = regression_data(n=100)
    network = regressor()
    history = network.fit(x, y, loss=MSE(), optimizer=SGD(network.parameters(), lr=0.1), epochs=3,
                          batch_size=10, validation_split=0.2, seed=0)
    held_out = network.evaluate(x[80:], y[80:], loss=MSE())["loss"]
    assert history.val_loss[-1] == pytest.approx(held_out, rel=1e-6)

    # the first 80 samples alone give the same training as the split
    alone = regressor()
    fit(alone, x[:80], y[:80], loss=MSE(), optimizer=SGD(alone.parameters(), lr=0.1), epochs=3,
        batch_size=10, seed=0)
    assert np.array_equal(params(alone), params(network))


def test_validation_data_is_measured_in_evaluation_mode() -> None:
    x, y = regression_data(n=80)
    x_val, y_val = regression_data(n=30, seed=1)
    network = bpcore.Network([Dense(3, 16), Tanh(), Dropout(0.5), Dense(16, 1)], seed=0)
    history = network.fit(x, y, loss=MSE(), optimizer=Adam(network.parameters(), lr=0.01), epochs=3,
                          batch_size=16, validation_data=(x_val, y_val), metrics=["mae"], seed=0)
    assert history.val_loss[-1] == pytest.approx(network.evaluate(x_val, y_val, loss=MSE())["loss"], rel=1e-6)
    assert "val_mae" in history


# --- early stopping ----------------------------------------------------------------
class Recorder(Callback):
    """Keeps a copy of the parameters after every epoch."""

    def __init__(self) -> None:
        self.after: dict[int, np.ndarray] = {}
        self.begun = self.ended = 0

    def on_train_begin(self, network: bpcore.Network) -> None:
        self.network = network
        self.begun += 1

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self.after[epoch] = params(self.network)

    def on_train_end(self, history: History) -> None:
        self.ended += 1


def test_early_stopping_patience_and_exact_restore_of_the_best_weights() -> None:
    x, y = regression_data()
    network = regressor()
    recorder = Recorder()
    # an impossible min_delta: only the first epoch counts as an improvement
    stopper = EarlyStopping(monitor="loss", patience=2, min_delta=1e9)
    history = network.fit(x, y, loss=MSE(), optimizer=SGD(network.parameters(), lr=0.1), epochs=20,
                          batch_size=16, early_stopping=stopper, callbacks=[recorder], seed=0)
    assert len(history) == 3 and history.stopped_early and "EarlyStopping" in history.stop_reason
    assert stopper.best_epoch == 1 and stopper.stopped_epoch == 3
    assert recorder.begun == recorder.ended == 1
    assert not np.array_equal(recorder.after[1], recorder.after[3])
    assert np.array_equal(params(network), recorder.after[1])  # bit for bit


def test_early_stopping_restores_the_best_epoch_even_without_stopping() -> None:
    x, y = regression_data(n=60)
    x_val, y_val = regression_data(n=60, seed=5)
    y_val = -y_val  # learning the training data makes the validation loss worse
    network = regressor()
    recorder = Recorder()
    stopper = EarlyStopping(patience=100)
    history = network.fit(x, y, loss=MSE(), optimizer=SGD(network.parameters(), lr=0.5), epochs=8,
                          batch_size=4, validation_data=(x_val, y_val), early_stopping=stopper,
                          callbacks=[recorder], seed=0)
    assert not history.stopped_early and history.best_epoch < 8
    assert stopper.best_epoch == history.best_epoch
    assert np.array_equal(params(network), recorder.after[history.best_epoch])


def test_early_stopping_without_restore_keeps_the_last_weights() -> None:
    x, y = regression_data()
    network = regressor()
    recorder = Recorder()
    network.fit(x, y, loss=MSE(), optimizer=SGD(network.parameters(), lr=0.1), epochs=20, batch_size=16,
                early_stopping=EarlyStopping("loss", patience=0, min_delta=1e9, restore_best_weights=False),
                callbacks=[recorder])
    assert sorted(recorder.after) == [1, 2]
    assert np.array_equal(params(network), recorder.after[2])


def test_early_stopping_improvement_rule() -> None:
    stopper = EarlyStopping("val_accuracy", patience=1, min_delta=0.01)
    assert stopper.mode == "max"
    stopper.best = 0.90
    assert stopper.improves(0.92) and not stopper.improves(0.905) and not stopper.improves(float("nan"))
    assert EarlyStopping("val_loss").mode == "min"


def keras_early_stopping(values: list[float], *, min_delta: float, patience: int, mode: str,
                         baseline: float | None, start_from_epoch: int) -> tuple[int | None, int]:
    """Keras 3's ``EarlyStopping.on_epoch_end`` rules (keras/src/callbacks/early_stopping.py), 0-based
    epochs: the epoch it stops after and its best epoch, both numbered from 1 as bpcore's."""
    delta = abs(min_delta) * (-1 if mode == "min" else 1)
    better = (lambda a, b: a < b) if mode == "min" else (lambda a, b: a > b)

    def improves(value: float, reference: float | None) -> bool:
        return reference is None or better(value - delta, reference)

    best, best_epoch, wait = None, 0, 0
    for epoch, value in enumerate(values):
        if epoch < start_from_epoch:
            continue
        if best is None:
            best_epoch = epoch  # the weights of the first epoch counted, if nothing improves
        wait += 1
        if improves(value, best):
            best, best_epoch = value, epoch
            if baseline is None or improves(value, baseline):
                wait = 0
            continue
        if wait >= patience and epoch > 0:
            return epoch + 1, best_epoch + 1
    return None, best_epoch + 1


def bpcore_early_stopping(values: list[float], **settings: Any) -> tuple[int | None, int | None]:
    stopper = EarlyStopping("val_loss", **settings, restore_best_weights=False)
    stopper.on_train_begin(None)
    for epoch, value in enumerate(values, start=1):
        if stopper.on_epoch_end(epoch, {"val_loss": value}):
            break
    return stopper.stopped_epoch, stopper.best_epoch


def test_early_stopping_follows_keras_rules_over_random_runs() -> None:
    rng = np.random.default_rng(8)
    for _ in range(3000):
        settings = {
            "min_delta": float(rng.choice([0.0, 0.1, -0.1, 0.25])),
            "patience": int(rng.integers(0, 4)),
            "mode": str(rng.choice(["min", "max"])),
            "baseline": None if rng.random() < 0.5 else float(rng.choice([0.2, 0.5])),
            "start_from_epoch": int(rng.integers(0, 3)),
        }
        # values on a 0.1 grid (ties with min_delta exactly, as 0.4 vs 0.3 + 0.1), and infinities
        values = list(np.round(rng.integers(0, 9, size=int(rng.integers(1, 12))) * 0.1, 1))
        if rng.random() < 0.2:
            values[int(rng.integers(len(values)))] = float(rng.choice([np.inf, -np.inf]))
        stopped, best = bpcore_early_stopping(values, **settings)
        expected_stopped, expected_best = keras_early_stopping(values, **settings)
        counted = len(values) > settings["start_from_epoch"]
        assert stopped == expected_stopped, (values, settings)
        assert best == (expected_best if counted else None), (values, settings)


def test_early_stopping_keras_cases() -> None:
    # Keras's comparison: 0.3 + 0.1 < 0.4 is false, so the second epoch does not improve.
    assert bpcore_early_stopping([0.4, 0.3], min_delta=0.1, patience=1) == (2, 1)
    # A NaN never improves (and without restore_best_weights no epoch is the best until one does).
    assert bpcore_early_stopping([float("nan"), 0.5, 0.6], patience=1) == (3, 2)
    assert bpcore_early_stopping([float("nan")], patience=0) == (None, None)
    # Never after the first epoch, whatever the patience.
    assert bpcore_early_stopping([0.5], patience=0) == (None, 1)


def test_history_best_epoch_is_early_stoppings_and_a_callbacks_stopper_is_checked_first() -> None:
    x, y = regression_data(n=60)
    network = regressor()
    stopper = EarlyStopping("loss", min_delta=0.05, patience=3)
    history = network.fit(x, y, loss=MSE(), optimizer=SGD(network.parameters(), lr=0.05), epochs=12,
                          batch_size=8, callbacks=[stopper], seed=0)  # Keras's way of passing it
    assert stopper.best_epoch is not None and history.best_epoch == stopper.best_epoch
    assert history.to_dict()["best_epoch"] == stopper.best_epoch
    plain_best = int(np.argmin(history["loss"])) + 1
    assert plain_best > stopper.best_epoch  # min_delta: the later small gains do not count
    before = params(network)
    with pytest.raises(ValueError, match="monitor 'val_loss' is not recorded"):
        network.fit(x, y, loss=MSE(), optimizer=SGD(network.parameters(), lr=0.05), epochs=2,
                    callbacks=[EarlyStopping()])
    assert np.array_equal(params(network), before)  # refused before the first epoch


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"patience": -1}, ValueError, "patience"),
        ({"patience": 1.5}, TypeError, "patience"),
        ({"min_delta": "0.1"}, TypeError, "min_delta"),
        ({"start_from_epoch": -1}, ValueError, "start_from_epoch"),
        ({"verbose": 3}, ValueError, "verbose"),
        ({"baseline": "low"}, TypeError, "baseline"),
        ({"mode": "up"}, ValueError, "mode"),
        ({"monitor": ""}, TypeError, "monitor"),
    ],
)
def test_early_stopping_bad_arguments(arguments: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        EarlyStopping(**arguments)


# --- callbacks and schedules ----------------------------------------------------------
def test_a_function_callback_sees_the_logs_and_can_stop() -> None:
    x, y = regression_data()
    network = regressor()
    seen: list[tuple[int, dict]] = []

    def stop_after_two(epoch: int, logs: dict[str, float]) -> bool:
        seen.append((epoch, logs))
        return epoch == 2

    history = network.fit(x, y, loss=MSE(), optimizer=SGD(network.parameters(), lr=0.1), epochs=9,
                          callbacks=[stop_after_two], metrics=["mae"])
    assert [epoch for epoch, _ in seen] == [1, 2] and len(history) == 2
    assert set(seen[0][1]) == {"loss", "mae", "lr"}


class CountingSchedule:
    def __init__(self, optimizer: SGD) -> None:
        self.optimizer, self.steps = optimizer, 0

    def step(self) -> None:
        self.steps += 1
        self.optimizer.lr *= 0.5


class PlateauSchedule:
    def __init__(self) -> None:
        self.values: list[float] = []

    def step(self, value: float) -> None:
        self.values.append(value)


def test_scheduler_steps_once_per_epoch() -> None:
    x, y = regression_data()
    network = regressor()
    optimizer = SGD(network.parameters(), lr=0.4)
    schedule = CountingSchedule(optimizer)
    history = network.fit(x, y, loss=MSE(), optimizer=optimizer, epochs=3, scheduler=schedule)
    assert schedule.steps == 3 and history["lr"] == [0.4, 0.2, 0.1]

    plateau = PlateauSchedule()
    history = network.fit(x, y, loss=MSE(), optimizer=optimizer, epochs=2, scheduler=plateau,
                          validation_split=0.25)
    assert plateau.values == history.val_loss


# --- reproducibility -----------------------------------------------------------------
def test_shuffled_training_is_bit_identical_with_the_same_seed() -> None:
    x, labels = classification_data()
    runs = []
    for seed in (3, 3, 4):
        network = bpcore.Network([Dense(2, 8), ReLU(), Dropout(0.3), Dense(8, 3)], seed=0)
        history = network.fit(x, labels, loss=CrossEntropy(), optimizer=Adam(network.parameters(), lr=0.01),
                              epochs=3, batch_size=8, seed=seed)
        runs.append((params(network), history.loss))
    assert np.array_equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    assert not np.array_equal(runs[0][0], runs[2][0])


def test_unshuffled_batches_follow_the_data_order() -> None:
    x, y = regression_data(n=40)
    first, second = regressor(), regressor()
    for network, seed in ((first, 1), (second, 2)):
        network.fit(x, y, loss=MSE(), optimizer=SGD(network.parameters(), lr=0.1), epochs=2, batch_size=8,
                    shuffle=False, seed=seed)
    assert np.array_equal(params(first), params(second))


# --- divergence -----------------------------------------------------------------------
def test_divergence_in_the_first_epoch_restores_the_initial_state_and_raises() -> None:
    x, y = regression_data()
    network = regressor()
    before = params(network)
    optimizer = SGD(network.parameters(), lr=1e6, momentum=0.9)
    with pytest.raises(TrainingDivergedError, match=r"epoch 1 .*learning rate") as caught:
        network.fit(x * 100, y * 1e3, loss=MSE(), optimizer=optimizer, epochs=5, batch_size=16)
    assert isinstance(caught.value, FloatingPointError)
    assert caught.value.epoch == 1 and caught.value.step is not None and caught.value.step >= 1
    assert np.array_equal(params(network), before)
    assert optimizer.step_count == 0
    assert np.all(np.isfinite(network.predict(x)))


def test_divergence_in_a_later_epoch_restores_that_epoch_start_with_optimizer_state() -> None:
    x, y = regression_data()
    network = regressor()
    optimizer = SGD(network.parameters(), lr=0.05, momentum=0.9)
    saved: dict[str, object] = {}

    def blow_up_after_two(epoch: int, logs: dict[str, float]) -> None:
        if epoch == 2:
            saved["params"], saved["optimizer"] = params(network), optimizer.state_dict()
            optimizer.lr = 1e30

    with pytest.raises(TrainingDivergedError, match="epoch 3") as caught:
        network.fit(x, y, loss=MSE(), optimizer=optimizer, epochs=6, batch_size=16,
                    callbacks=[blow_up_after_two])
    assert caught.value.epoch == 3
    assert np.array_equal(params(network), saved["params"])
    state = optimizer.state_dict()
    assert state["step"] == saved["optimizer"]["step"]
    for key, value in saved["optimizer"]["state"].items():
        assert np.array_equal(state["state"][key], value)


def test_divergence_restores_batchnorm_statistics() -> None:
    x, y = regression_data()
    network = bpcore.Network([Dense(3, 8), BatchNorm(8), Tanh(), Dense(8, 1)], seed=0)
    batchnorm = network.layers[1]
    mean, var = batchnorm.running_mean.copy(), batchnorm.running_var.copy()
    with pytest.raises(TrainingDivergedError):
        network.fit(x * 100, y * 1e3, loss=MSE(), optimizer=SGD(network.parameters(), lr=1e8), epochs=3,
                    batch_size=16)
    assert np.array_equal(batchnorm.running_mean, mean) and np.array_equal(batchnorm.running_var, var)


# --- bad input --------------------------------------------------------------------------
X, Y = regression_data(n=20)
XC, LABELS = classification_data(n=20)

BAD_FIT_CALLS = [
    ("y-length", {"y": Y[:19]}, ValueError, r"same number of samples.*\(19, 1\)"),
    ("x-empty", {"x": X[:0], "y": Y[:0]}, ValueError, "at least one sample"),
    ("x-nan", {"x": np.where(np.arange(60).reshape(20, 3) == 7, np.nan, X)}, ValueError, "NaN or Inf"),
    ("y-inf", {"y": np.where(np.arange(20).reshape(20, 1) == 3, np.inf, Y)}, ValueError, "y: contains NaN"),
    ("x-integer", {"x": X.astype(np.int64)}, TypeError, "floating-point"),
    ("x-features", {"x": X[:, :2]}, ValueError, "expected 3 features"),
    ("x-rank", {"x": X[:, 0]}, ValueError, "2-D"),
    ("y-width", {"y": np.hstack([Y, Y])}, ValueError, r"shape \(20, 1\)"),
    ("epochs-0", {"epochs": 0}, ValueError, "epochs"),
    ("epochs-float", {"epochs": 2.5}, TypeError, "epochs"),
    ("batch-0", {"batch_size": 0}, ValueError, "batch_size"),
    ("batch-bool", {"batch_size": True}, TypeError, "batch_size"),
    ("split-1", {"validation_split": 1.0}, ValueError, "validation_split"),
    ("split-too-small", {"validation_split": 0.01}, ValueError, "validation_split"),
    ("split-and-data", {"validation_split": 0.2, "validation_data": (X, Y)}, ValueError, "not both"),
    ("val-pair", {"validation_data": (X,)}, TypeError, "pair"),
    ("val-features", {"validation_data": (X[:, :2], Y)}, ValueError, r"validation_data\[0\]"),
    ("val-nan", {"validation_data": (X, Y * np.nan)}, ValueError, r"validation_data\[1\]"),
    ("loss-none", {"loss": None}, TypeError, "loss"),
    ("loss-class", {"loss": MSE}, TypeError, "MSE()"),
    ("loss-name", {"loss": "mystery"}, ValueError, "loss"),
    ("optimizer-none", {"optimizer": None}, TypeError, "optimizer"),
    ("metric-unknown", {"metrics": ["f1"]}, ValueError, r"metrics\[0\]"),
    ("shuffle", {"shuffle": "yes"}, TypeError, "shuffle"),
    ("verbose-string", {"verbose": "2"}, TypeError, "verbose"),
    ("verbose-level", {"verbose": 3}, ValueError, "verbose"),
    ("verbose-float", {"verbose": 1.0}, TypeError, "verbose"),
    ("seed", {"seed": -1}, ValueError, "seed"),
    ("callback", {"callbacks": [object()]}, TypeError, r"callbacks\[0\]"),
    ("callback-single", {"callbacks": Recorder()}, TypeError, "sequence"),
    ("early-stopping", {"early_stopping": "val_loss"}, TypeError, "early_stopping"),
    ("monitor-without-validation", {"early_stopping": EarlyStopping()}, ValueError, "validation_data"),
    ("scheduler", {"scheduler": object()}, TypeError, "scheduler"),
]


@pytest.mark.parametrize(
    ("case", "changes", "error", "match"), BAD_FIT_CALLS, ids=[c[0] for c in BAD_FIT_CALLS]
)
def test_bad_fit_input_raises_one_clear_error_and_changes_nothing(
    case: str, changes: dict, error: type, match: str
) -> None:
    network = regressor()
    optimizer = SGD(network.parameters(), lr=0.1, momentum=0.9)
    arguments = {"x": X, "y": Y, "loss": MSE(), "optimizer": optimizer, "epochs": 2, **changes}
    before = params(network)
    with pytest.raises(error, match=match):
        fit(network, **arguments)
    assert np.array_equal(params(network), before)
    assert optimizer.step_count == 0


BAD_TARGETS = [
    ("label-high", LABELS + 1, CrossEntropy(), ValueError, r"\[0, 3\).*from 1 to 3"),
    ("label-negative", LABELS - 1, CrossEntropy(), ValueError, r"labels must lie in \[0, 3\)"),
    ("label-float", LABELS.astype(np.float32), CrossEntropy(), TypeError, "astype"),
    ("probabilities-sum", np.full((20, 3), 0.5), CrossEntropy(), ValueError, "sum to 1"),
    ("binary-range", np.full((20, 3), 2.0), BinaryCrossEntropy(from_logits=True), ValueError, r"\[0, 1\]"),
    ("mse-with-labels", LABELS, "metric", ValueError, "class indices"),
]


@pytest.mark.parametrize(("case", "targets", "loss", "error", "match"), BAD_TARGETS,
                         ids=[c[0] for c in BAD_TARGETS])
def test_bad_targets_raise_and_change_nothing(
    case: str, targets: np.ndarray, loss: object, error: type, match: str
) -> None:
    network = classifier()
    optimizer = Adam(network.parameters(), lr=0.1)
    before = params(network)
    metrics = ["mse"] if loss == "metric" else []
    loss = CrossEntropy() if loss == "metric" else loss
    with pytest.raises(error, match=match):
        network.fit(XC, targets, loss=loss, optimizer=optimizer, epochs=1, metrics=metrics)
    assert np.array_equal(params(network), before) and optimizer.step_count == 0


def test_optimizer_of_another_network_is_rejected() -> None:
    network, other = regressor(), regressor(seed=1)
    with pytest.raises(ValueError, match="not this network's"):
        network.fit(X, Y, loss=MSE(), optimizer=SGD(other.parameters(), lr=0.1), epochs=1)


def test_batchnorm_batches_of_one_sample() -> None:
    network = bpcore.Network([Dense(3, 4), BatchNorm(4), Dense(4, 1)], seed=0)
    before = params(network)
    with pytest.raises(ValueError, match="BatchNorm"):
        network.fit(X, Y, loss=MSE(), optimizer=SGD(network.parameters(), lr=0.1), epochs=1, batch_size=1)
    assert np.array_equal(params(network), before)
    # 21 samples in batches of 10: the lone last sample joins the batch before
    x, y = regression_data(n=21)
    history = network.fit(x, y, loss=MSE(), optimizer=SGD(network.parameters(), lr=0.1), epochs=2,
                          batch_size=10)
    assert len(history) == 2 and np.isfinite(history.loss).all()


# --- predict and evaluate ---------------------------------------------------------------
def test_predict_batches_and_is_in_evaluation_mode() -> None:
    x, _ = regression_data(n=103)
    network = bpcore.Network([Dense(3, 8), Dropout(0.5), Dense(8, 2)], seed=0)
    whole = network.predict(x)
    assert isinstance(whole, np.ndarray) and whole.shape == (103, 2) and whole.dtype == np.float32
    assert np.array_equal(predict(network, x, batch_size=10), whole)
    assert np.array_equal(network.predict(x[:5].astype(np.float64)), whole[:5])
    whole[:] = 0  # the result belongs to the caller
    assert not np.array_equal(network.predict(x), whole)
    with pytest.raises(ValueError, match="batch_size"):
        network.predict(x, batch_size=0)
    with pytest.raises(ValueError, match="NaN"):
        network.predict(x * np.nan)


def test_evaluate_returns_floats_and_checks_its_input() -> None:
    x, labels = classification_data()
    network = classifier()
    result = evaluate(network, x, labels, loss=CrossEntropy(), metrics=["accuracy"], batch_size=7)
    assert set(result) == {"loss", "accuracy"} and all(isinstance(v, float) for v in result.values())
    loss = CrossEntropy()
    assert result["loss"] == pytest.approx(float(loss(network.predict(x), labels)), rel=1e-6)
    with pytest.raises(ValueError, match="same number of samples"):
        network.evaluate(x, labels[:-1], loss=CrossEntropy())
    with pytest.raises(ValueError, match="metrics"):
        network.evaluate(x, labels, loss=CrossEntropy(), metrics=["accuracy", "accuracy"])


# --- progress and logging ---------------------------------------------------------------
def test_silent_when_not_in_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    x, y = regression_data()
    network = regressor()
    network.fit(x, y, loss=MSE(), optimizer=SGD(network.parameters(), lr=0.1), epochs=3, validation_split=0.2)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_verbose_true_draws_a_progress_bar_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    x, y = regression_data()
    network = regressor()
    network.fit(x, y, loss=MSE(), optimizer=SGD(network.parameters(), lr=0.1), epochs=3, verbose=True)
    captured = capsys.readouterr()
    assert captured.out == "" and "(epoch 3 of 3)" in captured.err


@pytest.mark.parametrize("verbose", [0, False])
def test_verbose_zero_or_false_is_silent(verbose: object, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    x, y = regression_data()
    network = regressor()
    network.fit(x, y, loss=MSE(), optimizer=SGD(network.parameters(), lr=0.1), epochs=3, verbose=verbose)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_verbose_one_draws_the_bar_like_true(capsys: pytest.CaptureFixture[str]) -> None:
    x, y = regression_data()
    network = regressor()
    network.fit(x, y, loss=MSE(), optimizer=SGD(network.parameters(), lr=0.1), epochs=3, verbose=1)
    captured = capsys.readouterr()
    assert captured.out == "" and "(epoch 3 of 3)" in captured.err and "epoch 1/3" not in captured.err


def test_verbose_two_writes_one_line_per_epoch_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    x, y = regression_data()
    network = regressor()
    network.fit(x, y, loss=MSE(), optimizer=SGD(network.parameters(), lr=0.1), epochs=3, verbose=2,
                validation_split=0.2)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert captured.out == ""
    assert len(lines) == 3
    for epoch, line in enumerate(lines, start=1):
        assert line.startswith(f"epoch {epoch}/3 - ") and "loss=" in line and "val_loss=" in line
    assert "\r" not in captured.err  # no bar


def test_epochs_are_logged_under_bpcore(caplog: pytest.LogCaptureFixture) -> None:
    x, y = regression_data()
    network = regressor()
    with caplog.at_level(logging.DEBUG, logger="bpcore"):
        network.fit(x, y, loss=MSE(), optimizer=SGD(network.parameters(), lr=0.1), epochs=2, verbose=False)
    records = [r for r in caplog.records if r.name == "bpcore"]
    assert any(r.levelno == logging.DEBUG and "epoch 2/2" in r.getMessage() and "loss=" in r.getMessage()
               for r in records)
    assert any(r.levelno == logging.INFO and r.getMessage().startswith("fit:") for r in records)
    assert all(r.levelno < logging.WARNING for r in records)


# --- devices ----------------------------------------------------------------------------
@pytest.mark.gpu
def test_gpu_training_matches_the_cpu_for_host_and_device_data() -> None:
    import cupy

    x, labels = classification_data()
    results = []
    for device, data in (("cpu", x), ("cuda", x), ("cuda", cupy.asarray(x))):
        network = bpcore.Network([Dense(2, 8), ReLU(), Dense(8, 3)], seed=0, dtype="float64", device=device)
        optimizer = Adam(network.parameters(), lr=0.01)
        history = network.fit(data, labels, loss=CrossEntropy(), optimizer=optimizer, epochs=3,
                              batch_size=16, seed=0, metrics=["accuracy"], validation_split=0.2)
        out = network.predict(data)
        assert isinstance(out, np.ndarray) == (device == "cpu")
        results.append((network.backend.to_numpy(network.store.data), history.loss, history["val_accuracy"]))
    for other in results[1:]:
        np.testing.assert_allclose(other[0], results[0][0], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(other[1], results[0][1], rtol=1e-9)
        assert other[2] == results[0][2]
