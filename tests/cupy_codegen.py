"""CuPy's own code generation for bpcore's CUDA kernels, driven without a GPU, and compiled by NVRTC.

bpcore's wrappers (:attr:`Operation.cuda_wrapper <bpcore.backends.ops.registry.Operation>`)
are given :func:`provider`: it hands out the REAL CuPy kernel objects that
the CUDA backend builds (``cuda.cupy_kernel``), each behind an interceptor that
replaces only what needs a driver.  A call then runs

* the device-free front half of CuPy's call path, with CuPy's own pieces
  where they are reachable from Python: argument count, ``CScalar`` wrapping
  and ``apply_dtype`` (CuPy's scalar conversion), broadcasting and the output
  shape check, ``_decide_params_type`` (CuPy's parameter type decision), the
  dimension reduction of contiguous arrays, ``_ArgInfo`` for every argument;
* CuPy's own source generators: ``_get_elementwise_kernel_code``, the
  reduction's ``_ReductionKernel_get_cached_function_code`` and, for 128 or
  more elements, the CUB two-pass reduction of ``_cub_reduction`` (the path
  CuPy takes by default for a full reduction);
* CuPy's ``compile_with_cache``, which prepends CuPy's headers and assembles
  its NVRTC options; its last step (``_compile_module_with_cache``) is
  captured as a :class:`Program` instead of compiled on the spot.

:func:`compile_programs` then compiles every distinct program for an explicit
architecture through CuPy's own ``_compile_module_with_cache`` (NVRTC, CuPy's
disk cache, ``-ftz=true`` and the rest), with two driver calls replaced:
the architecture look-up (it asks the current device) and loading the cubin.

Raw (``RawModule``) launches are checked against the kernel's real signature
(the mangled name NVRTC reports, demangled): every argument must be a pointer
to the right element type or a scalar of exactly the parameter's C type, as
CuPy packs it (``CScalar``), since a wrong width there is silent on a GPU.

These are private CuPy functions: :data:`SUPPORTED_CUPY` pins the versions
whose source they were read from, and :func:`unavailable` says why the check
cannot run anywhere else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.metadata
import re
import shutil
import subprocess
import threading
import types
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from bpcore.backends.kernels import cuda_sources as src

SUPPORTED_CUPY = (14, 15)  # CuPy >= 14, < 15: the private functions below are read from 14.2's source
ARCHITECTURES = ("80", "90")
_ARG_KIND_NDARRAY, _ARG_KIND_INDEXER, _ARG_KIND_SCALAR, _ARG_KIND_POINTER = 1, 2, 3, 4
_INT32_LIMIT = 1 << 31


def unavailable() -> str | None:
    """Why CuPy's code generation cannot be checked here, or None if it can."""
    try:
        version = importlib.metadata.version("cupy-cuda13x")
    except importlib.metadata.PackageNotFoundError:
        try:
            version = importlib.metadata.version("cupy-cuda12x")
        except importlib.metadata.PackageNotFoundError:
            return "CuPy is not installed (pip install -e '.[test,nvrtc]')"
    major = int(version.split(".")[0])
    if not SUPPORTED_CUPY[0] <= major < SUPPORTED_CUPY[1]:
        return (
            f"CuPy {version} is outside the range whose private code generators this check drives "
            f"(>={SUPPORTED_CUPY[0]},<{SUPPORTED_CUPY[1]})"
        )
    try:
        from cupy._core import _cub_reduction, _kernel, _reduction, _scalar, core  # noqa: F401
        from cupy.cuda import compiler
        from cupy_backends.cuda.libs import nvrtc
    except ImportError as exc:
        return f"CuPy {version} cannot be imported ({exc})"
    try:
        nvrtc.getVersion()
    except Exception as exc:
        return f"NVRTC is not available ({exc}); pip install -e '.[test,nvrtc]'"
    try:
        from cuda.pathfinder import find_nvidia_header_directory

        headers = find_nvidia_header_directory("cudart")
    except Exception as exc:
        headers, why = None, f" ({exc})"
    else:
        why = ""
    if headers is None:
        return f"the CUDA runtime headers are not installed{why}; pip install -e '.[test,nvrtc]'"
    for owner, name in (
        (_kernel, "_get_elementwise_kernel_code"),
        (_kernel, "_ArgInfo"),
        (_reduction, "_ReductionKernel_get_cached_function_code"),
        (_cub_reduction, "_SimpleCubReductionKernel_get_cached_function"),
        (core, "compile_with_cache"),
        (compiler, "_compile_module_with_cache"),
        (compiler, "_get_arch_for_options_for_nvrtc"),
    ):
        if not hasattr(owner, name):
            return f"CuPy {version} has no {owner.__name__}.{name}"
    return None


