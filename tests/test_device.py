"""Device selection: the environment variable, set_device, use_device and the GPU errors."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

import bpcore
from bpcore import backends
from bpcore.backends import CPU, ENV_VAR, Device, DeviceError, get_backend, probe_cuda
from bpcore.backends import device as device_module

no_gpu = pytest.mark.skipif(
    probe_cuda().count > 0, reason="checks the errors of a machine without a usable GPU"
)


@pytest.fixture
def two_fake_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make device resolution believe two GPUs exist (nothing here touches a GPU)."""
    monkeypatch.setattr(device_module, "probe_cuda", lambda: device_module.CudaProbe(2, "2 CUDA GPU(s)"))


def default_from_env(monkeypatch: pytest.MonkeyPatch, value: str) -> Device:
    monkeypatch.setenv(ENV_VAR, value)
    backends.reset_default_device()
    return bpcore.current_device()


# --- BPCORE_DEVICE ---------------------------------------------------------------


def test_default_device_is_cpu_without_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    backends.reset_default_device()
    assert bpcore.current_device() == CPU


@pytest.mark.parametrize("value", ["cpu", "CPU", " cpu ", ""])
def test_env_cpu_values(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    assert default_from_env(monkeypatch, value) == CPU


@pytest.mark.parametrize(("value", "expected"), [("cuda", Device("cuda", 0)), ("cuda:1", Device("cuda", 1))])
def test_env_cuda_values_resolve_when_gpus_exist(
    monkeypatch: pytest.MonkeyPatch, two_fake_gpus: None, value: str, expected: Device
) -> None:
    assert default_from_env(monkeypatch, value) == expected


def test_env_cuda_index_beyond_the_gpus_is_an_error(
    monkeypatch: pytest.MonkeyPatch, two_fake_gpus: None
) -> None:
    with pytest.raises(DeviceError) as info:
        default_from_env(monkeypatch, "cuda:2")
    message = str(info.value)
    assert ENV_VAR in message and "'cuda:2'" in message and "cuda:0, cuda:1" in message


def test_env_auto_picks_the_gpu_when_there_is_one(
    monkeypatch: pytest.MonkeyPatch, two_fake_gpus: None
) -> None:
    assert default_from_env(monkeypatch, "auto") == Device("cuda", 0)


def test_env_auto_falls_back_to_cpu_and_logs_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(device_module, "probe_cuda", lambda: device_module.CudaProbe(0, "CuPy found no GPU"))
    with caplog.at_level(logging.INFO, logger="bpcore"):
        assert default_from_env(monkeypatch, "auto") == CPU
    assert any("auto" in r.getMessage() and "cpu" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("value", ["gpu0", "cuda:", "cuda:-1", "cuda:x", "tpu", "cpu:0", "1"])
def test_env_garbage_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    with pytest.raises(DeviceError) as info:
        default_from_env(monkeypatch, value)
    message = str(info.value)
    assert ENV_VAR in message and repr(value) in message
    assert "'cpu', 'cuda', 'cuda:N' or 'auto'" in message


def test_env_is_read_again_after_reset(monkeypatch: pytest.MonkeyPatch, two_fake_gpus: None) -> None:
    assert default_from_env(monkeypatch, "cpu") == CPU
    monkeypatch.setenv(ENV_VAR, "cuda:1")
    assert bpcore.current_device() == CPU  # read once, then cached
    backends.reset_default_device()
    assert bpcore.current_device() == Device("cuda", 1)


# --- no GPU on this machine: the errors say what was asked, what exists, and the fix --


@no_gpu
@pytest.mark.parametrize("asked", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_gpu_names_request_availability_and_fix(asked: str) -> None:
    with pytest.raises(DeviceError) as info:
        bpcore.set_device(asked)
    message = str(info.value)
    index = asked.partition(":")[2] or "0"
    assert f"'cuda:{index}' was asked for" in message
    assert "available devices: cpu" in message
    assert probe_cuda().reason in message
    assert probe_cuda().fix in message
    assert bpcore.current_device() == CPU  # the failed call changed nothing


# --- the three ways a GPU can be missing, each with only its own fix ---------------------


class _FakeRuntime:
    def __init__(self, count: int | None, error: str = "") -> None:
        self.count, self.error = count, error

    def getDeviceCount(self) -> int:
        if self.count is None:
            raise RuntimeError(self.error)
        return self.count


def _probe_with(monkeypatch: pytest.MonkeyPatch, cupy: object) -> device_module.CudaProbe:
    """Run the real probe (uncached) against a stand-in for the ``cupy`` module (None: not installed)."""
    import sys

    monkeypatch.setitem(sys.modules, "cupy", cupy)
    return device_module.probe_cuda.__wrapped__()


def _fake_cupy(runtime: _FakeRuntime) -> object:
    import types

    module = types.ModuleType("cupy")
    module.__version__ = "14.2.0"  # type: ignore[attr-defined]
    module.cuda = types.SimpleNamespace(runtime=runtime)  # type: ignore[attr-defined]
    return module


def _error_for(monkeypatch: pytest.MonkeyPatch, probe: device_module.CudaProbe, asked: str) -> str:
    monkeypatch.setattr(device_module, "probe_cuda", lambda: probe)
    with pytest.raises(DeviceError) as info:
        backends.resolve_device(asked)
    return str(info.value)


def test_cupy_not_installed_suggests_installing_the_cuda_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    probe = _probe_with(monkeypatch, None)
    assert probe.count == 0 and not probe.cupy_installed and "CuPy is not installed" in probe.reason
    message = _error_for(monkeypatch, probe, "cuda")
    assert "CuPy is not installed" in message
    assert "pip install 'bpcore[cuda13]'" in message and "'bpcore[cuda12]'" in message
    assert "BPCORE_DEVICE" not in message and "driver" not in message


@pytest.mark.parametrize("runtime", [
    _FakeRuntime(None, "cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime"),
    _FakeRuntime(0),
], ids=["driver-error", "zero-gpus"])
def test_cupy_without_driver_or_gpu_says_so_and_suggests_the_cpu(
    monkeypatch: pytest.MonkeyPatch, runtime: _FakeRuntime
) -> None:
    probe = _probe_with(monkeypatch, _fake_cupy(runtime))
    assert probe.count == 0 and probe.cupy_installed
    assert probe.reason.startswith("no usable NVIDIA GPU or driver was found (CuPy 14.2.0")
    message = _error_for(monkeypatch, probe, "cuda:0")
    assert "no usable NVIDIA GPU or driver was found" in message
    if runtime.error:
        assert f"({'CuPy 14.2.0: ' + runtime.error})" in message  # CuPy's own reason, in parentheses
    assert "BPCORE_DEVICE=cpu" in message and "BPCORE_DEVICE=auto" in message
    assert "pip install" not in message and "install CuPy" not in message


def test_device_index_out_of_range_says_how_many_gpus_there_are(monkeypatch: pytest.MonkeyPatch) -> None:
    probe = _probe_with(monkeypatch, _fake_cupy(_FakeRuntime(2)))
    assert probe.count == 2
    message = _error_for(monkeypatch, probe, "cuda:5")
    assert "'cuda:5' was asked for" in message and "has 2 CUDA GPU(s)" in message
    assert "out of range" in message and "cuda:0 to cuda:1" in message
    assert "pip install" not in message and "BPCORE_DEVICE" not in message and "driver" not in message
    one = _error_for(monkeypatch, device_module.CudaProbe(1, "1 CUDA GPU(s)"), "cuda:1")
    assert "has 1 CUDA GPU(s)" in one and "ask for cuda:0" in one


def test_gpu_skip_reason_is_the_probe_text(monkeypatch: pytest.MonkeyPatch) -> None:
    import conftest

    probe = device_module.CudaProbe(0, "no usable NVIDIA GPU or driver was found (CuPy 14.2.0: no driver)")
    monkeypatch.setattr(conftest, "probe_cuda", lambda: probe)

    class Item:
        def __init__(self) -> None:
            self.markers: list[pytest.MarkDecorator] = []

        def get_closest_marker(self, name: str) -> object:
            return name == "gpu" or None

        def add_marker(self, marker: pytest.MarkDecorator) -> None:
            self.markers.append(marker)

    item = Item()
    conftest.pytest_collection_modifyitems(None, [item])  # type: ignore[arg-type, list-item]
    assert [m.kwargs["reason"] for m in item.markers] == [f"needs a usable CUDA GPU: {probe.reason}"]


@no_gpu
def test_cuda_from_env_without_gpu_fails_at_first_use_not_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "cuda")
    backends.reset_default_device()
    with pytest.raises(DeviceError, match=f"environment variable {ENV_VAR}.*'cuda:0' was asked for"):
        bpcore.Network([bpcore.layers.Dense(2, 1)])


@no_gpu
@pytest.mark.parametrize("call", ["get_backend", "use_device", "network", "to"])
def test_every_entry_point_refuses_cuda_without_gpu(call: str) -> None:
    with pytest.raises(DeviceError, match="available devices: cpu"):
        if call == "get_backend":
            get_backend("cuda")
        elif call == "use_device":
            with bpcore.use_device("cuda:0"):
                pass
        elif call == "network":
            bpcore.Network([bpcore.layers.Dense(2, 1)], device="cuda")
        else:
            bpcore.Network([bpcore.layers.Dense(2, 1)]).to("cuda")


@pytest.mark.parametrize("bad", [0, 1.5, None, ["cpu"]])
def test_non_string_device_in_code_is_a_type_error_message(bad: object) -> None:
    if bad is None:  # None means "the current device" where a device is optional
        assert backends.resolve_device(None) == bpcore.current_device()
        return
    with pytest.raises(DeviceError, match="expected a device name"):
        bpcore.set_device(bad)  # type: ignore[arg-type]


# --- set_device / use_device -----------------------------------------------------


def test_set_device_changes_the_default_for_every_thread(two_fake_gpus: None) -> None:
    assert bpcore.set_device("cuda:1") == Device("cuda", 1)
    seen: list[Device] = []
    thread = threading.Thread(target=lambda: seen.append(bpcore.current_device()))
    thread.start()
    thread.join()
    assert seen == [Device("cuda", 1)]
    bpcore.set_device("cpu")
    assert bpcore.current_device() == CPU


def test_use_device_is_scoped_and_nests(two_fake_gpus: None) -> None:
    assert bpcore.current_device() == CPU
    with bpcore.use_device("cuda:1") as outer:
        assert outer == Device("cuda", 1) == bpcore.current_device()
        with bpcore.use_device("cpu"):
            assert bpcore.current_device() == CPU
        assert bpcore.current_device() == Device("cuda", 1)
    assert bpcore.current_device() == CPU


def test_use_device_restores_after_an_exception(two_fake_gpus: None) -> None:
    with pytest.raises(KeyError), bpcore.use_device("cuda:0"):
        raise KeyError("boom")
    assert bpcore.current_device() == CPU


def test_use_device_is_isolated_between_threads(two_fake_gpus: None) -> None:
    both_inside = threading.Barrier(2, timeout=10)
    seen: dict[str, Device] = {}

    def worker(name: str, device: str) -> None:
        with bpcore.use_device(device):
            both_inside.wait()  # both scopes are open at the same time
            seen[name] = bpcore.current_device()
            both_inside.wait()

    threads = [
        threading.Thread(target=worker, args=("a", "cuda:1")),
        threading.Thread(target=worker, args=("b", "cpu")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {"a": Device("cuda", 1), "b": CPU}
    assert bpcore.current_device() == CPU


def test_network_to_cpu_is_a_no_op_that_returns_the_network() -> None:
    network = bpcore.Network([bpcore.layers.Dense(3, 2)], seed=0)
    data = network.store.data
    assert network.to("cpu") is network
    assert network.store.data is data and network.device == CPU


def test_network_uses_the_device_of_a_use_device_scope() -> None:
    with bpcore.use_device("cpu"):
        network = bpcore.Network([bpcore.layers.Dense(3, 2)])
    assert network.device == CPU and isinstance(network.store.data, np.ndarray)


def test_backends_are_shared_per_device_and_mode() -> None:
    assert get_backend("cpu") is get_backend(CPU)
    assert get_backend("cpu", kernels="generic") is not get_backend("cpu", kernels="fused")
    with pytest.raises(ValueError, match="kernels"):
        get_backend("cpu", kernels="fast")


@pytest.mark.gpu
def test_network_moves_to_the_gpu_and_back() -> None:
    network = bpcore.Network(
        [bpcore.layers.Dense(3, 4), bpcore.layers.BatchNorm(4), bpcore.layers.Dense(4, 2)], seed=0
    )
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    expected = network.forward(x)
    network.to("cuda")
    on_gpu = network.backend.to_numpy(network.forward(x))
    np.testing.assert_allclose(on_gpu, expected, rtol=1e-5, atol=1e-6)
    network.to("cpu")
    np.testing.assert_allclose(network.forward(x), expected, rtol=1e-6, atol=1e-7)
