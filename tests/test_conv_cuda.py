"""The convolution's and max pooling's CUDA kernels, without a GPU.

* Their arithmetic: the same kernel bodies, compiled by the host C++
  compiler (launches emulated one element after another), driven through the
  very wrappers the CUDA backend runs (:func:`conv_cuda.make_cuda`) and
  compared with the generic versions: odd sizes, strides, paddings,
  dilations, both dtypes.
* Their compilation: the wrappers launch CuPy's real ``ElementwiseKernel``
  objects, CuPy's own generator writes the source it would hand to NVRTC,
  and NVRTC compiles it for sm_80 and sm_90 (``cupy_codegen``).
* The layers on the CuPy path: a CNN built on a CuPy-shaped backend whose
  kernels are these wrappers (host-compiled) trains to the same numbers as
  on NumPy.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import shutil
import subprocess
from typing import Any

import cupy_codegen as cg
import kernel_codegen
import numpy as np
import pytest

from bpcore.backends.kernels import conv_cuda
from bpcore.backends.kernels import cuda_sources as src
from bpcore.backends.ops import OPERATIONS

OPERATION_NAMES = ["im2col", "col2im", "channels_to_images", "images_to_channels", "max_pool2d_forward",
                   "max_pool2d_backward"]
COMPILER = shutil.which("g++") or shutil.which("c++")
SCALARS = {"int64": ctypes.c_longlong, "bool": ctypes.c_bool, "float64": ctypes.c_double}
# (N, C, H, W), kernel, stride, dilation, (top, left), output size
WINDOWS = [
    ((2, 3, 7, 6), (3, 3), (1, 1), (1, 1), (1, 1), (7, 6)),
    ((1, 2, 5, 9), (2, 3), (2, 1), (1, 2), (0, 2), (2, 9)),
    ((3, 1, 6, 6), (3, 2), (2, 3), (2, 1), (2, 0), (3, 2)),
    ((2, 2, 4, 5), (2, 2), (1, 1), (1, 1), (0, 0), (4, 5)),
]
POOLS = [((2, 3, 6, 8), (2, 2), (2, 2)), ((1, 2, 7, 5), (3, 2), (1, 2)), ((2, 1, 5, 5), (3, 3), (2, 2))]


def test_every_operation_declares_these_kernels() -> None:
    built_once = conv_cuda.cuda_conv_kernel.__self__  # type: ignore[attr-defined]
    for name in OPERATION_NAMES:
        builder = OPERATIONS[name].cuda
        assert getattr(builder, "func", None) is built_once and builder.args == (name,), name  # type: ignore[union-attr]


def _cases(name: str, dtype: Any) -> list[list[Any]]:
    """Arguments for operation ``name``, outputs pre-filled with NaN (every element must be written)."""
    rng = np.random.default_rng(len(name))
    cases: list[list[Any]] = []
    if name in ("im2col", "col2im"):
        for shape, kernel, stride, dilation, start, out_hw in WINDOWS:
            window = (*kernel, *stride, *dilation, *start, *out_hw)
            rows, columns = shape[1] * kernel[0] * kernel[1], shape[0] * out_hw[0] * out_hw[1]
            if name == "im2col":
                cases.append([rng.standard_normal(shape).astype(dtype), *window,
                              np.full((rows, columns), np.nan, dtype)])
            else:
                cases.append([rng.standard_normal((rows, columns)).astype(dtype), *window,
                              np.full(shape, np.nan, dtype)])
        return cases
    n, o, oh, ow = 3, 5, 4, 7
    if name == "channels_to_images":
        for relu in (False, True):
            cases.append([rng.standard_normal((o, n * oh * ow)).astype(dtype),
                          rng.standard_normal(o).astype(dtype), np.full((n, o, oh, ow), np.nan, dtype), relu])
        return cases
    if name == "images_to_channels":
        for relu, with_bias, accumulate in ((False, True, False), (True, True, True), (True, False, False)):
            cases.append([rng.standard_normal((n, o, oh, ow)).astype(dtype),
                          rng.standard_normal((n, o, oh, ow)).astype(dtype),
                          np.full((o, n * oh * ow), np.nan, dtype), np.full(o, 0.5, dtype),
                          relu, with_bias, accumulate])
        return cases
    for shape, kernel, stride in POOLS:
        out_shape = (shape[0], shape[1], (shape[2] - kernel[0]) // stride[0] + 1,
                     (shape[3] - kernel[1]) // stride[1] + 1)
        image = rng.standard_normal(shape).astype(dtype)
        image[0, 0, :2, :2] = 1.0  # a tie: the first position wins
        if name == "max_pool2d_forward":
            cases.append([image, *kernel, *stride, np.full(out_shape, np.nan, dtype),
                          np.full(out_shape, -1, np.int64)])
        else:
            index = rng.integers(0, kernel[0] * kernel[1], out_shape).astype(np.int64)
            cases.append([rng.standard_normal(out_shape).astype(dtype), index, *kernel, *stride,
                          np.full(shape, np.nan, dtype)])
    return cases


def _copies(args: list[Any]) -> list[Any]:
    return [a.copy() if isinstance(a, np.ndarray) else a for a in args]


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
    units = [kernel_codegen.elementwise_unit(spec, dtype) for spec in conv_cuda.CUDA_SOURCES.values()
             for dtype in kernel_codegen.CTYPES]
    source = folder / "conv.cpp"
    source.write_text(kernel_codegen.HOST_EMULATION + src.header_source() + kernel_codegen.LOOP_MACROS
                      + "\n".join(units))
    target = folder / "conv.so"
    command = [COMPILER, "-O1", "-std=c++17", "-shared", "-fPIC", "-o", str(target), str(source)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    library = ctypes.CDLL(str(target))
    return lambda kernel_name: HostKernel(conv_cuda.CUDA_SOURCES[kernel_name], library)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", OPERATION_NAMES)
def test_cuda_kernel_arithmetic_matches_generic(name: str, dtype: type, host_kernels: Any) -> None:
    implementation = conv_cuda.make_cuda(name, host_kernels, np)
    generic = functools.partial(OPERATIONS[name].generic, np)
    tolerance = 1e-6 if dtype == np.float32 else 1e-13
    for args in _cases(name, dtype):
        expected, got = _copies(args), _copies(args)
        generic(*expected)
        implementation(*got)
        for want, have in zip(expected, got, strict=True):
            if isinstance(want, np.ndarray):
                assert not np.isnan(have).any() and not (have == -1).all(), name
                np.testing.assert_allclose(have, want, rtol=tolerance, atol=tolerance)


# --- compilation by NVRTC, from CuPy's own generated source ---------------------------------------
@pytest.mark.slow
def test_cupy_generated_source_compiles_with_nvrtc(tmp_path: Any) -> None:
    reason = cg.unavailable()
    if reason is not None:
        pytest.skip(f"CuPy's code generation cannot be checked: {reason}")
    recorder = cg.Recorder()

    def kernels(kernel_name: str) -> Any:
        return cg.ElementwiseCall(conv_cuda.cupy_kernel(kernel_name), recorder)

    for name in OPERATION_NAMES:
        implementation = conv_cuda.make_cuda(name, kernels, np)
        for dtype in (np.float32, np.float64):
            for args in _cases(name, dtype)[:1]:
                implementation(*args)
    programs = list(recorder.programs.values())
    assert {p.kernel for p in programs} == set(conv_cuda.CUDA_SOURCES)
    compiled = cg.compile_programs(programs, cache_dir=str(tmp_path))
    for program in programs:
        for arch in cg.ARCHITECTURES:
            result = compiled[program.key, arch]
            assert result.ok, f"{program.kernel} fails for sm_{arch}:\n{result.log}"
            assert result.binary_size > 0


def test_a_wrong_kernel_body_fails_to_compile(tmp_path: Any) -> None:
    reason = cg.unavailable()
    if reason is not None:
        pytest.skip(f"CuPy's code generation cannot be checked: {reason}")
    import cupy

    recorder = cg.Recorder()
    spec = conv_cuda.CUDA_SOURCES["bpcore_channels_to_images"]
    body = spec.body.replace("bias[ch]", "bias[chn]")
    broken = cupy.ElementwiseKernel(spec.in_params, spec.out_params, body, spec.name,
                                    options=src.NVRTC_OPTIONS)
    implementation = conv_cuda.make_cuda("channels_to_images", lambda _: cg.ElementwiseCall(broken, recorder),
                                         np)
    implementation(*_cases("channels_to_images", np.float32)[0])
    (program,) = recorder.programs.values()
    result = cg.compile_programs([program], ("90",), cache_dir=str(tmp_path))[program.key, "90"]
    assert not result.ok and "chn" in result.log


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
    wrappers = {name: conv_cuda.make_cuda(name, host_kernels, np) for name in OPERATION_NAMES}
    for layer in network.walk():
        layer.backend = _BackendWith(layer.backend, _Proxy(layer.backend.ops, wrappers))  # type: ignore[assignment]
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


class _BackendWith:
    """A backend whose ``ops`` is a :class:`_Proxy`; everything else is the original's."""

    def __init__(self, backend: Any, ops: _Proxy) -> None:
        self._backend, self.ops = backend, ops

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


