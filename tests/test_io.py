"""Model files: round trips for every layer type and dtype, atomic writes, bad files."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

import bpcore
from bpcore.layers import (
    ELU,
    GELU,
    GRU,
    LSTM,
    RNN,
    AvgPool2D,
    BatchNorm,
    Bidirectional,
    Concatenate,
    Conv2D,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    GlobalAvgPool1D,
    GlobalAvgPool2D,
    GlobalMaxPool1D,
    Identity,
    LeakyReLU,
    Masking,
    MaxPool2D,
    ReLU,
    Reshape,
    Residual,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Tanh,
)
from bpcore.serialization import ModelFileError, load, load_checkpoint, save
from bpcore.serialization.registry import builtin_layer_types, describe

DTYPES = ["float32", "float64"]
gpu = pytest.mark.gpu  # skipped by conftest.py where no GPU is usable


def _activation(cls):
    return lambda: [Dense(4, 6), cls(), Dense(6, 3)]


# One small network per layer type, each using that type with non-default arguments where it has any.
NETWORKS = {
    "Dense": lambda: [Dense(4, 6, init="he_normal"), Dense(6, 3, bias=False)],
    "Identity": _activation(Identity),
    "Sigmoid": _activation(Sigmoid),
    "Tanh": _activation(Tanh),
    "ReLU": _activation(ReLU),
    "LeakyReLU": lambda: [Dense(4, 6), LeakyReLU(negative_slope=0.2), Dense(6, 3)],
    "ELU": lambda: [Dense(4, 6), ELU(alpha=0.7), Dense(6, 3)],
    "GELU": _activation(GELU),
    "SiLU": _activation(SiLU),
    "Softplus": _activation(Softplus),
    "Softmax": lambda: [Dense(4, 3), Softmax()],
    "Dropout": lambda: [Dense(4, 6), ReLU(), Dropout(0.3), Dense(6, 3)],
    "BatchNorm": lambda: [Dense(4, 6), BatchNorm(6, momentum=0.2, eps=1e-4), ReLU(), Dense(6, 3)],
    "Residual": lambda: [Dense(4, 6), Residual(Dense(6, 6), Tanh(), BatchNorm(6)), Dense(6, 3)],
    "Reshape": lambda: [Reshape((2, 2)), Flatten(), Dense(4, 3)],
    "Flatten": lambda: [Reshape((1, 2, 2)), Flatten(), Dense(4, 3)],
    "Conv2D": lambda: [
        Reshape((1, 2, 2)), Conv2D(1, 3, 2, stride=(1, 2), padding=(1, 0), init="xavier_normal"), Flatten(),
        Dense(9, 3),
    ],
    "MaxPool2D": lambda: [Reshape((1, 2, 2)), MaxPool2D(2, stride=1, padding=1), Flatten(), Dense(9, 3)],
    "AvgPool2D": lambda: [Reshape((1, 2, 2)), AvgPool2D(2, stride=1, padding=1), Flatten(), Dense(9, 3)],
    "GlobalAvgPool2D": lambda: [
        Reshape((1, 2, 2)), Conv2D(1, 3, 1, bias=False), GlobalAvgPool2D(), Dense(3, 3),
    ],
    "GlobalMaxPool1D": lambda: [Reshape((2, 2)), GRU(2, 3, return_sequences=True), GlobalMaxPool1D(),
                                Dense(3, 3)],
    "GlobalAvgPool1D": lambda: [Reshape((2, 2)), Masking(0.5), GRU(2, 3, return_sequences=True),
                                GlobalAvgPool1D(), Dense(3, 3)],
    "Embedding": lambda: [Embedding(6, 3, padding_idx=-1), Flatten(), Dense(12, 3)],
    "RNN": lambda: [Reshape((2, 2)), RNN(2, 3, nonlinearity="relu", return_sequences=True), Flatten(),
                    Dense(6, 3)],
    "LSTM": lambda: [Reshape((2, 2)), LSTM(2, 3), Dense(3, 3)],
    "GRU": lambda: [Reshape((2, 2)), GRU(2, 3), Dense(3, 3)],
    "Masking": lambda: [Reshape((2, 2)), Masking(0.5), GRU(2, 3), Dense(3, 3)],
    "Bidirectional": lambda: [Reshape((2, 2)), Bidirectional(LSTM(2, 3, return_sequences=True)), Flatten(),
                              Dense(12, 3)],
    "Concatenate": lambda: [Reshape((2, 2)), Masking(0.5), Concatenate(
        [GRU(2, 3, return_sequences=True), GlobalMaxPool1D()], [GlobalAvgPool1D(), Dense(2, 2), BatchNorm(2)]
    ), Dense(5, 3)],
}
# The kinds whose first layer takes integer indices: (n, 4) of them instead of features.
INDEX_INPUT = {"Embedding": 6}


def inputs(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """A batch of (n, 4) inputs for network ``kind``."""
    if kind in INDEX_INPUT:
        return rng.integers(0, INDEX_INPUT[kind], size=(n, 4))
    return rng.normal(size=(n, 4))


def trained_network(kind: str, dtype: str, seed: int = 3) -> bpcore.Network:
    """A network whose parameters and buffers all differ from a freshly built one."""
    network = bpcore.Network(NETWORKS[kind](), dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed)
    network.store.load(rng.normal(size=network.store.size))
    for _ in range(3):  # moves BatchNorm's running statistics away from their start
        network.forward(inputs(kind, rng, 8), training=True)
    return network


def buffers_of(network: bpcore.Network) -> list[np.ndarray]:
    return [np.asarray(v) for layer in network.walk() for v in layer.buffers().values()]


def test_every_layer_type_has_a_round_trip_case():
    assert set(NETWORKS) == set(builtin_layer_types())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", sorted(NETWORKS))
def test_round_trip_is_bit_identical(tmp_path, kind, dtype):
    network = trained_network(kind, dtype)
    path = tmp_path / "model.bpc"
    save(network, path)
    loaded = load(path)
    x = inputs(kind, np.random.default_rng(0), 7)
    assert loaded.dtype == np.dtype(dtype)
    assert [describe(layer, "") for layer in loaded.layers] == [
        describe(layer, "") for layer in network.layers
    ]
    assert np.array_equal(loaded.store.data, network.store.data)
    for before, after in zip(buffers_of(network), buffers_of(loaded), strict=True):
        assert np.array_equal(before, after)
    assert np.array_equal(loaded.forward(x), network.forward(x))
    assert loaded.forward(x).dtype == np.dtype(dtype)


def test_same_state_gives_the_same_bytes(tmp_path):
    network = trained_network("Residual", "float32")
    save(network, tmp_path / "a")
    save(network, tmp_path / "b")
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def test_file_objects_and_numpy_can_read_the_format(tmp_path):
    network = trained_network("BatchNorm", "float64")
    buffer = io.BytesIO()
    save(network, buffer)
    buffer.seek(0)
    assert np.array_equal(load(buffer).store.data, network.store.data)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as archive:  # the documented layout is np.savez's
        assert np.array_equal(archive["parameters"], network.store.data)
        document = json.loads(archive["architecture.json"])
    assert document["format"] == "bpcore-model" and document["format_version"] == 2
    assert [e["layer"] for e in document["network"]["parameters"]["entries"]] == [
        "0",
        "0",
        "1",
        "1",
        "3",
        "3",
    ]
    assert [(b["layer"], b["name"]) for b in document["network"]["buffers"]] == [
        ("1", "running_mean"),
        ("1", "running_var"),
    ]


def test_nested_layer_paths_are_recorded(tmp_path):
    network = trained_network("Residual", "float32")
    save(network, tmp_path / "m")
    with zipfile.ZipFile(tmp_path / "m") as archive:
        document = json.loads(archive.read("architecture.json"))
        assert "buffers/1.2/running_mean.npy" in archive.namelist()
    residual = document["network"]["layers"][1]
    assert residual["type"] == "Residual" and [c["type"] for c in residual["layers"]] == [
        "Dense",
        "Tanh",
        "BatchNorm",
    ]


def test_extra_data_round_trips(tmp_path):
    network = trained_network("Dense", "float32")
    extra = {
        "classes": np.array([3, 5, 7]),
        "name": "iris",
        "scores": [0.5, float("inf"), float("nan")],
        "nested": {"k": np.eye(2, dtype=np.float32), "flag": True, "none": None},
    }
    save(network, tmp_path / "m", extra=extra)
    loaded = load_checkpoint(tmp_path / "m")
    assert loaded.optimizer is None and loaded.loss is None and loaded.training is None
    assert loaded.metadata == {
        "format": "bpcore-model",
        "format_version": 2,
        "bpcore_version": bpcore.__version__,
    }
    got = loaded.extra
    assert np.array_equal(got["classes"], extra["classes"]) and got["name"] == "iris"
    assert got["scores"][:2] == [0.5, float("inf")] and np.isnan(got["scores"][2])
    assert (
        got["nested"]["k"].dtype == np.float32
        and got["nested"]["flag"] is True
        and got["nested"]["none"] is None
    )


def test_custom_initialisers_are_not_needed_to_load(tmp_path):
    network = bpcore.Network([Dense(3, 2, init=lambda rng, shape, fi, fo: np.full(shape, 0.5))], seed=0)
    save(network, tmp_path / "m")
    assert np.array_equal(load(tmp_path / "m").store.data, network.store.data)


def test_custom_layers_must_be_passed_explicitly(tmp_path):
    class Doubler(Identity):
        pass

    network = bpcore.Network([Dense(3, 2), Doubler()], seed=0)
    save(network, tmp_path / "m")
    with pytest.raises(ModelFileError, match="unknown layer type 'Doubler'"):
        load(tmp_path / "m")
    assert isinstance(load(tmp_path / "m", custom_layers={"Doubler": Doubler}).layers[1], Doubler)
    with pytest.raises(TypeError, match=r"custom_layers\['x'\]: expected a bpcore Layer subclass"):
        load(tmp_path / "m", custom_layers={"x": dict})


def test_bad_arguments_to_save(tmp_path):
    with pytest.raises(TypeError, match="network: expected a bpcore Network, got dict"):
        save({}, tmp_path / "m")
    network = trained_network("Dense", "float32")
    with pytest.raises(TypeError, match="path: expected a file path or a binary file object, got int"):
        save(network, 3)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save(network, tmp_path / "missing-dir" / "m")
    with pytest.raises(TypeError, match="extra/s: cannot save a set"):
        save(network, tmp_path / "m", extra={"s": {1, 2}})
    assert not (tmp_path / "m").exists()
    with pytest.raises(FileNotFoundError, match="no such file"):
        load(tmp_path / "nothing")


# --- atomic writes ------------------------------------------------------------
def test_a_failing_save_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "model.bpc"
    old = trained_network("Dense", "float32", seed=1)
    save(old, path)
    before = path.read_bytes()
    real_write_array = np.lib.format.write_array

    def write_then_fail(handle, array, **kwargs):
        real_write_array(handle, array, **kwargs)  # part of the file is written ...
        raise OSError("No space left on device")  # ... then the writer dies

    monkeypatch.setattr(np.lib.format, "write_array", write_then_fail)
    with pytest.raises(OSError, match="No space left"):
        save(trained_network("Dense", "float32", seed=2), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.bpc"]  # the temporary file is gone too
    monkeypatch.undo()
    assert np.array_equal(load(path).store.data, old.store.data)


def test_a_process_killed_mid_save_leaves_the_old_file_intact(tmp_path):
    path = tmp_path / "model.bpc"
    save(trained_network("Dense", "float64", seed=1), path)
    before = path.read_bytes()
    script = textwrap.dedent(f"""
        import os
        import numpy as np
        import bpcore
        from bpcore.layers import Dense
        from bpcore.serialization import save
        network = bpcore.Network([Dense(4, 6), Dense(6, 3)], dtype="float64", seed=9)
        def die(handle, array, **kwargs):
            handle.write(b"partial")
            os._exit(3)  # no cleanup, no exception handlers: as if the power went out
        np.lib.format.write_array = die
        save(network, {str(path)!r})
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert result.returncode == 3, result.stderr.decode()
    assert path.read_bytes() == before
    assert np.array_equal(load(path).store.data, trained_network("Dense", "float64", seed=1).store.data)


