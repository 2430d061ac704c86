"""What the CUDA (CuPy) wrappers of the hot operations share.

An operation declared with ``cuda=Cuda(wrap)`` (see
:mod:`bpcore.backends.ops.registry`) gets its wrapper from :func:`build`:
``wrap(kernels, generic)``, where ``kernels`` (:class:`OperationKernels`)
hands out the operation's CUDA kernels by the one naming rule, ``bp_<operation>``
or ``bp_<operation>_<part>`` for an operation that launches several.
CuPy is imported, and the kernels are created, only when a CUDA backend first
resolves an operation; each kernel object is made once per process (under a
lock) and reused, and CuPy compiles it per dtype on its first launch and
caches the binary.  No wrapper synchronises the device.

The kernels come from a *provider*: :func:`cupy_kernel` on a GPU, a host
emulation or CuPy's code generators in the tests, so that the argument
plumbing of every wrapper is checked along with the kernels.

CuPy's elementwise and reduction kernels index through the arrays' strides;
the ``RawModule`` row and column kernels walk flat C-order memory, so their
wrappers sit behind the layout guard shared with the CPU kernels
(:func:`.layout.flat_or_generic`: any other layout runs the generic version),
take float32 or float64 only, and fetch each kernel once per dtype.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

from .layout import flat_or_generic

THREADS_PER_BLOCK = 256
MAX_BLOCKS = 65535
RAW_MODULE = "raw"  # the provider's name for the RawModule of the row and column kernels

Provider = Callable[[str], Any]
Wrap = Callable[["OperationKernels", Callable[..., Any]], Callable[..., Any]]

_kernels: dict[str, Any] = {}
_lock = threading.Lock()


def kernel_name(operation: str, part: str = "") -> str:
    """The CUDA kernel of ``operation`` (``part`` names one of several): the one naming rule."""
    return f"bp_{operation}_{part}" if part else f"bp_{operation}"


class OperationKernels:
    """The CUDA kernels of one operation, fetched from a provider by :func:`kernel_name`."""

    def __init__(self, operation: str, provider: Provider) -> None:
        self.operation = operation
        self._provider = provider

    def __call__(self, part: str = "") -> Any:
        """The elementwise or reduction kernel ``bp_<operation>[_<part>]``."""
        return self._provider(kernel_name(self.operation, part))

    def raw(self, part: str = "") -> RawKernel:
        """The ``RawModule`` kernel ``bp_<operation>[_<part>]``, instantiated per dtype on use."""
        return RawKernel(self._provider(RAW_MODULE), kernel_name(self.operation, part))


def build(
    name: str, wrap: Wrap, generic: Callable[..., Any], provider: Provider, *, flat: bool = False
) -> Callable[..., Any]:
    """The CUDA implementation of operation ``name``: ``wrap`` over ``provider``'s kernels.

    ``wrap`` gets the generic version with its array module bound (CuPy for
    device arrays, NumPy for the tests' host ones).  ``flat``: the wrapper
    launches raw kernels that walk flat C-order memory, so it runs behind the
    layout guard, and any other layout runs the generic version.
    """

    def bound(*args: Any) -> Any:
        return generic(array_module(args), *args)

    implementation = wrap(OperationKernels(name, provider), bound)
    return flat_or_generic(implementation, bound) if flat else implementation


def cupy_kernel(name: str) -> Any:
    """The CuPy kernel object for kernel ``name`` (the provider used on a GPU); made once per process.

    :data:`RAW_MODULE` names the ``RawModule`` of the row and column kernels.
    """
    with _lock:
        kernel = _kernels.get(name)
        if kernel is None:
            kernel = _kernels[name] = _make(name)
    return kernel


def _make(name: str) -> Any:
    import cupy

    from . import cuda_sources as src

    if name in src.ELEMENTWISE:
        return elementwise_kernel(src.ELEMENTWISE[name])
    if name in src.REDUCTIONS:
        r = src.REDUCTIONS[name]
        return cupy.ReductionKernel(
            r.in_params,
            r.out_params,
            r.map_expr,
            r.reduce_expr,
            r.post_map_expr,
            r.identity,
            r.name,
            reduce_type=r.reduce_type,
            preamble=src.header_source(),
        )
    if name == RAW_MODULE:
        return cupy.RawModule(
            code=src.header_source() + src.RAW_SOURCE,
            options=src.NVRTC_OPTIONS,
            name_expressions=src.RAW_NAME_EXPRESSIONS,
        )
    raise ImportError(f"no CUDA kernel named {name!r}")


def elementwise_kernel(spec: Any) -> Any:
    """The ``cupy.ElementwiseKernel`` of one :class:`.cuda_sources.Elementwise` (also used by the tests)."""
    import cupy

    from . import cuda_sources as src

    return cupy.ElementwiseKernel(
        spec.in_params,
        spec.out_params,
        spec.body,
        spec.name,
        preamble=src.header_source(),
        options=src.NVRTC_OPTIONS,
    )


_RAW_CTYPES = {"float32": "float", "float64": "double"}


def _raw(module: Any, name: str, dtype: Any) -> Any:
    """The ``RawModule`` kernel ``name`` instantiated for ``dtype`` (float32 or float64 only)."""
    ctype = _RAW_CTYPES.get(getattr(dtype, "name", str(dtype)))
    if ctype is None:
        raise TypeError(
            f"{name}: expected float32 or float64 arrays, got dtype {dtype}; "
            "the row and column kernels are instantiated for those two only"
        )
    return module.get_function(f"{name}<{ctype}>")


class RawKernel:
    """One ``RawModule`` kernel, fetched once per dtype (``get_function`` builds a new object per call).

    A CuPy ``RawKernel`` resolves its compiled function per device at launch,
    so one cached object per dtype serves every GPU.  Calling this with the
    kernel's element-type arrays checks that they share one dtype (the kernel
    reads them all as ``T*``) and returns the launcher.
    """

    def __init__(self, module: Any, name: str) -> None:
        self._module = module
        self._name = name
        self._functions: dict[Any, Any] = {}

    def __call__(self, *arrays: Any) -> Any:
        dtype = arrays[0].dtype
        function = self._functions.get(dtype)
        if function is None:
            function = self._functions[dtype] = _raw(self._module, self._name, dtype)
        for position, array in enumerate(arrays[1:], start=1):
            if array.dtype != dtype:
                raise TypeError(
                    f"{self._name}: every array must have the dtype of the first ({dtype}), "
                    f"got {array.dtype} for array {position}"
                )
        return function


def array_module(args: tuple[Any, ...]) -> Any:
    """NumPy for host arrays (the tests' emulation), CuPy for device arrays."""
    import numpy as np

    for arg in args:
        if type(arg).__module__.split(".")[0] == "cupy":
            import cupy

            return cupy
    return np


# Batch normalisation sums each column in row chunks, one thread per (chunk,
# column), and then adds a column's chunks in one thread: about sqrt(n) rows
# per chunk balances the two (n = 1024, f = 256: 8192 threads of 32 rows, then
# 32 partial sums per column, where one thread per column ran 256 threads of
# 1024 rows), capped at COLUMN_SUM_THREADS threads in all.
COLUMN_SUM_THREADS = 1 << 16
MIN_CHUNK_ROWS = 8


def row_chunks(n: int, f: int) -> tuple[int, int]:
    """(rows per chunk, number of chunks) for the column sums of an (n, f) batch."""
    most = max(1, COLUMN_SUM_THREADS // max(f, 1))
    chunks = min(most, max(1, -(-n // max(MIN_CHUNK_ROWS, math.isqrt(n)))))
    chunk = max(1, -(-n // chunks))
    return chunk, max(1, -(-n // chunk))


def grid(work: int) -> tuple[tuple[int], tuple[int]]:
    """(grid, block) of a grid-stride launch over ``work`` items."""
    blocks = max(1, min(MAX_BLOCKS, -(-work // THREADS_PER_BLOCK)))
    return (blocks,), (THREADS_PER_BLOCK,)
