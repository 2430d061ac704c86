"""What the CPU (Numba) wrappers of the hot operations share.

An operation declared with ``cpu=Numba(wrap)`` (see
:mod:`bpcore.backends.ops.registry`) gets :func:`build` as its builder.
Nothing is imported or compiled until a NumPy backend first resolves the
operation: :func:`build` then imports the operation's kernel module (and
with it Numba, raising ``ImportError`` where it is missing, so that the
backend falls back to the generic version), fetches the kernel named after
the operation (:func:`.numba_jit.pair`, compiled on its first call) and
returns ``wrap(kernel, generic)``: a function with the operation's
signature, behind the layout guard shared by every wrapper, CPU and CUDA
(:func:`.layout.flat_or_generic`: the kernels walk flat memory, so any
other layout runs the generic version and an unusual caller still gets a
right answer).  Wrappers

* pick the serial build of their kernel for small arrays and the parallel one
  from a size where the threads pay off (:func:`pick`, :data:`PARALLEL_MIN`);
* pass the dtype's smallest normal number (:func:`tiny`) to the optimiser
  kernels, which flush subnormal state values to zero.
"""

from __future__ import annotations

import functools
import importlib
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .layout import flat_or_generic

logger = logging.getLogger("bpcore")

# Sizes (elements) from which the parallel build runs, by kind of work.
# Right after a matrix product the BLAS threads are still spinning; a Numba
# parallel region started then fights them for the cores (measured on 2
# cores: bias+ReLU over 262k elements 3.9 ms instead of 0.17 ms, and the
# next matrix product 2.5-10x slower).  Serial one-pass kernels run at
# memory speed for every layer size of the networks we benchmark, so the
# threads are kept for buffers of several million elements.
PARALLEL_MIN = {
    "cheap": 1 << 22,
    "transcendental": 1 << 22,
    "optimiser": 1 << 21,
    "rows": 1 << 22,
    "columns": 1 << 22,
}

Wrap = Callable[[Any, Callable[..., Any]], Callable[..., Any]]


def build(name: str, module: str, wrap: Wrap, generic: Callable[..., Any]) -> Callable[..., Any]:
    """The CPU implementation of operation ``name``: ``wrap(kernel, generic)`` behind the layout guard.

    ``module`` is the kernel module in this package that defines the Numba
    kernel named ``name``; ``generic`` is the operation's generic version with
    NumPy bound as its array module.
    """
    started = time.perf_counter()
    importlib.import_module(f"{__package__}.{module}")  # ImportError: no Numba, use the generic version
    from . import numba_jit

    implementation = flat_or_generic(wrap(numba_jit.pair(name), generic), generic)
    logger.debug(
        "CPU kernel %s ready in %.3f s (compiled on its first call)", name, time.perf_counter() - started
    )
    return implementation


def pick(pair: Any, size: int, kind: str) -> Any:
    """The serial or the parallel build of ``pair`` for ``size`` elements of work of ``kind``."""
    return pair.parallel if size >= PARALLEL_MIN[kind] else pair.serial


def tiny(array: Any) -> float:
    """The smallest normal number of ``array``'s dtype."""
    return float(np.finfo(array.dtype).tiny)


@functools.lru_cache(maxsize=256)
def rounded(scalar: type, *values: float) -> tuple[Any, ...]:
    """``values`` rounded to the arrays' dtype, then that dtype's smallest normal number.

    Cached: an optimiser's hyperparameters rarely change between steps, and
    rounding them anew cost more than the update of a small network.
    """
    return (*(scalar(value) for value in values), scalar(np.finfo(scalar).tiny))


def param(out: Any, params: tuple[float, ...]) -> float:
    """An activation's parameter rounded to the arrays' dtype (as NumPy rounds a Python float operand)."""
    return float(out.dtype.type(params[0])) if params else 0.0
