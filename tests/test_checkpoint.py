"""ModelCheckpoint and fit(resume_from=...): an interrupted, resumed run equals an uninterrupted one."""

from __future__ import annotations

import os

import numpy as np
import pytest

import bpcore
from bpcore.checkpoint import ModelCheckpoint, epoch_checkpoints, latest_checkpoint
from bpcore.layers import BatchNorm, Dense, Dropout, ReLU

rng = np.random.default_rng(0)
X = rng.normal(size=(96, 4))
Y = rng.integers(0, 3, size=96)


def make(optimizer: str = "adam", schedule: str | None = "step", dtype: str = "float64"):
    network = bpcore.Network(
        [Dense(4, 12), BatchNorm(12), ReLU(), Dropout(0.25), Dense(12, 3)], dtype=dtype, seed=0
    )
    if optimizer == "adam":
        opt = bpcore.optim.Adam(network.parameters(), lr=0.01)
    else:
        opt = bpcore.optim.SGD(network.parameters(), lr=0.05, momentum=0.9)
    scheduler = None
    if schedule == "step":
        scheduler = bpcore.optim.StepLR(opt, step_size=2, gamma=0.5)
    elif schedule == "plateau":
        scheduler = bpcore.optim.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    return network, opt, scheduler


def train(network, opt, scheduler, epochs, **options):
    return network.fit(
        X,
        Y,
        loss="cross_entropy",
        optimizer=opt,
        epochs=epochs,
        batch_size=16,
        validation_split=0.25,
        seed=7,
        scheduler=scheduler,
        **options,
    )


@pytest.mark.parametrize(
    ("optimizer", "schedule", "dtype"),
    [
        ("adam", "step", "float64"),
        ("sgd", "plateau", "float32"),
        ("sgd", None, "float64"),
    ],
)
def test_resuming_gives_the_uninterrupted_result_bit_for_bit(tmp_path, optimizer, schedule, dtype):
    network, opt, scheduler = make(optimizer, schedule, dtype)
    full = train(network, opt, scheduler, 6)

    interrupted, opt_a, scheduler_a = make(optimizer, schedule, dtype)
    train(
        interrupted, opt_a, scheduler_a, 3, callbacks=[ModelCheckpoint(tmp_path, every=1)]
    )  # "crash" after 3
    resumed, opt_b, scheduler_b = make(optimizer, schedule, dtype)
    history = train(resumed, opt_b, scheduler_b, 6, resume_from=latest_checkpoint(tmp_path))

    assert np.array_equal(resumed.store.data, network.store.data)
    for a, b in zip(network.walk(), resumed.walk(), strict=True):
        for name, value in a.buffers().items():
            assert np.array_equal(value, b.buffers()[name])
    assert history.epochs == full.epochs == [1, 2, 3, 4, 5, 6]
    assert history.history == full.history
    assert opt_b.lr == opt.lr and opt_b.step_count == opt.step_count


def test_every_n_epochs_best_and_keep_last(tmp_path):
    network, opt, scheduler = make()
    checkpoint = ModelCheckpoint(tmp_path, every=2, keep_last=2)
    history = train(network, opt, scheduler, 7, callbacks=[checkpoint])
    assert [os.path.basename(p) for p in epoch_checkpoints(tmp_path)] == [
        "epoch-0004.bpcore",
        "epoch-0006.bpcore",
    ]
    best_epoch = int(np.argmin(history["val_loss"])) + 1
    saved = bpcore.load_checkpoint(tmp_path / "best.bpcore")
    assert saved.training["epoch"] == best_epoch and checkpoint.best == min(history["val_loss"])
    assert isinstance(bpcore.load(tmp_path / "epoch-0006.bpcore"), bpcore.Network)


def test_the_best_file_holds_the_best_epochs_parameters(tmp_path):
    network, opt, scheduler = make()
    snapshots = {}

    def remember(epoch, logs):
        snapshots[epoch] = network.store.data.copy()

    history = train(network, opt, scheduler, 5, callbacks=[remember, ModelCheckpoint(tmp_path, every=None)])
    best_epoch = int(np.argmin(history["val_loss"])) + 1
    assert np.array_equal(bpcore.load(tmp_path / "best.bpcore").store.data, snapshots[best_epoch])
    assert epoch_checkpoints(tmp_path) == []


