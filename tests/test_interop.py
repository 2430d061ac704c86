"""bpcore.asarray and Network inputs from other array libraries (DLPack, CUDA array interface)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bpcore
from bpcore.backends import DeviceError
from bpcore.interop import asarray
from bpcore.layers import Dense, Tanh

gpu = pytest.mark.gpu  # skipped by conftest.py where no GPU is usable


class DLPackOnly:
    """An array from an unknown library that speaks only the DLPack protocol."""

    def __init__(self, array: np.ndarray, device: tuple[int, int] = (1, 0)) -> None:
        self._array = array
        self._device = device

    def __dlpack__(self, **kwargs):
        return self._array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._device


def network(dtype: str = "float32") -> bpcore.Network:
    return bpcore.Network([Dense(3, 4), Tanh(), Dense(4, 2)], dtype=dtype, seed=0, device="cpu")


def test_numpy_arrays_pass_through_without_a_copy():
    data = np.arange(6.0).reshape(2, 3)
    assert asarray(data) is data
    assert asarray(data, device="cpu") is data
    assert np.shares_memory(asarray(data, dtype="float64"), data)
    converted = asarray(data, dtype="float32")
    assert converted.dtype == np.float32 and not np.shares_memory(converted, data)


def test_dlpack_objects_are_imported_without_a_copy():
    data = np.random.default_rng(0).normal(size=(4, 3))
    imported = asarray(DLPackOnly(data))
    assert isinstance(imported, np.ndarray) and np.shares_memory(imported, data)
    data[0, 0] = 42.0
    assert imported[0, 0] == 42.0  # the same memory, not a snapshot


def test_lists_and_pandas_are_accepted():
    assert asarray([[1.0, 2.0]], dtype="float32").dtype == np.float32
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    assert np.array_equal(asarray(frame), frame.to_numpy())


def test_unusable_inputs_give_one_clear_error():
    with pytest.raises(TypeError, match="data: a DLPackOnly on DLPack device type 4 cannot be used"):
        asarray(DLPackOnly(np.ones(2), device=(4, 0)))
    with pytest.raises(TypeError, match="data: expected a numeric array, got list"):
        asarray([[1.0], [1.0, 2.0]])
    with pytest.raises(DeviceError, match="expected 'cpu', 'cuda', 'cuda:N' or 'auto', got 'tpu'"):
        asarray(np.ones(2), device="tpu")


def test_network_inputs_from_dlpack_share_memory_when_nothing_changes():
    net = network("float64")
    data = np.random.default_rng(1).normal(size=(5, 3))
    assert np.shares_memory(net.as_input(DLPackOnly(data)), data)
    assert np.array_equal(net.forward(DLPackOnly(data)), net.forward(data))
    assert not np.shares_memory(network("float32").as_input(DLPackOnly(data)), data)  # dtype changes: a copy


def test_network_inputs_from_dlpack_are_still_validated():
    with pytest.raises(ValueError, match=r"x: expected 3 features per sample, got shape \(5, 2\)"):
        network().forward(DLPackOnly(np.ones((5, 2))))
    with pytest.raises(TypeError, match="x: expected floating-point features, got dtype int64"):
        network().forward(DLPackOnly(np.ones((5, 3), dtype=np.int64)))
    with pytest.raises(ValueError, match="x: contains NaN or Inf"):
        network().forward(DLPackOnly(np.full((5, 3), np.nan)))


def test_torch_tensors_in_and_out_without_copies():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (optional cross-check)")
    tensor = torch.randn(5, 3, dtype=torch.float32)
    imported = asarray(tensor)
    assert isinstance(imported, np.ndarray) and imported.ctypes.data == tensor.data_ptr()
    net = network("float32")
    assert np.shares_memory(net.as_input(tensor), imported)
    out = net.forward(tensor)
    assert np.array_equal(out, net.forward(tensor.numpy()))
    handed_back = torch.from_dlpack(out)  # outputs go back the same way
    assert handed_back.data_ptr() == out.ctypes.data
    with pytest.raises(TypeError, match=r"x: could not share the memory of a Tensor through DLPack .*detach"):
        net.forward(tensor.requires_grad_())


@gpu
def test_cupy_and_cuda_tensors_stay_on_their_gpu():
    import cupy

    data = cupy.arange(6, dtype=cupy.float32).reshape(2, 3)
    assert asarray(data) is data
    assert asarray(data, device="cuda:0") is data
    on_cpu = asarray(data, device="cpu")
    assert isinstance(on_cpu, np.ndarray) and np.array_equal(on_cpu, data.get())
    moved = asarray(on_cpu, device="cuda")
    assert isinstance(moved, cupy.ndarray) and moved.device.id == 0

    class InterfaceOnly:
        def __init__(self, array):
            self.__cuda_array_interface__ = array.__cuda_array_interface__

    shared = asarray(InterfaceOnly(data))
    assert shared.data.ptr == data.data.ptr
    net = network("float32").to("cuda")
    assert net.as_input(data).data.ptr == data.data.ptr
    assert np.allclose(net.forward(data).get(), network("float32").forward(data.get()), rtol=1e-5, atol=1e-6)
    assert isinstance(network("float32").forward(data), np.ndarray)  # a GPU array into a CPU network: copied

    torch = pytest.importorskip("torch", reason="PyTorch is not installed (optional cross-check)")
    if not torch.cuda.is_available():
        pytest.skip("this PyTorch build has no CUDA")
    tensor = torch.randn(4, 3, device="cuda")
    imported = asarray(tensor)
    assert isinstance(imported, cupy.ndarray) and imported.data.ptr == tensor.data_ptr()
    assert torch.from_dlpack(imported).data_ptr() == tensor.data_ptr()
