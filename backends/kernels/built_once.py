"""Kernel implementations built on first use, once, for all threads."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

# A zero-argument callable returning an operation's compiled implementation
# (what an operation declaration takes as ``cpu=`` / ``cuda=``).
KernelBuilder = Callable[[], Callable[..., Any]]


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


def once(make: Callable[[], Callable[..., Any]]) -> KernelBuilder:
    """A zero-argument builder that runs ``make`` on its first call only (under a lock) and keeps the result.

    A failed build (``ImportError`` where Numba or CuPy is missing) is not
    kept: the next call tries again and fails the same way.
    """
    built: list[Callable[..., Any]] = []
    lock = threading.Lock()

    def build() -> Callable[..., Any]:
        with lock:
            if not built:
                built.append(make())
        return built[0]

    return build