def test_monitor_on_training_loss_and_missing_monitor(tmp_path):
    network, opt, _ = make(schedule=None)
    network.fit(
        X,
        Y,
        loss="cross_entropy",
        optimizer=opt,
        epochs=2,
        batch_size=32,
        callbacks=[ModelCheckpoint(tmp_path, monitor="loss", every=None)],
    )
    assert (tmp_path / "best.bpcore").exists()
    with pytest.raises(KeyError, match="monitor 'val_loss' is not among this epoch's values"):
        network.fit(
            X, Y, loss="cross_entropy", optimizer=opt, epochs=1, callbacks=[ModelCheckpoint(tmp_path)]
        )


def test_resuming_checks_the_file_before_changing_anything(tmp_path):
    network, opt, scheduler = make()
    train(network, opt, scheduler, 1, callbacks=[ModelCheckpoint(tmp_path)])
    other = bpcore.Network([Dense(4, 3)], dtype="float64", seed=0)
    before = other.store.data.copy()
    with pytest.raises(ValueError, match="is not this network's architecture"):
        other.fit(
            X,
            Y,
            loss="cross_entropy",
            optimizer=bpcore.optim.SGD(other.parameters(), lr=0.1),
            epochs=2,
            resume_from=tmp_path / "epoch-0001.bpcore",
        )
    assert np.array_equal(other.store.data, before)
    fresh, _, _ = make()
    with pytest.raises(ValueError, match="saved settings differ"):
        fresh.fit(
            X,
            Y,
            loss="cross_entropy",
            optimizer=bpcore.optim.Adam(fresh.parameters(), lr=0.01, eps=1e-3),
            epochs=2,
            resume_from=tmp_path / "epoch-0001.bpcore",
        )
    plain = tmp_path / "plain.bpcore"
    bpcore.save(fresh, plain)
    with pytest.raises(ValueError, match="without training state"):
        fresh.fit(
            X,
            Y,
            loss="cross_entropy",
            optimizer=bpcore.optim.Adam(fresh.parameters(), lr=0.01),
            epochs=2,
            resume_from=plain,
        )
    with pytest.raises(bpcore.ModelFileError):
        (tmp_path / "junk").write_text("junk")
        fresh.fit(
            X,
            Y,
            loss="cross_entropy",
            optimizer=bpcore.optim.Adam(fresh.parameters(), lr=0.01),
            epochs=2,
            resume_from=tmp_path / "junk",
        )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"every": 0}, r"ModelCheckpoint\(every\): expected None or a positive integer, got 0"),
        ({"keep_last": -1}, r"ModelCheckpoint\(keep_last\)"),
        ({"mode": "up"}, r"ModelCheckpoint\(mode\)"),
    ],
)
def test_bad_arguments(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        ModelCheckpoint(tmp_path, **arguments)


def test_latest_checkpoint_of_a_missing_directory_is_none(tmp_path):
    assert latest_checkpoint(tmp_path / "nothing") is None


def test_outside_fit_the_callback_says_how_to_use_it(tmp_path):
    with pytest.raises(RuntimeError, match="pass it to fit"):
        ModelCheckpoint(tmp_path).on_epoch_end(1, {"val_loss": 1.0})


@pytest.mark.parametrize("resume_after", [4, 13, 14, 15])
def test_resuming_with_early_stopping_gives_the_uninterrupted_result(tmp_path, resume_after):
    # lr 0.8: the validation loss is best at epoch 12 and training stops after epoch 15
    from bpcore.training import EarlyStopping

    def run(directory, epochs, **options):
        network, opt, _ = make("sgd", None, "float64")
        opt.lr = 0.8
        history = train(network, opt, None, epochs, early_stopping=EarlyStopping(patience=3), **options)
        return network, opt, history

    network, opt, full = run(tmp_path / "full", 30, callbacks=[ModelCheckpoint(tmp_path / "full", every=1)])
    assert full.epochs[-1] == 15 and full.best_epoch == 12
    resumed, opt_b, history = run(
        tmp_path / "b", 30, resume_from=tmp_path / "full" / f"epoch-{resume_after:04d}.bpcore"
    )
    assert np.array_equal(resumed.store.data, network.store.data)  # the best epoch's weights, restored
    assert history.epochs == full.epochs and history.history == full.history
    assert history.best_epoch == full.best_epoch and opt_b.step_count == opt.step_count
    assert history.stopped_early and history.stop_reason == full.stop_reason
