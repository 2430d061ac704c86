"""A CUDA backend on the host that COUNTS what the device would launch, for tests without a GPU.

The backend is bpcore's own :class:`~bpcore.backends.cupy_backend.CupyBackend`
(its ``_compiled``, ``asarray``, ``empty``, ``zeros`` and ``to_numpy``) with
two stand-ins underneath:

* the array module, :class:`CountingCupy`, over :class:`DeviceArray` (host
  memory), which records every call that is device work on CuPy: a matrix
  product (``matmul``: one cuBLAS GEMM, ``cupy/_core/_routines_linalg.pyx``),
  an element-wise ufunc or a reduction (one kernel each, ``_kernel.pyx``,
  ``_reduction.pyx``), ``fill`` (``memset_async`` for zero on contiguous
  memory, else the ``elementwise_copy`` kernel: ``ndarray.fill`` in
  ``_core/core.pyx``), an assignment into a slice (``_scatter_op``, an
  ``elementwise_copy`` launch, ``_core/_routines_indexing.pyx``), ``copy``,
  ``astype`` (``ndarray.astype`` in ``_core/core.pyx``: one ``elementwise_copy``, none for an
  empty array, none for the same dtype without ``copy``) and a reshape that cannot be a view, indexing that is
  not basic (a gather kernel), ``zeros`` (``memset_async``,
  ``cupy/_creation/basic.py``) and host-device transfers (``asarray``, ``get``, ``set``).  ``empty``
  allocates only, and views (basic slicing, transposes, reshapes of
  contiguous memory) launch nothing, in CuPy as here.  A launch of size 0
  records nothing (CuPy returns before launching an empty kernel).
* the kernel objects: each ``bp_*`` ElementwiseKernel is CuPy's real kernel
  object driven through CuPy's own argument handling and code generation
  (``cupy_codegen.ElementwiseCall``: type decisions, shape checks, the
  generated source) and then run by the same kernel body compiled for the
  host (``kernel_codegen``), so the results are the kernel's arithmetic; each
  call records one launch.

Calls made inside a recorded operation (NumPy's own ufunc calls under a
``sum``, the kernel stand-in's helpers) are not counted again.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kernel_codegen
import numpy as np

from bpcore.backends import Backend, Device
from bpcore.backends.cupy_backend import CupyBackend
from bpcore.backends.kernels import cuda
from bpcore.backends.kernels import cuda_sources as src

_DEVICE = types.SimpleNamespace(id=0)
_state = threading.local()


def _records() -> list[tuple[str, str]] | None:
    return getattr(_state, "records", None)


@contextlib.contextmanager
def counting(*, require_scope: bool = False) -> Iterator[list[tuple[str, str]]]:
    """Inside the block, every launch is appended as ``(kind, name)`` to the list it yields.

    ``require_scope=True``: a launch made while the backend's GPU is not
    current (outside its ``with cuda.Device(...)``, :class:`_DeviceScope`)
    raises AssertionError, as on CuPy it would run on whichever GPU the thread
    has current (another GPU's memory: a peer-access error or a slow copy).
    Transfers are exempt: ``get`` and ``set`` make the array's GPU current themselves.  There is one
    stand-in GPU, so this checks that a scope is entered, not that it is the right GPU's.
    """
    saved = _records(), getattr(_state, "require_scope", False)
    _state.records = records = []
    _state.require_scope = require_scope
    try:
        yield records
    finally:
        _state.records, _state.require_scope = saved


_SELF_SCOPED = frozenset({"get", "set"})  # ndarray.get/set enter the array's device (cupy/_core/core.pyx)


@contextlib.contextmanager
def _launch(kind: str, name: str, size: int = 1) -> Iterator[None]:
    """Record one launch (unless inside another, or empty), and run its body unrecorded."""
    depth = getattr(_state, "depth", 0)
    records = _records()
    if depth == 0 and records is not None and size > 0:
        if (getattr(_state, "require_scope", False) and not getattr(_state, "scoped", 0)
                and name not in _SELF_SCOPED):
            raise AssertionError(f"{kind} {name!r} launched while the backend's GPU was not made current")
        records.append((kind, name))
    _state.depth = depth + 1
    try:
        yield
    finally:
        _state.depth = depth


def _plain(value: Any) -> Any:
    return value.view(np.ndarray) if isinstance(value, DeviceArray) else value


def _device(value: Any) -> Any:
    return value.view(DeviceArray) if type(value) is np.ndarray else value


def _is_basic(key: Any) -> bool:
    """A basic index (integers, slices, ``...``, ``None``): a view in NumPy and CuPy alike."""
    parts = key if isinstance(key, tuple) else (key,)
    return all(isinstance(k, (int, np.integer, slice, type(None), type(Ellipsis))) for k in parts)


class DeviceArray(np.ndarray):
    """An array "on the GPU" (host memory): device work on it is recorded as launches.

    Its class's module is ``cupy``, as ``cupy.ndarray.__module__`` is: bpcore
    tells device arrays from host ones by that module without importing CuPy
    (``interop.is_cupy_array``, ``backends.backend_of``), so a loss, a metric
    or the input path given one takes the CUDA backend's path (resolved
    through the ``cuda`` device: a test installs this backend there).
    """

    __module__ = "cupy"

    @property
    def device(self) -> Any:
        return _DEVICE

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, out: Any = None, **kwargs: Any) -> Any:
        kind = {"__call__": "elementwise", "reduce": "reduction"}.get(method, f"ufunc.{method}")
        size = max((np.size(_plain(a)) for a in (*inputs, *(out or ()))), default=1)
        with _launch(kind, ufunc.__name__, size):
            if out is not None:
                kwargs["out"] = tuple(_plain(o) for o in out)
            result = getattr(ufunc, method)(*(_plain(a) for a in inputs), **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return tuple(_device(r) for r in result) if isinstance(result, tuple) else _device(result)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        with _launch("numpy", func.__name__):  # a NumPy function given a device array: visible in the log
            return super().__array_function__(func, types, args, kwargs)

    def __getitem__(self, key: Any) -> Any:
        with _launch("gather", "getitem", 0 if _is_basic(key) else 1):
            return super().__getitem__(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        target = super().__getitem__(key) if _is_basic(key) else None
        size = target.size if target is not None else 1
        kind = "fill" if np.ndim(_plain(value)) == 0 else "copy" if target is not None else "scatter"
        if type(value) is np.ndarray and value.ndim:
            if target is not None:  # CuPy refuses a host array into a basic index (cupy gh-2079): _scatter_op
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
            kind = "h2d"  # a host array copied in by an advanced-index scatter (core.array of it)
        with _launch(kind, "setitem", size):
            super().__setitem__(key, _plain(value))

    def fill(self, value: Any) -> None:
        with _launch("fill", "fill", self.size):
            super().fill(value)

    def copy(self, order: Any = "C") -> Any:
        with _launch("copy", "copy", self.size):
            return super().copy(order)

    def astype(self, dtype: Any, *args: Any, copy: bool = True, **kwargs: Any) -> Any:
        if not copy and np.dtype(dtype) == self.dtype:
            return self
        with _launch("copy", "astype", self.size):
            return super().astype(dtype, *args, copy=copy, **kwargs)

    def reshape(self, *shape: Any, **kwargs: Any) -> Any:
        result = super().reshape(*shape, **kwargs)
        if result.size and not np.shares_memory(_plain(result), _plain(self)):  # copied: not viewable
            with _launch("copy", "reshape"):
                pass
        return result

    def sum(self, *args: Any, **kwargs: Any) -> Any:
        with _launch("reduction", "sum", self.size):
            return super().sum(*args, **kwargs)

    def get(self) -> np.ndarray:
        with _launch("d2h", "get", self.size):
            return np.array(_plain(self))

    def set(self, arr: Any, stream: Any = None) -> None:
        """``ndarray.set`` (``cupy/_core/core.pyx``): a NumPy array of this dtype and shape, copied in."""
        if not isinstance(arr, np.ndarray) or isinstance(arr, DeviceArray):
            raise TypeError("Only numpy.ndarray can be set to cupy.ndarray")
        if self.dtype != arr.dtype:
            raise TypeError(f"{arr.dtype} array cannot be set to {self.dtype} array")
        if self.shape != arr.shape:
            raise ValueError(f"Shape mismatch. Old shape: {self.shape}, new shape: {arr.shape}")
        with _launch("h2d", "set", self.size):
            _plain(self)[...] = arr


class CountingCupy:
    """The array module of :class:`CountingBackend`: NumPy's functions over :class:`DeviceArray`, counted."""

    ndarray = DeviceArray

    def __init__(self) -> None:
        self.float32, self.float64 = np.float32, np.float64

    def matmul(self, a: Any, b: Any, out: Any = None) -> Any:
        with _launch("gemm", "matmul"):
            result = np.matmul(_plain(a), _plain(b), out=_plain(out))
        return out if out is not None else _device(result)

    def empty(self, shape: Any, dtype: Any = float, order: str = "C") -> DeviceArray:
        return np.empty(shape, dtype=dtype, order=order).view(DeviceArray)  # allocation only

    def zeros(self, shape: Any, dtype: Any = float, order: str = "C") -> DeviceArray:
        array = np.zeros(shape, dtype=dtype, order=order).view(DeviceArray)
        with _launch("memset", "zeros", array.size):
            pass
        return array

    def asarray(self, data: Any, dtype: Any = None) -> Any:
        if isinstance(data, DeviceArray):
            return data if dtype is None or np.dtype(dtype) == data.dtype else data.astype(dtype)
        host = np.asarray(data, dtype=dtype)
        with _launch("h2d", "asarray", host.size):
            return host.copy().view(DeviceArray)

    def asnumpy(self, array: Any) -> np.ndarray:
        return array.get() if isinstance(array, DeviceArray) else np.asarray(array)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(np, name)
        if isinstance(attribute, (type, np.ufunc, types.ModuleType)) or not callable(attribute):
            return attribute  # types and constants; ufuncs record themselves through DeviceArray

        @functools.wraps(attribute)
        def call(*args: Any, **kwargs: Any) -> Any:
            with _launch("xp", name):
                result = attribute(*(_plain(a) for a in args), **{k: _plain(v) for k, v in kwargs.items()})
            return _device(result)

        return call