@dataclasses.dataclass(frozen=True)
class Program:
    """One translation unit exactly as CuPy's ``compile_with_cache`` hands it to NVRTC."""

    kernel: str
    source: str
    options: tuple[str, ...]
    extra_source: str | None
    name_expressions: tuple[str, ...] | None = None
    path: str = ""  # which CuPy generator made it: elementwise, reduction, cub-pass1, cub-pass2, raw

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.source, self.options, self.name_expressions)


@dataclasses.dataclass(frozen=True)
class RawLaunch:
    """One launch of a RawModule kernel: the name expression and the arguments' C types as CuPy packs them."""

    expression: str
    grid: tuple[int, ...]
    block: tuple[int, ...]
    arguments: tuple[str, ...]


@dataclasses.dataclass
class Compiled:
    """The outcome of compiling one program for one architecture."""

    ok: bool
    log: str = ""
    lowered: dict[str, str] = dataclasses.field(default_factory=dict)
    binary_size: int = 0


class Recorder:
    """Collects the programs and raw launches that wrapper calls generate."""

    def __init__(self) -> None:
        self.programs: dict[tuple[Any, ...], Program] = {}
        self.raw_launches: list[RawLaunch] = []

    def add(self, program: Program) -> None:
        self.programs.setdefault(program.key, program)


# --- capturing compile_with_cache ------------------------------------------------------------------
_patch_lock = threading.RLock()


@contextlib.contextmanager
def _capturing(sink: list[dict[str, Any]]) -> Iterator[None]:
    """Inside the block, CuPy's ``compile_with_cache`` records its final call instead of compiling."""
    from cupy.cuda import compiler, function

    class Captured(function.Module):  # type: ignore[misc]
        def get_function(self, name: str) -> Any:
            # An empty Function object: CuPy's generators only return it.
            return function.Function.__new__(function.Function)

    def capture(source: str, options: tuple[str, ...] = (), **kwargs: Any) -> Any:
        sink.append({"source": source, "options": tuple(options), **kwargs})
        return Captured()

    with _patch_lock:
        original = compiler._compile_module_with_cache
        compiler._compile_module_with_cache = capture
        try:
            yield
        finally:
            compiler._compile_module_with_cache = original


def _capture_compile(kernel: str, path: str, make: Callable[[], Any]) -> Program:
    sink: list[dict[str, Any]] = []
    with _capturing(sink):
        make()
    assert len(sink) == 1, f"{kernel}: expected one compilation, CuPy asked for {len(sink)}"
    call = sink[0]
    expressions = call.get("name_expressions")
    return Program(
        kernel=kernel,
        source=call["source"],
        options=call["options"],
        extra_source=call.get("extra_source"),
        name_expressions=tuple(expressions) if expressions else None,
        path=path,
    )


# --- the device-free front half of the call path ---------------------------------------------------
def _is_array(arg: Any) -> bool:
    return isinstance(arg, np.ndarray)


def _index_32_bits(array: np.ndarray) -> bool:
    base = array.base if isinstance(array.base, np.ndarray) else array
    return max(base.nbytes, array.size * array.itemsize) <= _INT32_LIMIT


def _array_info(array: np.ndarray, ndim: int | None = None, contiguous: bool | None = None) -> Any:
    import cupy
    from cupy._core import _kernel

    return _kernel._ArgInfo(
        _ARG_KIND_NDARRAY,
        cupy.ndarray,
        array.dtype,
        array.ndim if ndim is None else ndim,
        bool(array.flags.c_contiguous) if contiguous is None else contiguous,
        _index_32_bits(array),
    )


def _scalar_info(scalar: Any) -> Any:
    from cupy._core import _kernel, _scalar

    return _kernel._ArgInfo(_ARG_KIND_SCALAR, _scalar.CScalar, scalar.dtype, 0, True, True)


def _indexer_info(shape: tuple[int, ...]) -> Any:
    from cupy._core import _carray, _kernel

    size = int(np.prod(shape, dtype=np.int64))
    return _kernel._ArgInfo(_ARG_KIND_INDEXER, _carray.Indexer, None, len(shape), True, size <= _INT32_LIMIT)


