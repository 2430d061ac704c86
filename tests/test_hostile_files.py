"""Hostile model files: each gives ModelFileError naming the file, quickly and without allocating much."""

from __future__ import annotations

import io
import json
import os
import struct
import threading
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

import bpcore
from bpcore.checkpoint import ModelCheckpoint
from bpcore.layers import BatchNorm, Dense, ReLU
from bpcore.serialization import ModelFileError, load, load_checkpoint, save

MiB = 1 << 20


def small_network() -> bpcore.Network:
    return bpcore.Network([Dense(3, 4), BatchNorm(4), ReLU(), Dense(4, 2)], seed=0)


@pytest.fixture
def good_file(tmp_path) -> Path:
    network = small_network()
    optimizer = bpcore.optim.Adam(network.parameters(), lr=0.01)
    network.fit(np.ones((8, 3), np.float32), np.arange(8) % 2, loss="cross_entropy", optimizer=optimizer,
                epochs=1, batch_size=4, seed=0)
    path = tmp_path / "good.bpcore"
    save(network, path, optimizer=optimizer, extra={"classes": np.arange(2)})
    return path


def members_of(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def write_zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def with_document(source: Path, target: Path, change) -> Path:
    members = members_of(source)
    document = json.loads(members["architecture.json"])
    change(document)
    members["architecture.json"] = json.dumps(document).encode()
    return write_zip(target, members)


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array)
    return buffer.getvalue()


