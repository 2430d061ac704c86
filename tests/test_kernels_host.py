"""The CUDA kernels' arithmetic, run on the CPU and checked against the generic versions.

The same header and kernel bodies that NVRTC compiles for the GPU are built
here by the host C++ compiler into a shared library (``__host__`` /
``__device__`` / ``__global__`` defined away, kernel launches emulated one
thread after another), and driven through the very wrappers of
:mod:`bpcore.backends.kernels.cuda` that call them on a GPU.  So a kernel
that compiles but computes a wrong derivative, or a wrapper that passes its
arguments in the wrong order, fails here without any GPU.
"""

from __future__ import annotations

import ctypes
import functools
import math
import shutil
import subprocess
import warnings
from typing import Any

import kernel_codegen
import numpy as np
import pytest
from kernel_cases import CASES, LAYOUTS, compare, compare_layout, cuda_wrapper

from bpcore.backends.kernels import cuda
from bpcore.backends.kernels import cuda_sources as src
from bpcore.backends.ops import OPERATIONS

# Every operation declared with the short cuda= form (its CUDA wrapper can be built over any kernels).
CUDA_OPS = sorted(name for name, op in OPERATIONS.items() if op.cuda_wrapper is not None)
COMPILER = shutil.which("g++") or shutil.which("c++")
SCALAR_CTYPES = {"float64": ctypes.c_double, "int64": ctypes.c_longlong, "bool": ctypes.c_bool}


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    if COMPILER is None:
        pytest.skip("no host C++ compiler (g++) to build the CUDA kernels for the CPU")
    folder = tmp_path_factory.mktemp("host_kernels")
    return kernel_codegen.compile_host_library(kernel_codegen.host_program(), folder, "kernels", COMPILER)


_pointer = kernel_codegen.host_pointer


class HostElementwise:
    """An ElementwiseKernel with CuPy's calling convention, run by the host library."""

    def __init__(self, spec: src.Elementwise, library: ctypes.CDLL) -> None:
        self.spec = spec
        self.library = library
        self.params = kernel_codegen.elementwise_arguments(spec)

    def __call__(self, *args: Any) -> None:
        assert len(args) == len(self.params), (self.spec.name, len(args))
        pairs = list(zip(self.params, args, strict=True))
        dtype = next(np.asarray(a).dtype for (p, _), a in pairs if p.type == "T" and not p.raw)
        outputs = [a for (p, out), a in pairs if out and not p.raw]
        shape = np.broadcast_shapes(*(np.shape(a) for (p, _), a in pairs if p.is_array and not p.raw))
        c_args: list[Any] = []
        keep: list[np.ndarray] = []
        for (param, is_output), arg in pairs:
            if param.raw:
                c_args.append(_pointer(arg))
            elif param.is_array:
                if is_output or any(arg is o for o in outputs):
                    assert arg.shape == shape and arg.dtype == dtype
                    c_args.append(_pointer(arg))
                else:
                    wanted = np.int64 if param.type == "S" else dtype  # S: the integer index placeholder
                    array = np.ascontiguousarray(np.broadcast_to(np.asarray(arg, dtype=wanted), shape))
                    keep.append(array)
                    c_args.append(_pointer(array))
            else:
                c_args.append(SCALAR_CTYPES[param.type](arg))
        c_args.append(ctypes.c_longlong(math.prod(shape)))
        getattr(self.library, kernel_codegen.symbol(self.spec.name, dtype.name))(*c_args)


HostReduction = kernel_codegen.HostReduction
HostRawModule = kernel_codegen.HostRawModule


@pytest.fixture(scope="module")
def host_kernels(library: ctypes.CDLL) -> Any:
    def kernels(kernel_name: str) -> Any:
        if kernel_name == "raw":
            return HostRawModule(library)
        if kernel_name in src.REDUCTIONS:
            return HostReduction(src.REDUCTIONS[kernel_name], library)
        return HostElementwise(src.ELEMENTWISE[kernel_name], library)

    return kernels


