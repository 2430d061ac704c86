"""One network shared by threads (a step is the unit of exclusivity), and memory released on time."""

from __future__ import annotations

import gc
import threading
import weakref

import numpy as np
import pytest

import bpcore
from bpcore.layers import BatchNorm, Dense, Dropout, ReLU, Residual
from bpcore.losses import MSE
from bpcore.serialization import load_checkpoint
from bpcore.training.snapshot import Snapshot


def in_thread(function) -> None:
    errors: list[BaseException] = []

    def target():
        try:
            function()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(60)
    if errors:
        raise errors[0]


def test_a_forward_from_another_thread_between_forward_and_backward_is_refused():
    network = bpcore.Network([Dense(3, 4), ReLU(), Dense(4, 2)], dtype="float64", seed=0)
    x = np.ones((5, 3))
    network.forward(x, training=True)
    in_thread(lambda: network.forward(-x, training=True))  # replaces this thread's activations
    before = network.store.grad.copy()
    with pytest.raises(RuntimeError, match=r"another thread ran this network .*with network\.step"):
        network.backward(np.ones((5, 2)))
    assert np.array_equal(network.store.grad, before)
    in_thread(lambda: network.predict(x))
    with pytest.raises(RuntimeError, match="another thread"):
        network.backward(np.ones((5, 2)))
    network.forward(x, training=True)  # this thread again: fine
    network.backward(np.ones((5, 2)))


def test_steps_written_by_hand_in_several_threads_compute_their_own_gradients():
    network = bpcore.Network([Dense(8, 32), ReLU(), Dense(32, 4)], dtype="float64", seed=0)
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(16, 8)) for _ in range(4)]
    targets = [rng.normal(size=(16, 4)) for _ in range(4)]

    def gradient(index: int) -> np.ndarray:
        loss = MSE()
        with network.step():
            loss(network.forward(inputs[index], training=True), targets[index])
            network.zero_grad()
            network.backward(loss.backward())
            return network.store.grad.copy()

    expected = [gradient(index) for index in range(4)]
    wrong: list[int] = []

    def worker(index: int) -> None:
        for _ in range(150):
            if not np.array_equal(gradient(index), expected[index]):
                wrong.append(index)

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not wrong


def test_a_save_during_a_training_loop_writes_parameters_and_optimiser_state_of_one_step(tmp_path):
    def make():
        network = bpcore.Network([Dense(200, 200), Dense(200, 200)], dtype="float64", seed=0)
        optimizer = bpcore.optim.SGD(network.parameters(), lr=1e-4, momentum=0.9)
        network.store.grad[...] = 1.0  # a constant gradient: step t is reproducible by replaying t steps
        return network, optimizer

    network, optimizer = make()
    stop = threading.Event()

    def train():
        while not stop.is_set() and optimizer.step_count < 20_000:
            optimizer.step()

    thread = threading.Thread(target=train)
    thread.start()
    paths = []
    for index in range(20):
        path = tmp_path / f"save-{index}.bpcore"
        bpcore.save(network, path, optimizer=optimizer)
        paths.append(path)
    stop.set()
    thread.join(60)
    saved = sorted(
        ((ckpt.optimizer.step_count, ckpt) for ckpt in map(load_checkpoint, paths)), key=lambda item: item[0]
    )
    assert len({count for count, _ in saved}) >= 3, "the saves did not overlap the training loop"
    replay, replay_optimizer = make()
    for count, checkpoint in saved:
        while replay_optimizer.step_count < count:
            replay_optimizer.step()
        assert np.array_equal(checkpoint.network.store.data, replay.store.data), f"torn at step {count}"
        assert np.array_equal(
            checkpoint.optimizer.state_dict()["state"]["momentum_buffer"],
            replay_optimizer.state_dict()["state"]["momentum_buffer"],
        )


