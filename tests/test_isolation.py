"""Reproducibility and isolation: same seed, same bits; threads do not disturb each other; no printing."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

import bpcore
from bpcore.layers import BatchNorm, Dense, Dropout, ReLU

gpu = pytest.mark.gpu  # skipped by conftest.py where no GPU is usable

rng = np.random.default_rng(0)
X = rng.normal(size=(80, 5))
Y = rng.integers(0, 3, size=80)


def run(seed: int = 1, device: str = "cpu", **options) -> tuple[np.ndarray, dict]:
    network = bpcore.Network(
        [Dense(5, 16), BatchNorm(16), ReLU(), Dropout(0.3), Dense(16, 3)],
        dtype="float64",
        seed=seed,
        device=device,
    )
    optimizer = bpcore.optim.Adam(network.parameters(), lr=0.01)
    history = network.fit(
        X,
        Y,
        loss="cross_entropy",
        optimizer=optimizer,
        epochs=4,
        batch_size=16,
        seed=seed,
        validation_split=0.2,
        **options,
    )
    return network.backend.to_numpy(network.store.data).copy(), history.history


def test_the_same_seed_gives_bit_identical_training():
    (first, first_history), (second, second_history) = run(), run()
    assert np.array_equal(first, second) and first_history == second_history
    third, _ = run(seed=2)
    assert not np.array_equal(first, third)


def test_global_numpy_random_state_is_neither_used_nor_changed():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    first, _ = run()
    assert np.array_equal(np.random.get_state()[1], before)
    np.random.seed(999)  # a different global state changes nothing either
    assert np.array_equal(run()[0], first)


def test_two_networks_in_two_threads_do_not_disturb_each_other():
    expected = {seed: run(seed) for seed in (1, 2)}
    results: dict[int, tuple] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def work(seed: int) -> None:
        try:
            barrier.wait()
            for _ in range(3):
                results[seed] = run(seed)
                assert np.array_equal(results[seed][0], expected[seed][0])
        except BaseException as exc:  # reported to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for seed in (1, 2):
        assert results[seed][1] == expected[seed][1]


def test_one_network_shared_by_threads_predicts_consistently():
    network = bpcore.Network([Dense(5, 8), ReLU(), Dense(8, 2)], dtype="float64", seed=0)
    inputs = [rng.normal(size=(n, 5)) for n in (3, 17, 64, 5)]
    expected = [network.predict(x) for x in inputs]
    failures: list[int] = []

    def work(index: int) -> None:
        for _ in range(50):
            if not np.array_equal(network.predict(inputs[index]), expected[index]):
                failures.append(index)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_use_device_in_one_thread_is_not_seen_in_another():
    seen: dict[str, str] = {}
    inside = threading.Event()
    done = threading.Event()

    def scoped() -> None:
        with bpcore.use_device("cpu"):
            seen["scoped"] = str(bpcore.current_device())
            inside.set()
            done.wait(10)

    thread = threading.Thread(target=scoped)
    thread.start()
    inside.wait(10)
    seen["other"] = str(bpcore.current_device())
    done.set()
    thread.join()
    assert seen == {"scoped": "cpu", "other": str(bpcore.current_device())}


def test_training_logs_under_bpcore_and_never_prints(tmp_path, capfd, caplog):
    with caplog.at_level(logging.DEBUG, logger="bpcore"):
        run(verbose=False)
        bpcore.save(bpcore.Network([Dense(2, 2)]), tmp_path / "m.bpcore")
        bpcore.load(tmp_path / "m.bpcore")
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
    assert caplog.records and {record.name for record in caplog.records} == {"bpcore"}


def test_the_bpcore_logger_has_no_output_of_its_own():
    handlers = logging.getLogger("bpcore").handlers
    assert all(isinstance(handler, logging.NullHandler) for handler in handlers)


@gpu
def test_a_gpu_network_and_a_cpu_network_in_two_threads():
    expected_cpu = run(1, "cpu")[0]
    expected_gpu = run(1, "cuda")[0]
    results: dict[str, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(device: str) -> None:
        try:
            results[device] = run(1, device)[0]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(device,)) for device in ("cpu", "cuda")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert np.array_equal(results["cpu"], expected_cpu) and np.array_equal(results["cuda"], expected_gpu)
