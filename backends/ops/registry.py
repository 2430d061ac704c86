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
operation to the fastest implementation it can run; :func:`dispatch_table`
reports which one that is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

KernelBuilder = Callable[[], Callable[..., Any]]


@dataclasses.dataclass(frozen=True)
class Operation:
    """One hot operation and its implementations."""

    name: str
    generic: Callable[..., Any]
    summary: str
    cpu: KernelBuilder | None = None
    cuda: KernelBuilder | None = None


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
    cpu: KernelBuilder | None = None,
    cuda: KernelBuilder | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator form of :func:`register` for a generic implementation."""

    def wrap(generic: Callable[..., Any]) -> Callable[..., Any]:
        register(Operation(name, generic, summary, cpu=cpu, cuda=cuda))
        return generic

    return wrap