_bpcore_array_module = cuda.array_module


def _array_module(args: tuple[Any, ...]) -> Any:
    """``cuda.array_module`` with this module's arrays: their module is :class:`CountingCupy`, not CuPy.

    The CUDA wrappers pick the array module of their arguments by the arrays'
    module name (``cupy``); a :class:`DeviceArray` says ``cupy`` too, so the
    wrappers' workspaces and generic fallbacks would ask the real CuPy (and a
    GPU) for them.  Installed on import, for stand-in arrays only.
    """
    if any(isinstance(arg, DeviceArray) for arg in args):
        return _COUNTING_CUPY
    return _bpcore_array_module(args)


_COUNTING_CUPY = CountingCupy()
cuda.array_module = _array_module


class _DeviceScope:
    """Stands in for ``cupy.cuda.Device``: a context manager making the GPU current (no device work)."""

    def __enter__(self) -> _DeviceScope:
        _state.scoped = getattr(_state, "scoped", 0) + 1
        return self

    def __exit__(self, *exc: Any) -> None:
        _state.scoped -= 1

    def synchronize(self) -> None:
        return None


class CountingBackend(CupyBackend):
    """bpcore's CUDA backend over :class:`CountingCupy`, its kernels from ``provider`` (counted stand-ins).

    Only ``__init__`` differs (no CuPy import, no device); ``_compiled`` is
    CuPy's backend's own, given the operation's CUDA wrapper built over
    ``provider`` instead of over :func:`~bpcore.backends.kernels.cuda.cupy_kernel`.
    """

    def __init__(self, provider: Callable[[str], Any], *, kernels: str = "auto") -> None:
        Backend.__init__(self, CountingCupy(), Device("cuda", 0), kernels=kernels)
        self._cuda_device = _DeviceScope()
        self._provider = provider

    def random(self, seed: int | None = None) -> CountingGenerator:
        """CuPy's ``default_rng(seed)``: a :class:`CountingGenerator` (NumPy's draws, CuPy's semantics)."""
        return CountingGenerator(seed)

    def _compiled(self, operation: Any) -> tuple[Callable[..., Any], str] | None:
        if operation.cuda is None:
            return None
        if operation.cuda_wrapper is None:
            raise AssertionError(f"{operation.name}: its CUDA version cannot be built over host kernels")
        built = functools.partial(operation.cuda_wrapper, self._provider)
        return super()._compiled(dataclasses.replace(operation, cuda=built))


