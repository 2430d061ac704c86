"""The registry of hot operations and their implementations.

Every hot operation (an activation's backward pass, an optimiser update, ...)
is declared once, with up to three implementations side by side so that they
cannot drift apart:

* ``generic(xp, *args)``: written against the array module ``xp``; runs on
  NumPy and CuPy alike and is the reference the others are tested against;
* ``cpu``: a builder returning a compiled one-pass CPU kernel (Numba);
* ``cuda``: a builder returning a fused CuPy kernel.

All three take the same arguments (``generic`` takes ``xp`` first) and write
their results into the output arrays they are given.  A backend resolves each
operation to the fastest implementation it can run; ``Backend.dispatch_table``
reports which one that is.

``cpu=`` and ``cuda=`` take either a zero-argument builder returning the
wrapper, or the short form, which finds the kernels by the operation's name:

* ``cpu=Numba(wrap, module="numba_kernels")``: the Numba kernel named like the
  operation in ``backends/kernels/<module>.py``; ``wrap(kernel, generic)``
  (``kernel`` a :class:`~bpcore.backends.kernels.numba_jit.KernelPair`)
  returns the wrapper;
* ``cuda=Cuda(wrap, flat=False)``: the CUDA kernels ``bp_<name>`` or
  ``bp_<name>_<part>`` of ``backends/kernels/cuda_sources.py``;
  ``wrap(kernels, generic)`` gets them as ``kernels(part)`` /
  ``kernels.raw(part)``.  In both, ``generic`` is the generic version with
  its array module bound, for the cases a kernel does not take.  The CUDA
  wrapper can also be built over other kernels (:attr:`Operation.cuda_wrapper`):
  the tests hand it CuPy's code generators and a host-compiled emulation.

Both short forms put the wrapper behind the one layout guard
(:func:`~bpcore.backends.kernels.layout.flat_or_generic`; for CUDA only with
``flat=True``, the raw kernels that walk flat memory).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from ..kernels import cpu as _cpu
from ..kernels import cuda as _cuda
from ..kernels.built_once import KernelBuilder, once

__all__ = ["OPERATIONS", "Cuda", "KernelBuilder", "Numba", "Operation", "declare", "register"]


@dataclasses.dataclass(frozen=True)
class Numba:
    """The short ``cpu=`` form: the Numba kernel named after the operation, wrapped by ``wrap``."""

    wrap: _cpu.Wrap
    module: str = "numba_kernels"


@dataclasses.dataclass(frozen=True)
class Cuda:
    """The short ``cuda=`` form: the kernels ``bp_<operation>[_<part>]``, wrapped by ``wrap``."""

    wrap: _cuda.Wrap
    flat: bool = False


@dataclasses.dataclass(frozen=True)
class Operation:
    """One hot operation and its implementations.

    ``cuda_wrapper(provider)``, where the operation was declared with the
    short ``cuda=`` form, builds the CUDA wrapper over the kernels that
    ``provider(kernel_name)`` returns (``cuda`` is that over CuPy's).
    ``numba_module``, where it was declared with the short ``cpu=`` form, is
    the module of ``backends/kernels`` holding its Numba kernel.
    """

    name: str
    generic: Callable[..., Any]
    summary: str
    cpu: KernelBuilder | None = None
    cuda: KernelBuilder | None = None
    cuda_wrapper: Callable[[_cuda.Provider], Callable[..., Any]] | None = None
    numba_module: str | None = None


OPERATIONS: dict[str, Operation] = {}


def register(operation: Operation) -> Operation:
    """Add an operation to the registry; each name may be declared only once."""
    if operation.name in OPERATIONS:
        raise ValueError(f"operation {operation.name!r} is declared twice")
    OPERATIONS[operation.name] = operation
    return operation


def declare(
    name: str,
    summary: str,
    *,
    cpu: KernelBuilder | Numba | None = None,
    cuda: KernelBuilder | Cuda | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering the generic implementation ``f(xp, *args)`` with its CPU and CUDA versions."""

    def wrap(generic: Callable[..., Any]) -> Callable[..., Any]:
        cpu_builder = _numba_builder(name, cpu, generic) if isinstance(cpu, Numba) else cpu
        cuda_wrapper = None
        cuda_builder: KernelBuilder | None = None if isinstance(cuda, Cuda) else cuda
        if isinstance(cuda, Cuda):
            cuda_wrapper = functools.partial(_cuda.build, name, cuda.wrap, generic, flat=cuda.flat)
            cuda_builder = once(functools.partial(cuda_wrapper, _cuda.cupy_kernel))
        module = cpu.module if isinstance(cpu, Numba) else None
        register(
            Operation(
                name,
                generic,
                summary,
                cpu=cpu_builder,
                cuda=cuda_builder,
                cuda_wrapper=cuda_wrapper,
                numba_module=module,
            )
        )
        return generic

    return wrap


def _numba_builder(name: str, spec: Numba, generic: Callable[..., Any]) -> KernelBuilder:
    return once(functools.partial(_cpu.build, name, spec.module, spec.wrap, functools.partial(generic, np)))
