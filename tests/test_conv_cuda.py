"""The convolution's and max pooling's CUDA wrappers driving a CNN, without a GPU.

The kernels' arithmetic (host-compiled, against the generic versions) and
their compilation by NVRTC from CuPy's own generated source are checked with
every other registry operation's, from the cases in ``kernel_cases``
(test_kernels_host.py, test_cuda_codegen.py).  Here: a CNN built on a
CuPy-shaped backend whose conv and pooling operations are the CUDA wrappers
over the host-compiled kernels trains to the same numbers as on NumPy, and
the kernels' source keeps to 64-bit indices and CuPy's reserved names.
"""

from __future__ import annotations

import ctypes
import shutil
from typing import Any

import kernel_codegen
import numpy as np
import pytest
from kernel_cases import cuda_wrapper

from bpcore.backends.kernels import conv_cuda
from bpcore.backends.kernels import cuda_sources as src

OPERATION_NAMES = ["im2col", "col2im", "channels_to_images", "images_to_channels", "max_pool2d_forward",
                   "max_pool2d_backward"]
COMPILER = shutil.which("g++") or shutil.which("c++")
SCALARS = {"int64": ctypes.c_longlong, "bool": ctypes.c_bool, "float64": ctypes.c_double}
KERNELS = {spec.name: spec for spec in conv_cuda.CONV_KERNELS}


def test_every_operation_has_its_kernel_by_the_naming_rule() -> None:
    assert set(KERNELS) == {f"bp_{name}" for name in OPERATION_NAMES}
    assert all(src.ELEMENTWISE[name] is spec for name, spec in KERNELS.items())


# --- arithmetic on the host ----------------------------------------------------------------------
class HostKernel:
    """One of the CUDA kernels, host-compiled, with CuPy's calling convention (outputs C-contiguous)."""

    def __init__(self, spec: src.Elementwise, library: ctypes.CDLL) -> None:
        self.spec, self.library = spec, library
        self.params = kernel_codegen.elementwise_arguments(spec)

    def __call__(self, *args: Any) -> None:
        assert len(args) == len(self.params), self.spec.name
        c_args: list[Any] = []
        size, dtype = None, None
        for (param, _is_output), arg in zip(self.params, args, strict=True):
            if param.is_array:
                assert arg.flags.c_contiguous, (self.spec.name, param.name)
                c_args.append(ctypes.c_void_p(arg.ctypes.data))
                if not param.raw:
                    size = arg.size if size is None else size
                    assert arg.size == size
                if param.type == "T":
                    dtype = arg.dtype
            else:
                c_args.append(SCALARS[param.type](arg))
        assert size is not None and dtype is not None
        c_args.append(ctypes.c_longlong(size))
        getattr(self.library, kernel_codegen.symbol(self.spec.name, dtype.name))(*c_args)


@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if COMPILER is None:
        pytest.skip("no host C++ compiler (g++) to build the CUDA kernels for the CPU")
    folder = tmp_path_factory.mktemp("conv_host_kernels")
    library = kernel_codegen.compile_host_library(kernel_codegen.elementwise_program(list(KERNELS.values())),
                                                  folder, "conv", COMPILER)
    return lambda kernel_name: HostKernel(KERNELS[kernel_name], library)


# --- the layers on a CuPy-shaped backend ----------------------------------------------------------
def test_a_cnn_runs_on_the_cuda_wrappers(host_kernels: Any) -> None:
    """Conv2D + ReLU + MaxPool2D with every conv and pooling operation resolved to the CUDA wrappers."""
    import bpcore
    from bpcore.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU, Tanh

    def layers() -> list[Any]:
        return [Conv2D(2, 4, 3, padding=1), ReLU(), MaxPool2D(2),
                Conv2D(4, 3, (2, 3), stride=(1, 2), dilation=2), Tanh(), Flatten(), Dense(9, 2)]

    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 10, 12))  # pooled to 5x6, then 3x1 after the second conv
    reference = bpcore.Network(layers(), dtype="float64", seed=4)
    network = bpcore.Network(layers(), dtype="float64", seed=4)
    wrappers = {name: cuda_wrapper(name, host_kernels) for name in OPERATION_NAMES}
    for layer in network.walk():
        layer.backend = _BackendWith(layer.backend, _Proxy(layer.backend.ops, wrappers))  # type: ignore[assignment]
    # The layers take the GPU's path (the batch in one pass, the swap and the pool as their own kernels).
    assert network.layers[0].backend.device.is_cuda and network.layers[0].pool is not None
    out, expected = network.forward(x, training=True), reference.forward(x, training=True)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    gy = rng.standard_normal(out.shape)
    np.testing.assert_allclose(network.backward(gy), reference.backward(gy), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(network.store.grad, reference.store.grad, rtol=1e-11, atol=1e-12)


class _Proxy:
    """A backend's operation table with some operations replaced."""

    def __init__(self, table: Any, replaced: dict[str, Any]) -> None:
        self._table, self._replaced = table, replaced

    def __getattr__(self, name: str) -> Any:
        return self._replaced.get(name) or getattr(self._table, name)


class _CudaLike:
    """A device that says it is a GPU, so that the layers take the GPU's code path; else the original."""

    is_cuda = True

    def __init__(self, device: Any) -> None:
        self._device = device

    def __getattr__(self, name: str) -> Any:
        return getattr(self._device, name)


class _BackendWith:
    """A backend whose ``ops`` is a :class:`_Proxy` and whose device says it is a GPU; else the original's."""

    def __init__(self, backend: Any, ops: _Proxy) -> None:
        self._backend, self.ops = backend, ops
        self.device = _CudaLike(backend.device)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


def test_indices_are_64_bit_and_no_parameter_takes_a_name_cupy_reserves() -> None:
    # 2**31 elements and beyond: every integer in the bodies and parameters is 64-bit.  CuPy reserves
    # ``i`` (the element index), ``n`` and names starting with an underscore.
    for spec in KERNELS.values():
        assert "int " not in spec.body and "int32" not in spec.in_params + spec.out_params, spec.name
        names = [p.name for p in src.parse_params(spec.in_params) + src.parse_params(spec.out_params)]
        assert not {"i", "n"} & set(names) and not any(name.startswith("_") for name in names), spec.name