def test_every_cuda_kernel_has_cases() -> None:
    assert set(CUDA_OPS) <= set(CASES), sorted(set(CUDA_OPS) - set(CASES))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", CUDA_OPS)
def test_cuda_kernel_arithmetic_matches_generic(name: str, dtype: type, host_kernels: Any) -> None:
    implementation = cuda_wrapper(name, host_kernels)
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    for _label, make in CASES[name]:
        for edge in (False, True):
            compare(name, implementation, make(rng, dtype, 41, edge))


def test_a_kernel_with_a_wrong_derivative_fails(host_kernels: Any, tmp_path: Any) -> None:
    args = CASES["sigmoid_backward"][0][1](np.random.default_rng(3), np.float64, 20, False)
    compare("sigmoid_backward", cuda_wrapper("sigmoid_backward", host_kernels), args)

    # The same kernel with y * (1 + y) for y * (1 - y): it compiles, and must be caught.
    wrong = src.Elementwise("bp_sigmoid_backward", "T gy, T s", "T gx", "gx = gy * s * (T(1) + s)")
    source = tmp_path / "wrong.cpp"
    source.write_text(
        kernel_codegen.HOST_EMULATION
        + src.header_source()
        + kernel_codegen.LOOP_MACROS
        + kernel_codegen.elementwise_unit(wrong, "float64")
    )
    target = tmp_path / "wrong.so"
    subprocess.run([COMPILER, "-O1", "-shared", "-fPIC", "-o", str(target), str(source)], check=True)
    wrong_library = ctypes.CDLL(str(target))
    implementation = cuda_wrapper("sigmoid_backward", lambda _: HostElementwise(wrong, wrong_library))
    with pytest.raises(AssertionError, match="differs from the generic version"):
        compare("sigmoid_backward", implementation, args)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_cuda_optimiser_state_subnormals_are_flushed(dtype: type, host_kernels: Any) -> None:
    tiny = np.finfo(dtype).tiny
    n = 32
    param, grad = np.ones(n, dtype), np.zeros(n, dtype)
    m, v = np.full(n, tiny * 0.5, dtype), np.full(n, tiny * 0.9, dtype)
    cuda_wrapper("adam_step", host_kernels)(
        param, grad, m, v, np.empty(0, dtype), 1e-3, 0.9, 0.999, 1e-8, 0.0, 2, False, False
    )
    assert np.all(m == 0) and np.all(v == 0)
    np.testing.assert_array_equal(param, np.ones(n, dtype))


def _uses_raw_module(name: str) -> bool:
    asked: list[str] = []

    def record(kernel_name: str) -> Any:
        asked.append(kernel_name)
        return HostRawModule(None)  # type: ignore[arg-type]

    cuda_wrapper(name, record)
    return "raw" in asked


RAW_OPS = [name for name in CUDA_OPS if _uses_raw_module(name)]


def test_the_row_and_column_operations_are_found() -> None:
    assert set(RAW_OPS) == {
        "softmax_cross_entropy_forward",
        "softmax_cross_entropy_index_forward",
        "batchnorm_forward_train",
        "batchnorm_backward",
    }


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", RAW_OPS)
def test_raw_kernel_wrappers_take_any_memory_layout(
    name: str, dtype: type, layout: str, host_kernels: Any
) -> None:
    # The raw kernels index flat C-order memory (the host launcher asserts it):
    # other layouts must go through the shared guard, never reach the kernel.
    implementation = cuda_wrapper(name, host_kernels)
    rng = np.random.default_rng(11)
    for _label, make in CASES[name]:
        compare_layout(name, implementation, make(rng, dtype, 23, False), layout)