def _pointer_info() -> Any:
    from cupy._core import _kernel
    from cupy.cuda import memory

    return _kernel._ArgInfo(_ARG_KIND_POINTER, memory.MemoryPointer, None, 0, True, True)


class ElementwiseCall:
    """A ``cupy.ElementwiseKernel`` whose launch generates CuPy's source instead of running it."""

    def __init__(self, kernel: Any, recorder: Recorder) -> None:
        self.kernel = kernel
        self.recorder = recorder

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        from cupy._core import _kernel, _scalar, core

        kernel = self.kernel
        if kwargs:
            raise TypeError(f"Wrong arguments {kwargs}")  # bpcore passes no size/stream/block_size
        if len(args) not in (kernel.nin, kernel.nargs):
            raise TypeError(
                f"Wrong number of arguments for {kernel.name!r}: expected {kernel.nin} or "
                f"{kernel.nargs}, got {len(args)}"
            )
        if len(args) != kernel.nargs:
            raise AssertionError(f"{kernel.name}: bpcore always passes its outputs")
        params = kernel.params  # inputs, outputs, then the indexer
        wrapped = [a if _is_array(a) else _scalar.CScalar(a) for a in args]
        non_raw = [a for p, a in zip(params, wrapped, strict=False) if _is_array(a) and not p.raw]
        if not non_raw:
            raise ValueError("Loop size is undecided.")
        shape = np.broadcast_shapes(*(a.shape for a in non_raw))
        in_args = [
            np.broadcast_to(a, shape) if _is_array(a) and not p.raw else a
            for p, a in zip(params[: kernel.nin], wrapped[: kernel.nin], strict=True)
        ]
        out_args = wrapped[kernel.nin :]
        in_types = tuple(a.dtype if _is_array(a) else None for a in in_args)
        out_types = tuple(a.dtype if _is_array(a) else None for a in out_args)
        decided_in, _decided_out, type_map = kernel._decide_params_type(in_types, out_types)
        for p, a in zip(params[kernel.nin : kernel.nargs], out_args, strict=True):
            if not _is_array(a):
                raise TypeError("Output arguments type must be cupy.ndarray")
            if not p.raw and a.shape != shape:
                raise ValueError("Out shape is mismatched")
        if 0 in shape:
            return
        for a, t in zip(in_args, decided_in, strict=True):
            if isinstance(a, _scalar.CScalar):
                a.apply_dtype(t)
        inout = in_args + out_args
        infos, ndim = self._reduced_infos(inout, params, shape)
        arginfos = (*infos, _indexer_info((0,) * ndim))
        code = _kernel._get_elementwise_kernel_code(
            arginfos, type_map, params, kernel.operation, kernel.name, kernel.preamble, **kernel.kwargs
        )
        options = tuple(kernel.kwargs.get("options", ()))
        self.recorder.add(
            _capture_compile(kernel.name, "elementwise", lambda: core.compile_with_cache(code, options))
        )

    def _reduced_infos(self, inout: list[Any], params: tuple[Any, ...], shape: tuple[int, ...]) -> Any:
        """``_ArgInfo`` of every argument after CuPy's ``_reduce_dims``, and the indexer's ndim."""
        arrays = [
            i for i, (p, a) in enumerate(zip(params, inout, strict=False)) if _is_array(a) and not p.raw
        ]
        collapse = False
        if self.kernel.reduce_dims and len(shape) > 1 and len(inout) > 1:
            if all(inout[i].flags.c_contiguous for i in arrays):
                collapse = True
            elif len(shape) > 2:
                raise NotImplementedError("strided arrays of more than 2 dimensions are not emulated")
        ndim = 1 if collapse else len(shape)
        infos = []
        for p, a in zip(params, inout, strict=False):
            if not _is_array(a):
                infos.append(_scalar_info(a))
            elif p.raw:
                infos.append(_array_info(a))
            elif collapse:
                infos.append(_array_info(a, ndim=1, contiguous=True))
            else:
                infos.append(_array_info(a))
        return infos, ndim