def test_indices_are_64_bit_and_no_parameter_takes_a_name_cupy_reserves() -> None:
    # 2**31 elements and beyond: every integer in the bodies and parameters is 64-bit.  CuPy reserves
    # ``i`` (the element index), ``n`` and names starting with an underscore.
    for spec in conv_cuda.CUDA_SOURCES.values():
        assert "int " not in spec.body and "int32" not in spec.in_params + spec.out_params, spec.name
        names = [p.name for p in src.parse_params(spec.in_params) + src.parse_params(spec.out_params)]
        assert not {"i", "n"} & set(names) and not any(name.startswith("_") for name in names), spec.name


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", OPERATION_NAMES)
def test_the_shared_kernel_cases_agree_on_every_implementation(
    name: str, dtype: type, host_kernels: Any
) -> None:
    """The cases the GPU check runs (kernel_cases): generic against the host-compiled CUDA and Numba."""
    from kernel_cases import CASES, compare

    implementations = [conv_cuda.make_cuda(name, host_kernels, np)]
    if importlib.util.find_spec("numba") is not None:
        implementations.append(OPERATIONS[name].cpu())  # type: ignore[misc]
    rng = np.random.default_rng(11)
    for _label, make in CASES[name]:
        for edge in (False, True):
            for implementation in implementations:
                compare(name, implementation, make(rng, dtype, 80, edge))
