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
  ``cupy/_creation/basic.py``) and host-device transfers.  ``empty``
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
from bpcore.backends.kernels import cuda_sources as src

_DEVICE = types.SimpleNamespace(id=0)
_state = threading.local()


def _records() -> list[tuple[str, str]] | None:
    return getattr(_state, "records", None)


@contextlib.contextmanager
def counting() -> Iterator[list[tuple[str, str]]]:
    """Inside the block, every launch is appended as ``(kind, name)`` to the list it yields."""
    saved = _records()
    _state.records = records = []
    try:
        yield records
    finally:
        _state.records = saved


@contextlib.contextmanager
def _launch(kind: str, name: str, size: int = 1) -> Iterator[None]:
    """Record one launch (unless inside another, or empty), and run its body unrecorded."""
    depth = getattr(_state, "depth", 0)
    records = _records()
    if depth == 0 and records is not None and size > 0:
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
    """An array "on the GPU" (host memory): device work on it is recorded as launches."""

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
            kind = "h2d"  # a host array copied in
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


class _DeviceScope:
    """Stands in for ``cupy.cuda.Device``: a context manager making the GPU current (no device work)."""

    def __enter__(self) -> _DeviceScope:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

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

    def _compiled(self, operation: Any) -> tuple[Callable[..., Any], str] | None:
        if operation.cuda is None:
            return None
        if operation.cuda_wrapper is None:
            raise AssertionError(f"{operation.name}: its CUDA version cannot be built over host kernels")
        built = functools.partial(operation.cuda_wrapper, self._provider)
        return super()._compiled(dataclasses.replace(operation, cuda=built))


# --- the kernel stand-ins ---------------------------------------------------------------------------
_SCALARS = {"int64": ctypes.c_longlong, "bool": ctypes.c_bool, "float64": ctypes.c_double}


class HostElementwise:
    """One ElementwiseKernel: CuPy's call path (when CuPy is there), then its body compiled for the host."""

    def __init__(self, spec: src.Elementwise, library: ctypes.CDLL, cupy_call: Any) -> None:
        self.spec, self.library, self.cupy_call = spec, library, cupy_call
        self.params = kernel_codegen.elementwise_arguments(spec)

    def __call__(self, *args: Any) -> None:
        assert len(args) == len(self.params), self.spec.name
        sizes = [a.size for (p, _o), a in zip(self.params, args, strict=True) if p.is_array and not p.raw]
        with _launch("kernel", self.spec.name, max(sizes)):
            if self.cupy_call is not None:
                self.cupy_call(*args)  # CuPy's type decisions, shape checks and generated source
            c_args: list[Any] = []
            dtype = None
            for (param, _is_output), arg in zip(self.params, args, strict=True):
                if param.is_array:
                    assert isinstance(arg, DeviceArray), (self.spec.name, param.name, type(arg))
                    assert arg.flags.c_contiguous, (self.spec.name, param.name)
                    assert param.raw or arg.size == max(sizes), (self.spec.name, param.name)
                    c_args.append(ctypes.c_void_p(arg.ctypes.data))
                    dtype = arg.dtype if param.type == "T" else dtype
                else:
                    c_args.append(_SCALARS[param.type](arg))
            assert dtype is not None
            c_args.append(ctypes.c_longlong(max(sizes)))
            getattr(self.library, kernel_codegen.symbol(self.spec.name, dtype.name))(*c_args)


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