def _cub_block_specs(contiguous_size: int) -> tuple[int, int]:
    """``_cub_reduction._get_cub_block_specs`` (a cdef function): items per thread, block size."""
    items_per_thread = 4
    block = -(-contiguous_size // items_per_thread)
    block = 1 << (block - 1).bit_length() if block > 1 else 1
    return items_per_thread, min(max(block, 32), 512)


class ReductionCall:
    """A full ``cupy.ReductionKernel`` reduction (axis=None), as bpcore's norm uses it, generated not run.

    Follows ``_AbstractReductionKernel._call``: CUB's two-pass block reduction
    for 128 or more elements (CuPy's default accelerator), the simple
    reduction kernel below that.
    """

    def __init__(self, kernel: Any, recorder: Recorder) -> None:
        self.kernel = kernel
        self.recorder = recorder

    def __call__(self, *args: Any) -> None:
        from cupy._core import _accelerator, _cub_reduction, _kernel, _reduction, _scalar, core

        kernel = self.kernel
        if len(args) != kernel.nargs or kernel.nin != 1 or kernel.nout != 1:
            raise TypeError(f"Wrong number of arguments for {kernel.name}")
        x, out = args
        if not (_is_array(x) and _is_array(out)):
            raise TypeError("bpcore's reductions take device arrays")
        _in_types, _out_types, type_map = _kernel._decide_params_type(
            kernel.in_params, kernel.out_params, (x.dtype.type,), (out.dtype.type,)
        )
        if out.shape != ():
            raise ValueError("Out shape is mismatched")
        type_map = _kernel._TypeMap((*type_map._pairs, ("IndexT", "int32")))
        size = x.size
        use_cub = (
            _accelerator.ACCELERATOR_CUB in _accelerator.get_reduction_accelerators()
            and x.flags.c_contiguous
            and size >= _cub_reduction._CUB_REDUCE_SIZE_THRESHOLD
        )
        if use_cub:
            self._cub_two_pass(x, out, type_map)
            return
        flat = x.reshape(-1)
        block_size, block_stride, _ = _reduction._get_block_specs(size, 1, 1, -1)
        arginfos = (
            _array_info(flat, ndim=1),
            _array_info(out),
            _indexer_info((size,)),
            _indexer_info(()),
            _scalar_info(_scalar.CScalar(np.int32(block_stride))),
        )
        code = _reduction._ReductionKernel_get_cached_function_code(
            kernel.nin,
            kernel.nout,
            kernel._params,
            arginfos,
            type_map,
            kernel.name,
            block_size,
            kernel.reduce_type,
            kernel.identity,
            kernel.map_expr,
            kernel.reduce_expr,
            kernel.post_map_expr,
            kernel.preamble,
            kernel.options,
        )
        self.recorder.add(
            _capture_compile(
                kernel.name, "reduction", lambda: core.compile_with_cache(code, tuple(kernel.options))
            )
        )

    def _cub_two_pass(self, x: np.ndarray, out: np.ndarray, type_map: Any) -> None:
        """``_try_to_call_cub_reduction`` and ``_cub_two_pass_launch`` for a full reduction."""
        from cupy._core import _cub_reduction, _kernel, _scalar

        kernel = self.kernel
        segment = x.size
        size_type = "uint64" if segment > 0x7FFFFFFF else "int32"
        type_map = _kernel._TypeMap((*type_map._pairs, ("sizeT", size_type)))
        params = (
            kernel._params[0:2]
            + _kernel._get_param_info(f"{size_type} _segment_size", True)
            + _kernel._get_param_info(f"{size_type} _array_size", True)
        )
        map_expr, post_map_expr = kernel.map_expr, kernel.post_map_expr
        old_in, old_out = params[0].name, params[1].name
        if old_in != "in0" or old_out != "out0":
            params = (
                _kernel._get_param_info("T in0", True) + _kernel._get_param_info("T out0", False) + params[2:]
            )
            map_expr = map_expr.replace(old_in, "in0")
            post_map_expr = post_map_expr.replace(old_out, "out0")
            type_map = _kernel._TypeMap(
                (*type_map._pairs, ("type_in0_raw", x.dtype.type), ("type_out0_raw", out.dtype.type))
            )
        items_per_thread, block_size = _cub_block_specs(segment)
        contiguous = min(segment, block_size * items_per_thread)
        blocks = -(-segment // contiguous)

        def size_scalar(value: int) -> Any:
            return _scalar.CScalar(np.int32(value)) if segment <= 0x7FFFFFFF else _scalar.CScalar(value)

        generate = _cub_reduction._SimpleCubReductionKernel_get_cached_function.__wrapped__
        passes = (
            (
                "pass1",
                map_expr,
                (_array_info(x.reshape(-1), ndim=1), _pointer_info()),
                contiguous,
                "-DFIRST_PASS=1",
            ),
            ("pass2", "in0", (_pointer_info(), _array_info(out)), blocks, "-DSECOND_PASS=1"),
        )
        for label, pre_map, arrays, contiguous_size, option in passes:
            arginfos = (
                *arrays,
                _scalar_info(size_scalar(contiguous_size)),
                _scalar_info(size_scalar(segment)),
            )
            name = f"{kernel.name}_{label}"
            generator_args = (
                pre_map, kernel.reduce_expr, post_map_expr, kernel.reduce_type, params, arginfos, type_map,
                name, block_size, kernel.identity, kernel.preamble, (option,), items_per_thread,
            )  # fmt: skip
            self.recorder.add(
                _capture_compile(name, f"cub-{label}", functools.partial(generate, *generator_args))
            )


class RawModuleCall:
    """A ``cupy.RawModule``: its one program, and launches recorded with CuPy's argument packing."""

    def __init__(self, module: Any, recorder: Recorder) -> None:
        from cupy._core import raw

        self.module = module
        self.recorder = recorder
        self.program = _capture_compile(
            "raw",
            "raw",
            lambda: raw._get_raw_module.__wrapped__(
                module.code,
                None,
                module.options,
                module.backend,
                False,
                module.enable_cooperative_groups,
                False,
                module.name_expressions,
                None,
            ),
        )
        recorder.add(self.program)

    def get_function(self, expression: str) -> Callable[..., None]:
        if expression not in (self.program.name_expressions or ()):
            raise KeyError(f"{expression} is not among the module's name expressions")

        def launch(grid: tuple[int, ...], block: tuple[int, ...], args: tuple[Any, ...]) -> None:
            self.recorder.raw_launches.append(
                RawLaunch(expression, tuple(grid), tuple(block), tuple(_packed_type(a) for a in args))
            )

        return launch


_CTYPES = {
    "float32": "float",
    "float64": "double",
    "int64": "long long",
    "int32": "int",
    "uint64": "unsigned long",
    "uint32": "unsigned int",
    "bool": "bool",
    "int8": "signed char",
    "int16": "short",
}


def _packed_type(arg: Any) -> str:
    """How CuPy's ``Function.__call__`` passes ``arg``: ``T*`` for a device array, else the CScalar's type."""
    from cupy._core import _scalar

    if _is_array(arg):
        return f"{_CTYPES[arg.dtype.name]}*"
    scalar = _scalar.CScalar(arg)
    if scalar.dtype == np.uint64 and int(arg) == 0:
        return "nullptr"
    return _CTYPES[scalar.dtype.name]


def provider(recorder: Recorder) -> Callable[[str], Any]:
    """A kernel provider for ``Operation.cuda_wrapper``: the real CuPy kernels, launches intercepted."""
    import cupy

    from bpcore.backends.kernels import cuda

    def kernels(kernel_name: str) -> Any:
        kernel = cuda.cupy_kernel(kernel_name)
        if isinstance(kernel, cupy.ElementwiseKernel):
            return ElementwiseCall(kernel, recorder)
        if isinstance(kernel, cupy.ReductionKernel):
            return ReductionCall(kernel, recorder)
        return RawModuleCall(kernel, recorder)

    return kernels


def elementwise_call(spec: src.Elementwise, recorder: Recorder) -> ElementwiseCall:
    """An interceptor around a NEW ElementwiseKernel built from ``spec`` exactly as bpcore builds its own."""
    from bpcore.backends.kernels import cuda

    return ElementwiseCall(cuda.elementwise_kernel(spec), recorder)


# --- compiling -------------------------------------------------------------------------------------
def kernel_signature(lowered: str) -> tuple[str, ...] | None:
    """Parameter C types of a mangled kernel name, read with ``c++filt`` (None where it is missing)."""
    tool = shutil.which("c++filt")
    if tool is None:
        return None
    text = subprocess.run([tool, lowered], capture_output=True, text=True, check=True).stdout.strip()
    if text == lowered or "(" not in text:
        raise ValueError(f"c++filt could not demangle {lowered!r}")
    inside = text[text.index("(", text.index(">") if ">" in text else 0) + 1 : text.rindex(")")]
    return tuple(part.strip() for part in inside.split(","))


def check_raw_launch(launch: RawLaunch, parameters: tuple[str, ...]) -> list[str]:
    """Problems of one raw launch against the kernel's parameter C types (empty if none)."""
    if len(parameters) != len(launch.arguments):
        return [f"{launch.expression}: {len(launch.arguments)} arguments for {len(parameters)} parameters"]
    problems = []
    for position, (param, arg) in enumerate(zip(parameters, launch.arguments, strict=True)):
        if param.endswith("*"):
            pointee = re.sub(r"\bconst\b", "", param[:-1]).strip()
            matches = arg in ("nullptr", f"{pointee}*")
        else:
            matches = arg == param
        if not matches:
            problems.append(f"{launch.expression}: argument {position} is {arg}, the kernel takes {param}")
    if not all(b >= 1 for b in launch.block) or int(np.prod(launch.block)) > 1024:
        problems.append(f"{launch.expression}: block {launch.block} is not a valid CUDA block")
    if not all(g >= 1 for g in launch.grid) or launch.grid[0] >= 2**31:
        problems.append(f"{launch.expression}: grid {launch.grid} is not a valid CUDA grid")
    return problems


def _arch_option(arch: Any = None) -> tuple[str, str]:
    """``compiler._get_arch_for_options_for_nvrtc`` without its device look-up: arch is always given."""
    from cupy.cuda import compiler

    if arch is None:
        raise RuntimeError("the architecture must be given explicitly when no GPU is present")
    if not compiler._use_ptx and int(arch) <= int(compiler._get_max_compute_capability()):
        return f"-arch=sm_{arch}", "cubin"
    return f"-arch=compute_{arch}", "ptx"


class _LoadlessModule:
    """Stands in for ``function.Module`` in CuPy's compiler: keeps the binary instead of loading it."""

    def __init__(self) -> None:
        self.binary = b""
        self.mapping: dict[str, str] = {}

    def load(self, binary: bytes) -> None:
        self.binary = binary

    def _set_mapping(self, mapping: dict[str, str] | None) -> None:
        self.mapping = dict(mapping or {})


@contextlib.contextmanager
def compiling_without_a_device(cache_dir: str | None = None) -> Iterator[None]:
    """Let CuPy's compiler run to the binary without a driver: explicit arch, no loading, ``cache_dir``."""
    from cupy.cuda import _compiler_cache, compiler

    with _patch_lock:
        saved = (compiler._get_arch_for_options_for_nvrtc, compiler.function, compiler._kernel_cache_backend)
        compiler._get_arch_for_options_for_nvrtc = _arch_option
        compiler.function = types.SimpleNamespace(Module=_LoadlessModule, LinkState=None)
        if cache_dir is not None:
            compiler._set_kernel_cache_backend(_compiler_cache.DiskKernelCacheBackend(cache_dir))
        try:
            yield
        finally:
            compiler._get_arch_for_options_for_nvrtc, compiler.function = saved[0], saved[1]
            compiler._set_kernel_cache_backend(saved[2])


def compile_program(program: Program, arch: str) -> Compiled:
    """Compile ``program`` for ``arch`` through CuPy's ``_compile_module_with_cache`` (inside the context)."""
    from cupy.cuda import compiler

    options = program.options
    major, minor = compiler._get_nvrtc_version()
    if program.path != "cub-pass1" and program.path != "cub-pass2" and (major, minor) >= (12, 8):
        # NVRTC's automatic precompiled headers (CuPy's CUPY_NVRTC_USE_PCH): the programs share CuPy's
        # and bpcore's headers and options, so this halves their compile time.  The two CUB passes
        # differ in their -D options, which would rebuild the header cache every time.
        options += ("--pch",)
    try:
        module = compiler._compile_module_with_cache(
            program.source,
            options,
            arch=arch,
            extra_source=program.extra_source,
            backend="nvrtc",
            name_expressions=program.name_expressions,
        )
    except compiler.CompileException as exc:
        return Compiled(False, log=str(exc))
    return Compiled(True, lowered=dict(module.mapping), binary_size=len(module.binary))


def compile_programs(
    programs: list[Program],
    archs: tuple[str, ...] = ARCHITECTURES,
    *,
    cache_dir: str | None = None,
    workers: int = 2,
) -> dict[tuple[tuple[Any, ...], str], Compiled]:
    """Compile every program for every architecture (NVRTC releases the GIL: ``workers`` threads)."""
    jobs = [(program, arch) for program in programs for arch in archs]
    with compiling_without_a_device(cache_dir), ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda job: compile_program(*job), jobs))
    return {(program.key, arch): result for (program, arch), result in zip(jobs, results, strict=True)}