class CountingGenerator:
    """``cupy.random.Generator`` for :class:`CountingBackend`: NumPy's numbers for ``seed``, CuPy's semantics.

    The numbers are those of ``numpy.random.default_rng(seed)`` (so a network
    on this backend drops the same units as on the CPU, which cuRAND's XORWOW
    would not); the calls behave as ``cupy/random/_generator_api.pyx`` does:
    ``out`` is checked (its dtype, and its shape against ``size`` only when
    ``size`` is given), ``random(size=None, out=...)`` draws ONE value and
    copies it over ``out`` (``elementwise_copy``), ``standard_normal(out=...)``
    fills ``out`` with ``out.size`` draws, results (``integers``' too) are
    device arrays (0-d for ``size=None``), and there is no NumPy ``state`` to
    read or set.  Each draw records one launch.
    """

    def __init__(self, seed: int | None = None) -> None:
        self._numpy = np.random.default_rng(seed)

    @staticmethod
    def _check_output_array(dtype: Any, size: Any, out: Any) -> None:
        # Generator._check_output_array: the dtype, contiguity, and the shape only against a given size
        if out.dtype.char != np.dtype(dtype).char:
            raise TypeError(f"Supplied output array has the wrong type. Expected {np.dtype(dtype).name}, "
                            f"got {out.dtype.name}")
        if not (out.flags.c_contiguous or out.flags.f_contiguous):
            raise ValueError("Supplied output array is not contiguous, writable or aligned.")
        if size is not None and tuple(np.atleast_1d(size)) != out.shape:
            raise ValueError("size must match out.shape when used together")

    def random(self, size: Any = None, dtype: Any = np.float64, out: Any = None) -> DeviceArray:
        if out is not None:
            self._check_output_array(dtype, size, out)
        with _launch("kernel", "curand_uniform", int(np.prod(() if size is None else size))):
            drawn = self._numpy.random(size=() if size is None else size, dtype=dtype)
        if out is None:
            return np.asarray(drawn).view(DeviceArray)
        out[...] = drawn.view(DeviceArray) if isinstance(drawn, np.ndarray) else drawn  # elementwise_copy
        return out

    def integers(self, low: int, high: int | None = None, size: Any = None, dtype: Any = np.int64,
                 endpoint: bool = False) -> DeviceArray:
        # a device array, 0-d for size=None (``cupy.add(lo, y, dtype=dtype)``), never a Python int
        shape = () if size is None else size
        with _launch("kernel", "curand_integers", int(np.prod(shape))):
            drawn = self._numpy.integers(low, high, size=shape, dtype=dtype, endpoint=endpoint)
        return np.asarray(drawn).view(DeviceArray)

    def standard_normal(self, size: Any = None, dtype: Any = np.float64, out: Any = None) -> DeviceArray:
        if out is not None:
            self._check_output_array(dtype, size, out)
        shape = out.shape if out is not None else () if size is None else size
        with _launch("kernel", "curand_normal", int(np.prod(shape))):
            drawn = self._numpy.standard_normal(size=shape, dtype=dtype)
        if out is None:
            return np.asarray(drawn).view(DeviceArray)
        _plain(out)[...] = drawn  # written in place by the distribution's kernel
        return out