def test_saved_files_get_ordinary_permissions(tmp_path):
    save(trained_network("Dense", "float32"), tmp_path / "m")
    (tmp_path / "plain").write_bytes(b"")
    assert (tmp_path / "m").stat().st_mode == (tmp_path / "plain").stat().st_mode


# --- bad files ------------------------------------------------------------------
def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _rewrite_document(source: Path, target: Path, change) -> Path:
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    document = json.loads(members["architecture.json"])
    change(document)
    members["architecture.json"] = json.dumps(document).encode()
    return _zip(target, members)


@pytest.fixture
def good_file(tmp_path) -> Path:
    path = tmp_path / "good.bpc"
    save(trained_network("BatchNorm", "float32"), path)
    return path


def _expect_model_file_error(path, match: str) -> None:
    with pytest.raises(ModelFileError, match=match) as info:
        load(path)
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value) and info.value.path == str(path)


def test_a_text_file_is_rejected(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("these are not the weights you are looking for\n")
    _expect_model_file_error(path, "not a ZIP archive")


def test_an_empty_file_is_rejected(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    _expect_model_file_error(path, "not a ZIP archive")


def test_a_foreign_zip_is_rejected(tmp_path):
    _expect_model_file_error(_zip(tmp_path / "x.zip", {"readme.md": b"hello"}), r"no architecture\.json")


def test_a_plain_npz_is_rejected(tmp_path):
    path = tmp_path / "weights.npz"
    np.savez(path, w=np.ones(3))
    _expect_model_file_error(path, r"no architecture\.json \(members: w\.npy\)")


def test_another_json_format_is_rejected(tmp_path):
    path = _zip(tmp_path / "x", {"architecture.json": b'{"format": "keras", "layers": []}'})
    _expect_model_file_error(path, "not a bpcore model file .format is 'keras'")


def test_invalid_json_is_rejected(tmp_path):
    _expect_model_file_error(_zip(tmp_path / "x", {"architecture.json": b"{not json"}), "not valid JSON")
    _expect_model_file_error(
        _zip(tmp_path / "y", {"architecture.json": b"[1, 2]"}), "must hold a JSON object"
    )


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_a_truncated_file_is_rejected(tmp_path, good_file, keep):
    data = good_file.read_bytes()
    path = tmp_path / "truncated"
    path.write_bytes(data[: int(len(data) * keep)])
    _expect_model_file_error(path, "truncated|corrupt")


def test_a_flipped_bit_in_the_weights_is_detected(tmp_path, good_file):
    data = bytearray(good_file.read_bytes())
    with zipfile.ZipFile(good_file) as archive:
        info = archive.getinfo("parameters.npy")
    # the member's data starts after its local header (30 bytes + name + extra field)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.file_size - 3] ^= 0x10
    path = tmp_path / "flipped"
    path.write_bytes(bytes(data))
    _expect_model_file_error(path, "parameters: 'parameters.npy' is corrupt or truncated")


def test_a_newer_format_version_is_rejected(tmp_path, good_file):
    path = _rewrite_document(good_file, tmp_path / "v99", lambda d: d.update(format_version=99))
    _expect_model_file_error(
        path, "format version 99 .* newer than this bpcore reads .version 2.; upgrade bpcore"
    )
    path = _rewrite_document(good_file, tmp_path / "v0", lambda d: d.update(format_version="1"))
    _expect_model_file_error(path, "invalid format_version '1'")


def test_an_unknown_layer_type_is_rejected_without_importing_it(tmp_path, good_file):
    def evil(document):
        document["network"]["layers"][0] = {"type": "os.system", "config": {"command": "echo hacked"}}

    _expect_model_file_error(
        _rewrite_document(good_file, tmp_path / "x", evil),
        r"layer 0: unknown layer type 'os\.system'; known types: AvgPool2D, BatchNorm, Bidirectional, "
        "Concatenate, Conv2D, Dense",
    )


def test_bad_layer_arguments_are_rejected(tmp_path, good_file):
    def bad(document):
        document["network"]["layers"][0]["config"]["out_features"] = -5

    _expect_model_file_error(
        _rewrite_document(good_file, tmp_path / "x", bad), "invalid architecture: .*Dense"
    )


def test_architecture_and_weights_must_agree(tmp_path, good_file):
    def wider(document):
        document["network"]["layers"][0]["config"]["out_features"] = 7
        document["network"]["layers"][1]["config"]["num_features"] = 7
        document["network"]["layers"][3]["config"]["in_features"] = 7

    _expect_model_file_error(
        _rewrite_document(good_file, tmp_path / "x", wider), "parameter table does not match the architecture"
    )


def test_wrong_dtype_or_size_of_the_weights_is_rejected(tmp_path, good_file):
    with zipfile.ZipFile(good_file) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    for name, array, message in [
        ("a", np.zeros(3, np.float32), r"expected shape \(\d+,\) of float32 .*, got shape \(3,\)"),
        ("b", np.zeros(members["parameters.npy"].__len__(), np.int64), "float32 .*, got shape .* of int64"),
    ]:
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, array)
        _expect_model_file_error(
            _zip(tmp_path / name, {**members, "parameters.npy": buffer.getvalue()}), message
        )


def test_pickled_arrays_are_never_unpickled(tmp_path, good_file):
    with zipfile.ZipFile(good_file) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.array([object()], dtype=object), allow_pickle=True)
    path = _zip(tmp_path / "pickled", {**members, "parameters.npy": buffer.getvalue()})
    _expect_model_file_error(path, "not a plain numeric array")


