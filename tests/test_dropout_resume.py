"""Dropout masks on resume: each epoch's generator is derived from the run's recorded entropy, on any device.

CuPy's generators cannot export or take a state, so a resumed GPU run could
not continue the interrupted run's generator.  ``fit`` therefore seeds every
epoch's dropout generator from ``(entropy, epoch)``, the entropy drawn once
per run and recorded in the checkpoint.  Checked here on the CPU, and with
generators that behave as CuPy's do (tests/cupy_doubles.py): no state to
read, device arrays from ``integers``.
"""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cupy_doubles import CupyLikeArray, CupyLikeGenerator

import bpcore
from bpcore.backends import KERNEL_MODES, get_backend
from bpcore.checkpoint import ModelCheckpoint, latest_checkpoint
from bpcore.layers import Dense, Dropout, ReLU
from bpcore.training import dropout_streams

rng = np.random.default_rng(5)
X = rng.normal(size=(64, 5))
Y = rng.integers(0, 3, size=64)


def make(device: str = "cpu") -> tuple[bpcore.Network, Any]:
    network = bpcore.Network([Dense(5, 16), ReLU(), Dropout(0.5), Dense(16, 3)], dtype="float64", seed=3,
                             device=device)
    return network, bpcore.optim.Adam(network.parameters(), lr=0.01)


def train(network: bpcore.Network, optimizer: Any, epochs: int, **options: Any) -> Any:
    return network.fit(X, Y, loss="cross_entropy", optimizer=optimizer, epochs=epochs, batch_size=16, seed=11,
                       **options)


def interrupted_and_resumed(folder: Path, device: str = "cpu") -> tuple[bpcore.Network, Any]:
    first, opt = make(device)
    train(first, opt, 2, callbacks=[ModelCheckpoint(folder, every=1, monitor="loss")])  # "crash" after 2
    resumed, opt = make(device)
    return resumed, train(resumed, opt, 5, resume_from=latest_checkpoint(folder))