# --- the kernel stand-ins ---------------------------------------------------------------------------
_SCALARS = {"int64": ctypes.c_longlong, "bool": ctypes.c_bool, "float64": ctypes.c_double}


class HostElementwise:
    """One ElementwiseKernel: CuPy's call path (when CuPy is there), then its body compiled for the host."""

    def __init__(self, spec: src.Elementwise, library: ctypes.CDLL, cupy_call: Any) -> None:
        self.spec, self.library, self.cupy_call = spec, library, cupy_call
        self.params = kernel_codegen.elementwise_arguments(spec)

    def __call__(self, *args: Any) -> None:
        assert len(args) == len(self.params), self.spec.name
        shape = np.broadcast_shapes(*(a.shape if isinstance(a, np.ndarray) else ()  # a scalar: ()
                                      for (p, _o), a in zip(self.params, args, strict=True)
                                      if p.is_array and not p.raw))
        size = int(np.prod(shape, dtype=np.int64))
        with _launch("kernel", self.spec.name, size):
            if self.cupy_call is not None:
                self.cupy_call(*args)  # CuPy's type decisions, shape checks and generated source
            c_args: list[Any] = []
            held: list[Any] = []
            dtype = None
            for (param, is_output), arg in zip(self.params, args, strict=True):
                if param.is_array and not param.raw and not is_output and not isinstance(arg, np.ndarray):
                    # A scalar for a typed parameter ("T keep"): CuPy passes it by value, cast to the
                    # parameter's type, the same for every element: here, that value broadcast.
                    arg = np.full(shape, arg, dtype=self._placeholder_dtype(param, args)).view(DeviceArray)
                    held.append(arg)
                if param.is_array:
                    assert isinstance(arg, DeviceArray), (self.spec.name, param.name, type(arg))
                    assert arg.flags.c_contiguous, (self.spec.name, param.name)
                    if not param.raw and arg.shape != shape:
                        # CuPy broadcasts the non-raw inputs to the arguments' common shape (a bias
                        # row over a batch); outputs must have that shape ("Out shape is mismatched").
                        assert not is_output, (self.spec.name, param.name, arg.shape, shape)
                        arg = np.ascontiguousarray(np.broadcast_to(_plain(arg), shape)).view(DeviceArray)
                        held.append(arg)  # alive until the kernel has run
                    c_args.append(ctypes.c_void_p(arg.ctypes.data))
                    dtype = arg.dtype if param.type == "T" else dtype
                else:
                    c_args.append(_SCALARS[param.type](arg))
            assert dtype is not None
            c_args.append(ctypes.c_longlong(size))
            getattr(self.library, kernel_codegen.symbol(self.spec.name, dtype.name))(*c_args)

    def _placeholder_dtype(self, param: src.Param, args: tuple[Any, ...]) -> np.dtype:
        """The dtype CuPy gives ``param``'s type placeholder: that of an array argument of the same type."""
        for (other, _is_output), arg in zip(self.params, args, strict=True):
            if other.type == param.type and isinstance(arg, np.ndarray):
                return arg.dtype
        raise AssertionError(f"{self.spec.name}: no array argument fixes the type {param.type}")