@pytest.mark.parametrize("name", RAW_OPS)
def test_raw_kernels_refuse_other_dtypes_with_a_clear_error(name: str, host_kernels: Any) -> None:
    implementation = cuda_wrapper(name, host_kernels)
    args = CASES[name][0][1](np.random.default_rng(0), np.float32, 8, False)
    with np.errstate(over="ignore"):  # the outputs hold uninitialised memory
        half = [
            a.astype(np.float16) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a for a in args
        ]
    with pytest.raises(TypeError, match="expected float32 or float64 arrays, got dtype float16"):
        implementation(*half)
    mixed = list(args)
    position = next(i for i, a in enumerate(args) if isinstance(a, np.ndarray) and a.ndim == 2 and i > 0)
    mixed[position] = args[position].astype(np.float64)
    with pytest.raises(TypeError, match="must have the dtype of the first"):
        implementation(*mixed)


def test_raw_kernel_functions_are_fetched_once_per_dtype(host_kernels: Any) -> None:
    fetched: list[str] = []

    class Counting(HostRawModule):
        def get_function(self, expression: str) -> Any:
            fetched.append(expression)
            return super().get_function(expression)

    module = Counting(host_kernels("raw").library)
    implementation = cuda_wrapper(
        "batchnorm_forward_train", lambda name: module if name == "raw" else host_kernels(name)
    )
    rng = np.random.default_rng(2)
    for dtype in (np.float32, np.float32, np.float64, np.float32, np.float64):
        implementation(*CASES["batchnorm_forward_train"][0][1](rng, dtype, 8, False))
    passes = (
        "bp_batchnorm_forward_train_partial",
        "bp_batchnorm_forward_train_stats",
        "bp_batchnorm_forward_train_apply",
    )
    expected = [f"{kernel}<{ctype}>" for kernel in passes for ctype in ("float", "double")]
    assert sorted(fetched) == sorted(expected)


@pytest.mark.parametrize("n", [2, 3, 7, 8, 9, 41, 1000, 1024, 100_000])
@pytest.mark.parametrize("f", [1, 16, 256, 4096])
def test_batchnorm_row_chunks_cover_every_row_once(n: int, f: int) -> None:
    chunk, chunks = cuda.row_chunks(n, f)
    assert chunk >= 1 and chunks >= 1 and (chunks - 1) * chunk < n <= chunks * chunk
    assert chunks * f <= max(cuda.COLUMN_SUM_THREADS, f)


def test_batchnorm_launches_spread_the_column_sums_over_many_threads(host_kernels: Any) -> None:
    grids: dict[str, int] = {}

    class Recording(HostRawModule):
        def get_function(self, expression: str) -> Any:
            launch = super().get_function(expression)

            def recorded(grid: tuple[int], block: tuple[int], args: tuple[Any, ...]) -> None:
                grids[expression.split("<")[0]] = grid[0] * block[0]
                launch(grid, block, args)

            return recorded

    module = Recording(host_kernels("raw").library)
    for name in ("batchnorm_forward_train", "batchnorm_backward"):
        args = CASES[name][0][1](np.random.default_rng(0), np.float32, 1024, False)
        f = args[0].shape[1]
        kernels = lambda k: module if k == "raw" else host_kernels(k)  # noqa: E731
        compare(name, cuda_wrapper(name, kernels), args)
    # f = 16 features: one thread per column would be 16 threads.
    assert (
        grids["bp_batchnorm_forward_train_partial"] >= 32 * f
        and grids["bp_batchnorm_backward_partial"] >= 32 * f
    )
    assert (
        grids["bp_batchnorm_forward_train_apply"] >= 1024 * f
        and grids["bp_batchnorm_backward_apply"] >= 1024 * f
    )