def test_a_missing_array_or_buffer_is_rejected(tmp_path, good_file):
    with zipfile.ZipFile(good_file) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    del members["buffers/1/running_var.npy"]
    _expect_model_file_error(_zip(tmp_path / "x", members), "'buffers/1/running_var.npy' is missing")

    def ghost(document):
        document["network"]["buffers"][0]["name"] = "ghost"

    _expect_model_file_error(
        _rewrite_document(good_file, tmp_path / "y", ghost), "buffer 'ghost' of layer '1'"
    )


def test_a_failed_load_does_not_touch_the_current_device(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("x")
    before = bpcore.current_device()
    with pytest.raises(ModelFileError):
        load(path)
    assert bpcore.current_device() == before


# --- devices ----------------------------------------------------------------------
def test_the_file_does_not_record_a_device(good_file):
    text = zipfile.ZipFile(good_file).read("architecture.json").decode()
    assert "cpu" not in text and "cuda" not in text


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_saved_on_gpu_loads_on_cpu_and_back(tmp_path, dtype):
    network = trained_network("Residual", dtype).to("cuda")
    save(network, tmp_path / "gpu")
    on_cpu = load(tmp_path / "gpu", device="cpu")
    assert isinstance(on_cpu.store.data, np.ndarray)
    assert np.array_equal(on_cpu.store.data, network.store.data.get())
    save(on_cpu, tmp_path / "cpu")
    back = load(tmp_path / "cpu", device="cuda")
    assert np.array_equal(back.store.data.get(), on_cpu.store.data)
    for before, after in zip(buffers_of(on_cpu), buffers_of(back), strict=True):
        assert np.array_equal(before, after.get())


# --- optimisers and losses ----------------------------------------------------------
OPTIMIZERS = {
    "SGD": lambda params: bpcore.optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "AdaGrad": lambda params: bpcore.optim.AdaGrad(params, lr=0.05, lr_decay=0.01),
    "RMSProp": lambda params: bpcore.optim.RMSProp(params, lr=0.01, momentum=0.5, centered=True),
    "Adam": lambda params: bpcore.optim.Adam(params, lr=0.01, betas=(0.8, 0.99), amsgrad=True),
    "AdamW": lambda params: bpcore.optim.AdamW(params, lr=0.01, weight_decay=0.1),
}


def _train_steps(network, optimizer, loss, steps: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        x, y = rng.normal(size=(8, 4)), rng.integers(0, 3, size=8)
        network.zero_grad()
        loss(network.forward(x, training=True), y)
        network.backward(loss.backward())
        optimizer.step()


def test_every_optimiser_has_a_round_trip_case():
    assert set(OPTIMIZERS) == set(bpcore.optim.OPTIMIZERS)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_resuming_from_a_file_continues_bit_identically(tmp_path, name, dtype):
    network = bpcore.Network(NETWORKS["BatchNorm"](), dtype=dtype, seed=0)
    optimizer = OPTIMIZERS[name](network.parameters())
    loss = bpcore.losses.CrossEntropy()
    _train_steps(network, optimizer, loss, 3, seed=1)
    save(network, tmp_path / "m", optimizer=optimizer, loss=loss)
    resumed = load_checkpoint(tmp_path / "m")
    assert type(resumed.optimizer) is type(optimizer) and resumed.optimizer.config() == optimizer.config()
    assert resumed.optimizer.step_count == optimizer.step_count == 3
    assert type(resumed.loss) is bpcore.losses.CrossEntropy and resumed.loss.config() == loss.config()
    _train_steps(network, optimizer, loss, 3, seed=2)
    _train_steps(resumed.network, resumed.optimizer, resumed.loss, 3, seed=2)
    assert np.array_equal(resumed.network.store.data, network.store.data)
    x = np.random.default_rng(3).normal(size=(5, 4))
    assert np.array_equal(resumed.network.forward(x), network.forward(x))


def test_an_unknown_optimiser_type_is_rejected(tmp_path):
    network = trained_network("Dense", "float32")
    save(network, tmp_path / "m", optimizer=bpcore.optim.SGD(network.parameters(), lr=0.1))

    def foreign(document):
        document["optimizer"]["type"] = "subprocess.Popen"

    path = _rewrite_document(tmp_path / "m", tmp_path / "x", foreign)
    with pytest.raises(ModelFileError, match=r"unknown optimizer type 'subprocess\.Popen' in bpcore\.optim"):
        load_checkpoint(path)
    assert np.array_equal(load(path).store.data, network.store.data)  # the network alone still loads


def test_a_version_1_file_still_loads(tmp_path, good_file):
    """Version 1 (before per-sample shapes were recorded): the same document without input_shape."""

    def to_version_1(document):
        document["format_version"] = 1
        del document["network"]["input_shape"]

    path = _rewrite_document(good_file, tmp_path / "v1.bpc", to_version_1)
    assert np.array_equal(load(path).store.data, load(good_file).store.data)


def test_an_inconsistent_input_shape_is_rejected(tmp_path, good_file):
    path = _rewrite_document(good_file, tmp_path / "shape", lambda d: d["network"].update(input_shape=[3, 4]))
    _expect_model_file_error(path, r"records \[3, 4\]")