def build_provider(kernel_names: list[str], folder: Path, compiler: str) -> tuple[Callable[[str], Any], Any]:
    """A provider of ``kernel_names`` compiled for the host, and the CuPy recorder (None without CuPy)."""
    specs = [src.ELEMENTWISE[name] for name in kernel_names]
    program = kernel_codegen.elementwise_program(specs)
    library = kernel_codegen.compile_host_library(program, folder, "kernels", compiler)
    try:
        import cupy  # noqa: F401
    except ImportError:
        recorder = None
    else:
        import cupy_codegen

        recorder = cupy_codegen.Recorder()
    kernels: dict[str, HostElementwise] = {}
    for spec in specs:
        call = None if recorder is None else cupy_codegen.elementwise_call(spec, recorder)
        kernels[spec.name] = HostElementwise(spec, library, call)

    def provider(kernel_name: str) -> Any:
        return kernels[kernel_name]

    return provider, recorder


def _device_pointer(array: np.ndarray) -> ctypes.c_void_p:
    assert isinstance(array, DeviceArray) and array.flags.c_contiguous, type(array)
    return ctypes.c_void_p(array.ctypes.data)


class _CountedKernel(kernel_codegen.HostKernel):
    """A host stand-in whose arrays must be device arrays and whose launches are recorded."""

    pointer = staticmethod(_device_pointer)

    def launching(self, kernel_name: str, size: int) -> Any:
        return _launch("kernel", kernel_name, size)


class HostReduction(_CountedKernel, kernel_codegen.HostReduction):
    """A full ReductionKernel over device arrays, one recorded launch (its host body, serially)."""

    @staticmethod
    def store(out: np.ndarray, value: Any) -> None:
        assert isinstance(out, DeviceArray), type(out)
        _plain(out)[...] = value


class HostRawModule(_CountedKernel, kernel_codegen.HostRawModule):
    """The ``RawModule`` of the row and column kernels over device arrays, each launch recorded."""


def build_full_provider(folder: Path, compiler: str) -> tuple[Callable[[str], Any], Any]:
    """A provider of EVERY CUDA kernel (elementwise, reduction, the RawModule) compiled for the host.

    For networks, whose layers, losses and optimisers together launch most of
    them; the elementwise kernels go through CuPy's call path (with CuPy
    installed) as in :func:`build_provider`, the reductions and the row and
    column kernels run their host bodies only (their CuPy code generation
    and argument packing are checked in test_cuda_codegen.py).
    """
    program = kernel_codegen.host_program()
    library = kernel_codegen.compile_host_library(program, folder, "all_kernels", compiler)
    try:
        import cupy  # noqa: F401
    except ImportError:
        recorder = None
    else:
        import cupy_codegen

        recorder = cupy_codegen.Recorder()
    kernels: dict[str, Any] = {cuda.RAW_MODULE: HostRawModule(library)}
    for spec in src.ELEMENTWISE.values():
        call = None if recorder is None else cupy_codegen.elementwise_call(spec, recorder)
        kernels[spec.name] = HostElementwise(spec, library, call)
    for reduction in src.REDUCTIONS.values():
        kernels[reduction.name] = HostReduction(reduction, library)
    return kernels.__getitem__, recorder