# --- memory ---------------------------------------------------------------------------------------
def test_a_dropped_network_frees_its_buffers_without_a_garbage_collection():
    x = np.random.default_rng(0).normal(size=(20, 16)).astype(np.float32)
    freed: list[str] = []
    enabled = gc.isenabled()
    gc.disable()
    try:
        network = bpcore.Network(
            [Dense(16, 16), BatchNorm(16), ReLU(), Dropout(0.2), Residual(Dense(16, 16), ReLU()),
             Dense(16, 3)],
            seed=0,
        )
        optimizer = bpcore.optim.Adam(network.parameters(), lr=1e-3)
        network.fit(x, np.arange(20) % 3, loss="cross_entropy", optimizer=optimizer, epochs=2, batch_size=5,
                    validation_split=0.2, early_stopping=bpcore.training.EarlyStopping(patience=1))
        weakref.finalize(network.store.data, freed.append, "parameters")
        weakref.finalize(network.store.grad, freed.append, "gradients")
        weakref.finalize(optimizer._state[0][0], freed.append, "optimiser state")
        del network, optimizer
        assert sorted(freed) == ["gradients", "optimiser state", "parameters"]
    finally:
        if enabled:
            gc.enable()


def test_an_optimiser_of_a_temporary_network_keeps_working():
    optimizer = bpcore.optim.SGD(bpcore.Network([Dense(3, 2)], seed=0).parameters(), lr=0.1)
    optimizer.parameters.params[0].grad[...] = 1.0
    optimizer.step()
    assert optimizer.step_count == 1


def test_a_snapshot_reuses_its_arrays_from_the_second_take_on():
    network = bpcore.Network([Dense(4, 4), BatchNorm(4)], seed=0)
    snapshot = Snapshot(network)
    snapshot.take()
    first = snapshot._data
    network.store.data[...] += 1.0
    snapshot.take()
    assert snapshot._data is first and np.array_equal(first, network.store.data)
    network.store.data[...] = 0.0
    snapshot.restore()
    assert np.array_equal(network.store.data, first)


def test_one_loss_object_serves_fits_in_several_threads_at_once():
    # A loss keeps its last call for backward(); shared by concurrent fits, each thread must get
    # its own call's gradient (it got whichever thread called last: wrong weights, no error).
    import copy
    import pickle

    from bpcore.losses import CrossEntropy

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(120, 5)).astype(np.float32), rng.integers(0, 3, 120)

    def train(seed: int, loss: CrossEntropy) -> np.ndarray:
        network = bpcore.Network([Dense(5, 16), ReLU(), Dense(16, 3)], seed=seed)
        network.fit(x, y, loss=loss, optimizer=bpcore.optim.SGD(network.parameters(), lr=0.1), epochs=4,
                    batch_size=8, seed=seed, verbose=0)
        return network.backend.to_numpy(network.store.data).copy()

    alone = {seed: train(seed, CrossEntropy()) for seed in range(4)}
    shared, together = CrossEntropy(), {}
    def run(seed: int) -> None:
        together[seed] = train(seed, shared)

    threads = [threading.Thread(target=run, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for seed in range(4):
        assert np.array_equal(together[seed], alone[seed]), seed
    for twin in (copy.copy(shared), copy.deepcopy(shared), pickle.loads(pickle.dumps(shared))):
        assert twin.ignore_index == shared.ignore_index and twin._saved is None  # no call state carried


def test_saves_of_one_path_from_several_threads_all_succeed(tmp_path):
    # Each save first removes the temporary files of saves that died; one made by a live save just
    # before it took its lock used to be removed too, and that save's rename failed.
    path = tmp_path / "model.bpcore"
    networks = [bpcore.Network([Dense(4, 4)], seed=seed) for seed in range(4)]
    errors: list[str] = []

    def save(network: bpcore.Network) -> None:
        for _ in range(150):
            try:
                bpcore.save(network, path)
            except OSError as exc:
                errors.append(repr(exc))

    threads = [threading.Thread(target=save, args=(network,)) for network in networks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [p.name for p in tmp_path.iterdir()] == ["model.bpcore"]  # no temporary file left
    bpcore.load(path)