# 1 - float32(0.9999) is 1.7e-4 off 1e-4: a complement taken after rounding shows at once.
COMPLEMENT_CASES = {
    "sgd_step": lambda p, g, z: ([p, g, z.copy(), 0.1, 0.5, 0.9999, 0.0, False, False], 2, 0.9999),
    "rmsprop_step": lambda p, g, z: (
        [p, g, z.copy(), z[:0], z[:0], 0.1, 0.9999, 1e-8, 0.0, 0.0, False],
        2,
        0.9999,
    ),
    "adam_step": lambda p, g, z: (
        [p, g, z.copy(), z.copy(), z[:0], 1e-3, 0.9999, 0.9999, 1e-8, 0.0, 1, False, False],
        3,
        0.9999,
    ),
}


@pytest.mark.parametrize("implementation", ["generic", "numba", "cuda"])
@pytest.mark.parametrize("name", sorted(COMPLEMENT_CASES))
def test_optimiser_complements_are_rounded_once_from_double(
    name: str, implementation: str, request: pytest.FixtureRequest
) -> None:
    # torch takes 1 - dampening, 1 - alpha and 1 - beta in double and rounds
    # the result once; from zero state the first state value is exactly
    # float32(1 - beta) * g (or * g * g), so each version must match it bit for bit.
    dtype = np.float32
    rng = np.random.default_rng(3)
    g = rng.normal(size=64).astype(dtype)
    p = rng.normal(size=64).astype(dtype)
    args, state, factor = COMPLEMENT_CASES[name](p, g, np.zeros(64, dtype))
    if implementation == "generic":
        OPERATIONS[name].generic(np, *args)
    elif implementation == "numba":
        pytest.importorskip("numba")
        OPERATIONS[name].cpu()(*args)
    else:
        cuda_wrapper(name, request.getfixturevalue("host_kernels"))(*args)
    squared = name != "sgd_step"
    expected = dtype(1.0 - factor) * (g * g if squared else g)
    np.testing.assert_array_equal(args[state], expected)


# ReLU's and ELU's backward from the output, as torch's threshold_backward / elu_backward:
# where the output is <= 0 the gradient is 0 (ReLU; even a NaN gradient) or gy * (y + alpha)
# (ELU), and a NaN output passes gy on.  Columns: off, zero, on, NaN output, and the off / on
# units again under a NaN gradient.
NAN = np.nan
RELU_Y, RELU_GY = [0.0, 0.0, 2.0, NAN, 0.0, 3.0], [5.0, 5.0, 5.0, 5.0, NAN, NAN]
RELU_GX = [0.0, 0.0, 5.0, 5.0, 0.0, NAN]
ELU_Y = [-0.5, 0.0, 2.0, NAN, -0.5, 3.0]
ELU_GX = [5.0 * 0.8, 5.0 * 1.3, 5.0, 5.0, NAN, NAN]


def _relu_case(name: str, y: np.ndarray, gy: np.ndarray) -> tuple[list[Any], int, Any]:
    """The arguments of operation ``name`` on one row, the index of its output, and how to read it."""
    dtype, width = gy.dtype, gy.size
    row, image = (1, width), (1, 1, 1, width)
    if name in ("relu_backward", "elu_backward"):
        extra = [1.3] if name == "elu_backward" else []
        return [gy, y, np.empty_like(gy), *extra], 2, np.ravel
    if name == "relu_bias_backward":
        return [gy.reshape(row), y.reshape(row), np.empty(row, dtype), np.empty(width, dtype)], 2, np.ravel
    if name == "rnn_cell_backward":
        dh_rec, dh = np.zeros(row, dtype), np.zeros(row, dtype)
        args = [gy.reshape(row), dh_rec, dh, y.reshape(row), np.ones(1, dtype), True, np.empty(row, dtype)]
        return args, 6, np.ravel
    if name == "images_to_channels":
        flags = [True, False, False]  # relu, with_bias, accumulate
        args = [gy.reshape(image), y.reshape(image), np.empty(row, dtype), np.empty(1, dtype), *flags]
        return args, 2, np.ravel
    # pooled_to_channels: one 2x2 window per value, its argmax at the window's first cell
    args = [gy.reshape(image), y.reshape(image), np.zeros(image, np.int8), np.empty((1, 4 * width), dtype)]

    def first_cells(g: np.ndarray) -> np.ndarray:
        return g.reshape(2, width, 2)[0, :, 0]

    return [*args, np.empty(1, dtype), False, False], 3, first_cells