@pytest.fixture
def cupy_like_generators(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every generator the CPU backends make behaves as CuPy's; returns the seeds they were made with.

    All kernel modes: in ``auto`` mode a small fit computes with the generic backend.
    """
    seeds: list[int] = []

    def random(seed: int | None = None) -> CupyLikeGenerator:
        assert seed is None or type(seed) is int  # what cupy.random.default_rng passes to SeedSequence
        seeds.append(seed)  # type: ignore[arg-type]
        return CupyLikeGenerator(seed)

    def to_numpy(array: Any) -> np.ndarray:
        return array.get() if isinstance(array, CupyLikeArray) else np.asarray(array)

    for mode in KERNEL_MODES:
        backend = get_backend("cpu", kernels=mode)
        monkeypatch.setattr(backend, "random", random)
        monkeypatch.setattr(backend, "to_numpy", to_numpy)
    return seeds


def test_a_resumed_cpu_run_is_bit_identical_with_dropout(tmp_path: Path) -> None:
    network, opt = make()
    full = train(network, opt, 5)
    resumed, history = interrupted_and_resumed(tmp_path)
    assert np.array_equal(resumed.store.data, network.store.data)
    assert history.history == full.history
    saved = bpcore.load_checkpoint(latest_checkpoint(tmp_path)).training
    assert type(saved["dropout_entropy"]) is int and 0 <= saved["dropout_entropy"] < 2**63 - 1


def test_a_resumed_run_with_cupys_generator_semantics_is_bit_identical(
        tmp_path: Path, cupy_like_generators: list[int]) -> None:
    network, opt = make()
    assert isinstance(network._random, CupyLikeGenerator)
    full = train(network, opt, 5)
    resumed, history = interrupted_and_resumed(tmp_path)
    assert np.array_equal(resumed.store.data, network.store.data)
    assert history.history == full.history
    saved = bpcore.load_checkpoint(latest_checkpoint(tmp_path)).training
    assert saved["dropout_rng"] is None  # nothing of the generator itself could be saved...
    assert type(saved["dropout_entropy"]) is int  # ...the entropy it is re-derived from was
    # the uninterrupted run: its network's generator, then one per epoch, each from a different seed
    assert len(set(cupy_like_generators[:6])) == 6


def test_each_epoch_draws_other_masks_and_the_layers_get_the_networks_generator_back() -> None:
    network, opt = make()
    masks: list[np.ndarray] = []
    dropout = next(layer for layer in network.walk() if isinstance(layer, Dropout))
    train(network, opt, 3, callbacks=[lambda epoch, logs: masks.append(dropout._mask.copy())])
    assert not np.array_equal(masks[0], masks[1]) and not np.array_equal(masks[1], masks[2])
    assert dropout._random is network._random


def test_the_epoch_generator_depends_on_entropy_and_epoch_only() -> None:
    backend = get_backend("cpu")

    def draw(entropy: int, epoch: int) -> np.ndarray:
        return dropout_streams.epoch_generator(backend, entropy, epoch).random(8)

    assert np.array_equal(draw(5, 2), draw(5, 2))
    assert not np.array_equal(draw(5, 2), draw(5, 3)) and not np.array_equal(draw(5, 2), draw(6, 2))


def test_a_network_without_dropout_draws_no_entropy(tmp_path: Path) -> None:
    network = bpcore.Network([Dense(5, 3)], seed=0)
    before = network._random.bit_generator.state
    optimizer = bpcore.optim.SGD(network.parameters(), lr=0.1)
    train(network, optimizer, 1, callbacks=[ModelCheckpoint(tmp_path, monitor="loss")])
    assert network._random.bit_generator.state == before
    assert bpcore.load_checkpoint(latest_checkpoint(tmp_path)).training["dropout_entropy"] is None


def _rewrite_training(path: Path, change: Any) -> None:
    """Edit the ``training`` section of a checkpoint's architecture.json in place."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    document = json.loads(members["architecture.json"])
    change(document["training"])
    members["architecture.json"] = json.dumps(document).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


@pytest.mark.parametrize("bad", [-1, 2**63 - 1, 1.5, "7", True])
def test_a_damaged_entropy_is_refused_before_anything_changes(tmp_path: Path, bad: Any) -> None:
    first, opt = make()
    train(first, opt, 1, callbacks=[ModelCheckpoint(tmp_path, monitor="loss")])
    path = latest_checkpoint(tmp_path)
    _rewrite_training(path, lambda training: training.update(dropout_entropy=bad))
    network, opt = make()
    before = network.store.data.copy()
    with pytest.raises(bpcore.ModelFileError, match="dropout_entropy"):
        train(network, opt, 2, resume_from=path)
    assert np.array_equal(network.store.data, before)


def test_a_checkpoint_without_the_entropy_resumes_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first, opt = make()
    train(first, opt, 1, callbacks=[ModelCheckpoint(tmp_path, monitor="loss")])
    path = latest_checkpoint(tmp_path)
    _rewrite_training(path, lambda training: training.pop("dropout_entropy"))
    network, opt = make()
    with caplog.at_level(logging.WARNING, logger="bpcore"):
        history = train(network, opt, 2, resume_from=path)
    assert history.epochs == [1, 2]
    assert any("did not record the dropout entropy" in record.getMessage() for record in caplog.records)


@pytest.mark.gpu
def test_a_resumed_gpu_run_draws_the_uninterrupted_runs_masks(tmp_path: Path) -> None:
    network, opt = make("cuda")
    full = train(network, opt, 5)
    resumed, history = interrupted_and_resumed(tmp_path, "cuda")
    np.testing.assert_array_equal(resumed.backend.to_numpy(resumed.store.data),
                                  network.backend.to_numpy(network.store.data))
    assert history.history == full.history