def refused(path: Path, match: str, *, reader=load, budget: int = 16 * MiB) -> None:
    """``reader(path)`` raises ModelFileError naming ``path`` and allocating at most ``budget`` bytes."""
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match=match) as info:
            reader(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.path == str(path) and str(path) in str(info.value)
    assert peak < budget, f"allocated {peak / MiB:.1f} MiB before refusing"


# --- memory -----------------------------------------------------------------------------------------------
def test_a_npy_header_claiming_a_huge_shape_is_refused_before_allocating(tmp_path, good_file):
    members = members_of(good_file)
    size = np.lib.format.read_array(io.BytesIO(members["parameters.npy"])).size
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
    members["parameters.npy"] = header.getvalue() + b"\0" * (4 * size)
    huge = write_zip(tmp_path / "huge", members)
    refused(huge, r"parameters: expected shape \(34,\) of float32 .*got shape \(1000000000000,\)")
    members = members_of(good_file)  # an array no table describes: bounded by the member's size
    members["extra/classes.npy"] = header.getvalue() + b"\0" * 64
    huge = write_zip(tmp_path / "huge-extra", members)
    refused(huge, "classes.npy' is corrupt or truncated: its header claims", reader=load_checkpoint)


def test_a_member_that_inflates_to_gigabytes_is_refused(tmp_path, good_file):
    members = members_of(good_file)
    bomb = tmp_path / "bomb"
    write_zip(bomb, {k: v for k, v in members.items() if k != "extra/classes.npy"}, zipfile.ZIP_DEFLATED)
    # a valid .npy of 64 MiB of zeros, which deflates to about 64 KB (scaled up, a 3 MB file of 3 GiB)
    header = io.BytesIO()
    layout = {"descr": "<f8", "fortran_order": False, "shape": (8 * MiB,)}
    np.lib.format.write_array_header_1_0(header, layout)
    with zipfile.ZipFile(bomb, "a", compression=zipfile.ZIP_DEFLATED) as archive, archive.open(
        "extra/classes.npy", "w", force_zip64=True
    ) as out:
        out.write(header.getvalue())
        zeros = bytes(MiB)
        for _ in range(64):
            out.write(zeros)
    assert bomb.stat().st_size < 2 * MiB
    refused(bomb, "extra/classes.npy' claims .* bytes from .* compressed bytes", reader=load_checkpoint)


def _central_entry(data: bytes | bytearray, name: str) -> int:
    """The offset of ``name``'s central-directory entry in a ZIP archive (no ZIP64 fields)."""
    position = data.find(b"PK\x01\x02")
    while position >= 0:
        length = struct.unpack_from("<H", data, position + 28)[0]
        if data[position + 46 : position + 46 + length] == name.encode():
            return position
        position = data.find(b"PK\x01\x02", position + 46)
    raise AssertionError(f"{name} not found")


def test_a_size_field_claiming_gigabytes_is_refused(tmp_path, good_file):
    plain = write_zip(tmp_path / "plain", members_of(good_file))  # 32-bit size fields
    data = bytearray(plain.read_bytes())
    struct.pack_into("<I", data, _central_entry(data, "parameters.npy") + 24, 3 << 30)  # uncompressed size
    path = tmp_path / "claims"
    path.write_bytes(bytes(data))
    refused(path, "parameters.npy' claims 3221225472 bytes")


def test_an_architecture_of_10_to_the_18_parameters_is_refused_before_allocating(tmp_path, good_file):
    def giant(document):
        network = document["network"]
        network["layers"] = [{"type": "Dense", "config": {"in_features": 10**9, "out_features": 10**9}}]
        network["buffers"] = []
        network["parameters"]["size"] = 10**18 + 10**9
        network["parameters"]["entries"] = [
            {"layer": "0", "name": "weight", "shape": [10**9, 10**9], "offset": 0},
            {"layer": "0", "name": "bias", "shape": [10**9], "offset": 10**18},
        ]

    refused(with_document(good_file, tmp_path / "giant", giant), r"expected shape \(1000000001000000000,\)")

    def mismatched(document):  # the architecture alone claims the memory: refused by the table
        document["network"]["layers"][0]["config"].update(in_features=10**9, out_features=10**9)

    refused(with_document(good_file, tmp_path / "giant2", mismatched), "parameter table does not match")


# --- structure and values -----------------------------------------------------------------------------
def _nested_residuals(depth: int) -> dict:
    layer: dict = {"type": "ReLU", "config": {}}
    for _ in range(depth):
        layer = {"type": "Residual", "config": {}, "layers": [layer]}
    return layer


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: d["network"]["layers"].__setitem__(2, _nested_residuals(400)), "nests deeper than 200"),
        (lambda d: d["network"]["parameters"].__setitem__("entries", 5), "'entries' must be a list"),
        (lambda d: d["network"]["parameters"].__setitem__("size", "12"), "'size' must be a non-negative"),
        (lambda d: d["network"]["parameters"]["entries"][0].__setitem__("shape", [3, True]), "entry 0"),
        (lambda d: d["network"].__setitem__("buffers", 5), "'buffers' must be a list"),
        (lambda d: d["network"].__setitem__("seed", 10**40), "invalid architecture: seed"),
        (lambda d: d["network"]["layers"][0]["config"].__setitem__("in_features", 10**40), "in_features"),
        (lambda d: d["optimizer"]["config"].__setitem__("betas", "0.9"), "optimizer"),
        (lambda d: d["optimizer"].__setitem__("state", 5), "optimizer state does not fit"),
    ],
)
def test_damaged_documents_are_refused(tmp_path, good_file, change, match):
    refused(with_document(good_file, tmp_path / "bad", change), match, reader=load_checkpoint)


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        (b'"seed": 0', b'"seed": ' + b"7" * 5000, "invalid value"),
        (b'"lr": 0.01', b'"lr": 1e400', "the number 1e400 is out of range"),
        (b'"lr": 0.01', b'"lr": NaN', "NaN is not standard JSON"),
        (b'"extra": {', b'"deep": ' + b"[" * 100_000 + b"]" * 100_000 + b', "extra": {', "nests deeper than"),
        (b'"extra": {', b'"deep": ' + b"[" * 300 + b"]" * 300 + b', "extra": {', "nests deeper than 200"),
    ],
)
def test_numbers_json_cannot_hold_are_refused(tmp_path, good_file, old, new, match):
    members = members_of(good_file)
    text = json.dumps(json.loads(members["architecture.json"])).encode()
    assert old in text
    members["architecture.json"] = text.replace(old, new, 1)
    refused(write_zip(tmp_path / "bad", members), match, reader=load_checkpoint)