RELU_OPERATIONS = ["relu_backward", "elu_backward", "relu_bias_backward", "rnn_cell_backward"]
RELU_OPERATIONS += ["images_to_channels", "pooled_to_channels"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("implementation", ["generic", "numba", "cuda"])
@pytest.mark.parametrize("name", RELU_OPERATIONS)
def test_relu_backward_at_nan_follows_torch(
    name: str, implementation: str, dtype: type, request: pytest.FixtureRequest
) -> None:
    elu = name == "elu_backward"
    y, gy = np.asarray(ELU_Y if elu else RELU_Y, dtype), np.asarray(RELU_GY, dtype)
    args, output, read = _relu_case(name, y, gy)
    if implementation == "generic":
        OPERATIONS[name].generic(np, *args)
    elif implementation == "numba":
        pytest.importorskip("numba")
        OPERATIONS[name].cpu()(*args)
    elif OPERATIONS[name].cuda_wrapper is None:
        pytest.skip(f"{name} has no CUDA kernel (the GPU runs its generic version)")
    else:
        cuda_wrapper(name, request.getfixturevalue("host_kernels"))(*args)
    np.testing.assert_allclose(read(args[output]), np.asarray(ELU_GX if elu else RELU_GX, dtype), rtol=1e-6)


class _NeverLaunched:
    """A kernel provider whose kernels fail the test if a wrapper builds or launches one."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self

    def raw(self, *args: Any) -> Any:
        return self

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a kernel was used ({name})")


def _empty_case(name: str, dtype: type) -> list[Any]:
    n, k = (0, 4) if name == "batchnorm_forward_train" else (3, 0)
    if name == "batchnorm_forward_train":
        f = np.zeros(k, dtype)
        return [np.zeros((n, k), dtype), f + 1, f.copy(), f.copy(), f + 1, 0.1, 1e-5,
                np.empty((n, k), dtype), np.empty((n, k), dtype), np.empty(k, dtype)]
    target = np.zeros(n, np.int64) if name.endswith("index_forward") else np.zeros((n, k), dtype)
    return [np.zeros((n, k), dtype), target, np.empty((n, k), dtype), np.empty(n, dtype)]


ROW_READING_OPERATIONS = ["softmax_cross_entropy_forward", "softmax_cross_entropy_index_forward"]
ROW_READING_OPERATIONS += ["batchnorm_forward_train"]


@pytest.mark.parametrize("name", ROW_READING_OPERATIONS)
def test_cuda_wrappers_give_rows_without_values_to_the_generic_version(name: str) -> None:
    # Zero classes, or an empty batch: the raw kernels read a row's (column's) first value, and a
    # 0-byte CuPy array's pointer is null, so the wrapper must not launch them (the kernel below
    # fails the test if it is touched); the generic version answers as it does on the CPU.
    wrapper = cuda_wrapper(name, lambda kernel_name: _NeverLaunched())
    generic = functools.partial(OPERATIONS[name].generic, np)
    outcomes = [_outcome(run, _empty_case(name, np.float64)) for run in (wrapper, generic)]
    assert outcomes[0][0] == outcomes[1][0]
    for got, expected in zip(outcomes[0][1], outcomes[1][1], strict=True):
        np.testing.assert_array_equal(got, expected)


def _outcome(run: Any, args: list[Any]) -> tuple[str, list[np.ndarray]]:
    """What ``run(*args)`` did (the exception's type, or the arrays it left), warnings silenced."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            run(*args)
    except (ValueError, ZeroDivisionError) as exc:
        return type(exc).__name__, []
    return "returned", [a.copy() for a in args if isinstance(a, np.ndarray)]
