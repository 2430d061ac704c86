"""Kernel implementations built on first use, once per operation, for all threads."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from ..ops.registry import KernelBuilder


class BuiltOnce:
    """Builds each operation's implementation with ``make(name)`` the first time it is asked for.

    Building compiles (Numba) or loads (CuPy) code, which is slow and must
    never happen at import or twice: the result is cached under a lock.
    """

    def __init__(self, make: Callable[[str], Callable[..., Any]]) -> None:
        self._make = make
        self._built: dict[str, Callable[..., Any]] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str) -> Callable[..., Any]:
        with self._lock:
            implementation = self._built.get(name)
            if implementation is None:
                implementation = self._built[name] = self._make(name)
        return implementation

    def builder(self, name: str) -> KernelBuilder:
        """The zero-argument builder that an operation declaration takes as ``cpu=``/``cuda=``."""
        return functools.partial(self, name)