def test_encrypted_and_unsupported_members_are_refused(tmp_path, good_file):
    data = bytearray(write_zip(tmp_path / "plain", members_of(good_file)).read_bytes())
    data[_central_entry(data, "architecture.json") + 8] |= 0x1  # general purpose flag bit 0: encrypted
    path = tmp_path / "encrypted"
    path.write_bytes(bytes(data))
    refused(path, "'architecture.json' is encrypted")
    bz2 = write_zip(tmp_path / "bz2", members_of(good_file), zipfile.ZIP_BZIP2)
    refused(bz2, "compression method 12; only stored and deflated")


def test_duplicate_members_are_refused(tmp_path, good_file):
    path = tmp_path / "twice"
    members = members_of(good_file)
    with zipfile.ZipFile(path, "w") as archive, pytest.warns(UserWarning, match="Duplicate name"):
        for name, data in members.items():
            archive.writestr(name, data)
        archive.writestr("parameters.npy", members["parameters.npy"])
    refused(path, "holds the member 'parameters.npy' twice")


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (np.array(["a", "b", "c", "d"]), "not a plain numeric array"),
        (np.zeros(4, dtype="V4"), "not a plain numeric array"),
        (np.zeros(4, dtype=np.complex64), "not a plain numeric array"),
        (np.arange(4), "expected floats"),
        (np.array([1.0, np.nan, 1.0, 1.0], np.float32), "running_var.*expected non-negative finite"),
        (np.array([1.0, -1.0, 1.0, 1.0], np.float32), "running_var.*expected non-negative finite"),
    ],
)
def test_bad_buffers_are_refused(tmp_path, good_file, value, match):
    members = members_of(good_file)
    members["buffers/1/running_var.npy"] = npy(value)
    refused(write_zip(tmp_path / "buffer", members), match)


def test_non_finite_optimiser_state_is_refused(tmp_path, good_file):
    members = members_of(good_file)
    name = next(n for n in members if n.startswith("optimizer/state/") and "exp_avg_sq" in n)
    state = np.lib.format.read_array(io.BytesIO(members[name]))
    state[0] = np.inf
    members[name] = npy(state)
    refused(write_zip(tmp_path / "state", members), "exp_avg_sq' contains NaN or Inf", reader=load_checkpoint)
    load(tmp_path / "state")  # the network alone is fine


def test_saving_refuses_what_loading_would_refuse(tmp_path):
    with pytest.raises(TypeError, match="extra/names: only boolean, integer and float arrays can be saved"):
        save(small_network(), tmp_path / "x.bpcore", extra={"names": np.array(["a"])})
    assert not (tmp_path / "x.bpcore").exists()


# --- files that are not files -------------------------------------------------------------------------
def _finishes(function, seconds: float = 10.0):
    outcome: list = []

    def target():
        try:
            function()
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "loading hung"
    return outcome[0] if outcome else None


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.bpcore"
    os.mkfifo(fifo)
    error = _finishes(lambda: load(fifo))
    assert isinstance(error, ModelFileError) and "a FIFO, expected a regular file" in str(error)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_device_is_refused_without_reading_it(tmp_path):
    error = _finishes(lambda: load("/dev/zero"))
    assert isinstance(error, ModelFileError) and "a device, expected a regular file" in str(error)


# --- resuming from a damaged training section ----------------------------------------------------------
X = np.random.default_rng(0).normal(size=(32, 3)).astype(np.float32)
Y = np.arange(32) % 2


