"""CPU (Numba) and CUDA (CuPy) builders of the operations in :mod:`bpcore.backends.ops.buffers`.

Nothing is imported or compiled until a backend first resolves one of these
operations.  Each wrapper takes the operation's signature, rounds the scalars
to the arrays' dtype (so that float32 arithmetic stays float32, as NumPy's
does), and runs the generic version when an array is not C-contiguous: the
kernels walk flat memory.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from .built_once import BuiltOnce
from .cuda_sources import NVRTC_OPTIONS, Elementwise

# The CUDA kernels, as the text CuPy compiles (``raw`` arrays are indexed flat).
CUDA_SOURCES: dict[str, Elementwise] = {
    kernel.name: kernel
    for kernel in (
        Elementwise("bpcore_polyak_update", "T source, T keep, T take", "T target",
                    "target = target * keep + take * source"),
        Elementwise("bpcore_clamp_inplace", "T low, T high", "T x",
                    "x = x < low ? low : (x > high ? high : x)"),
        Elementwise("bpcore_gather_rows", "raw T values, S index, int64 cols", "T out",
                    "out = values[i * cols + (long long)index]"),
        Elementwise(
            "bpcore_scatter_rows", "raw T grad, raw S index, int64 cols", "T out",
            "long long r = i / cols; out = ((long long)index[r] == i - r * cols) ? grad[r] : (T)0",
        ),
    )
}


def _generic(name: str) -> Callable[..., Any]:
    from ..ops.registry import OPERATIONS

    return functools.partial(OPERATIONS[name].generic, np)


def _contiguous(*arrays: Any) -> bool:
    return all(a.flags.c_contiguous for a in arrays)


def _make_cpu(name: str) -> Callable[..., Any]:
    from . import buffer_numba as nk  # ImportError here means: use the generic version

    generic = _generic(name)
    if name == "polyak_update":

        def polyak_update(target, source, tau):  # type: ignore[no-untyped-def]
            if not _contiguous(target, source) or target.shape != source.shape:
                return generic(target, source, tau)
            scalar = target.dtype.type
            nk.polyak_update(target.reshape(-1), source.reshape(-1), scalar(1.0 - tau), scalar(tau))
            return target

        return polyak_update
    if name == "clamp_inplace":

        def clamp_inplace(x, low, high):  # type: ignore[no-untyped-def]
            if not _contiguous(x):
                return generic(x, low, high)
            nk.clamp_inplace(x.reshape(-1), x.dtype.type(low), x.dtype.type(high))
            return x

        return clamp_inplace
    if name == "gather_rows":

        def gather_rows(values, index, out):  # type: ignore[no-untyped-def]
            if values.ndim != 2 or not _contiguous(values, index, out):
                return generic(values, index, out)
            nk.gather_rows(values, index, out.reshape(-1))
            return out

        return gather_rows
    if name == "scatter_rows":

        def scatter_rows(grad, index, out):  # type: ignore[no-untyped-def]
            if out.ndim != 2 or not _contiguous(grad, index, out):
                return generic(grad, index, out)
            nk.scatter_rows(grad.reshape(-1), index, out)
            return out

        return scatter_rows
    raise ImportError(f"no CPU kernel for operation {name!r}")


_cuda_kernels: dict[str, Any] = {}


def _cuda(kernel_name: str) -> Any:
    """The ``cupy.ElementwiseKernel`` for ``kernel_name`` (called under BuiltOnce's lock)."""
    kernel = _cuda_kernels.get(kernel_name)
    if kernel is None:
        import cupy

        spec = CUDA_SOURCES[kernel_name]
        kernel = cupy.ElementwiseKernel(
            spec.in_params, spec.out_params, spec.body, spec.name, options=NVRTC_OPTIONS
        )
        _cuda_kernels[kernel_name] = kernel
    return kernel


def _make_cuda(name: str) -> Callable[..., Any]:
    generic_name = name
    if name == "polyak_update":
        kernel = _cuda("bpcore_polyak_update")

        def polyak_update(target, source, tau):  # type: ignore[no-untyped-def]
            scalar = target.dtype.type
            kernel(source, scalar(1.0 - tau), scalar(tau), target)
            return target

        return polyak_update
    if name == "clamp_inplace":
        kernel = _cuda("bpcore_clamp_inplace")

        def clamp_inplace(x, low, high):  # type: ignore[no-untyped-def]
            kernel(x.dtype.type(low), x.dtype.type(high), x)
            return x

        return clamp_inplace
    if name in ("gather_rows", "scatter_rows"):
        import cupy

        kernel = _cuda(f"bpcore_{name}")
        gather = name == "gather_rows"

        def rows(first, index, out):  # type: ignore[no-untyped-def]
            values = first if gather else out
            if values.ndim != 2 or not (first.flags.c_contiguous and index.flags.c_contiguous):
                from ..ops.registry import OPERATIONS

                return OPERATIONS[generic_name].generic(cupy, first, index, out)
            kernel(first, index, values.shape[1], out)
            return out

        return rows
    raise ImportError(f"no CUDA kernel for operation {name!r}")


cpu_buffer_kernel = BuiltOnce(_make_cpu).builder
cuda_buffer_kernel = BuiltOnce(_make_cuda).builder