def _fit(network, optimizer, epochs, **options):
    return network.fit(X, Y, loss="cross_entropy", optimizer=optimizer, epochs=epochs, batch_size=8, seed=0,
                       **options)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("epoch", "3", "epoch: expected a non-negative integer"),
        ("shuffle_rng", {"bit_generator": "PCG64", "state": 5}, "shuffle_rng: not a PCG64 state"),
        ("sample_order", [0, 0, 0], "sample_order"),
        ("history", {"epochs": [1], "values": {"loss": ["x"]}}, "history"),
        ("history", [1, 2], "history: expected an object"),
        ("scheduler", {"last_epoch": "x"}, "scheduler: expected the keys"),
        ("early_stopping", {"best": 1.0, "best_epoch": 1, "wait": -1}, "early_stopping wait"),
        ("early_stopping", {"best": 1.0, "best_epoch": 1, "wait": 0, "best_state": {"parameters": 1,
                                                                                      "buffers": {}}},
         "parameters: expected"),
    ],
)
def test_a_damaged_training_section_fails_before_anything_changes(tmp_path, key, value, match):
    network = small_network()
    optimizer = bpcore.optim.SGD(network.parameters(), lr=0.1, momentum=0.9)
    scheduler = bpcore.optim.StepLR(optimizer, step_size=1)
    stopping = bpcore.training.EarlyStopping(monitor="loss")
    _fit(network, optimizer, 2, scheduler=scheduler, early_stopping=stopping,
         callbacks=[ModelCheckpoint(tmp_path / "c", save_best=False)])

    def damage(document):
        document["training"][key] = value

    path = with_document(tmp_path / "c" / "epoch-0002.bpcore", tmp_path / "damaged.bpcore", damage)
    other = small_network()
    opt = bpcore.optim.SGD(other.parameters(), lr=0.1, momentum=0.9)
    sched = bpcore.optim.StepLR(opt, step_size=1)
    _fit(other, opt, 1, scheduler=sched)
    before = other.store.data.copy(), opt.state_dict(), opt.lr, sched.state_dict()
    with pytest.raises(ModelFileError, match=f"resume_from: the training section is damaged .*{match}"):
        _fit(other, opt, 4, scheduler=sched, resume_from=path,
             early_stopping=bpcore.training.EarlyStopping(monitor="loss"))
    assert np.array_equal(other.store.data, before[0])
    assert np.array_equal(opt.state_dict()["state"]["momentum_buffer"], before[1]["state"]["momentum_buffer"])
    assert opt.state_dict()["step"] == before[1]["step"] and opt.lr == before[2]
    assert sched.state_dict() == before[3]


# --- fuzzing: every damaged file is refused or loads identically ----------------------------------------
def test_byte_flips_and_truncations_give_model_file_error_or_an_identical_load(tmp_path, good_file):
    data = good_file.read_bytes()
    reference = load_checkpoint(good_file)
    rng = np.random.default_rng(20261201)
    path = tmp_path / "fuzzed"
    cases = [("flip", int(rng.integers(len(data))), int(rng.integers(1, 256))) for _ in range(300)]
    cases += [("truncate", int(rng.integers(len(data))), 0) for _ in range(60)]
    outcomes = {"refused": 0, "identical": 0}
    for kind, position, mask in cases:
        damaged = bytearray(data)
        if kind == "flip":
            damaged[position] ^= mask
        else:
            del damaged[position:]
        path.write_bytes(bytes(damaged))
        try:
            loaded = load_checkpoint(path)
        except ModelFileError:
            outcomes["refused"] += 1
            continue
        assert np.array_equal(loaded.network.store.data, reference.network.store.data), (kind, position)
        for a, b in zip(loaded.network.walk(), reference.network.walk(), strict=True):
            assert all(np.array_equal(v, b.buffers()[k]) for k, v in a.buffers().items()), (kind, position)
        assert repr(loaded.optimizer) == repr(reference.optimizer), (kind, position)
        mine, theirs = loaded.optimizer.state_dict(), reference.optimizer.state_dict()
        assert all(np.array_equal(mine["state"][k], theirs["state"][k]) for k in theirs["state"])
        assert np.array_equal(loaded.extra["classes"], reference.extra["classes"])
        outcomes["identical"] += 1
    assert outcomes["refused"] > 250

