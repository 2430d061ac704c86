"""The ``Backend`` interface that all network code is written against.

A backend bundles an array module ``xp`` (NumPy or CuPy), the device it
places arrays on, and a table of hot operations resolved to the fastest
implementation this backend can run (see :mod:`bpcore.backends.ops`).
Everything else in bpcore calls ``backend.xp`` for ordinary array work and
``backend.ops.<name>`` for the hot steps.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from .device import Device
from .ops import OPERATIONS

KERNELS_ENV_VAR = "BPCORE_KERNELS"
KERNEL_MODES = ("auto", "fused", "generic")
#: ``auto``: compiled kernels, except where ``fit``, ``predict`` or ``evaluate`` find their work too
#: small to pay for Numba's start-up (:mod:`bpcore.training.kernel_choice`); ``fused``: compiled
#: kernels wherever they exist; ``generic``: the reference ``xp`` code only.
DEFAULT_KERNEL_MODE = "auto"


def kernel_mode_from_env() -> str:
    """``auto`` (default), ``fused`` or ``generic``, from ``BPCORE_KERNELS``."""
    value = os.environ.get(KERNELS_ENV_VAR, DEFAULT_KERNEL_MODE).strip().lower() or DEFAULT_KERNEL_MODE
    if value not in KERNEL_MODES:
        raise ValueError(
            f"environment variable {KERNELS_ENV_VAR}: expected one of {KERNEL_MODES}, got {value!r}"
        )
    return value


class OpTable:
    """Attribute access to a backend's resolved hot operations.

    Each operation is resolved on first use and then cached as a plain
    attribute, so that a call in a training step costs one attribute lookup.
    """

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        with self._lock:
            cached = self.__dict__.get(name)
            if cached is None:
                implementation, _source = self._backend.resolve(name)
                self.__dict__[name] = cached = implementation
        return cached


class Backend:
    """An array module on one device, plus its resolved hot operations."""

    name: str = "abstract"

    def __init__(self, xp: Any, device: Device, *, kernels: str = DEFAULT_KERNEL_MODE) -> None:
        if kernels not in KERNEL_MODES:
            raise ValueError(f"kernels: expected one of {KERNEL_MODES}, got {kernels!r}")
        self.xp = xp
        self.device = device
        self.kernels = kernels
        self.ops = OpTable(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} device={self.device} kernels={self.kernels}>"

    # --- operation dispatch ---------------------------------------------------
    def resolve(self, name: str) -> tuple[Callable[..., Any], str]:
        """The implementation of operation ``name`` and where it comes from."""
        try:
            operation = OPERATIONS[name]
        except KeyError:
            raise AttributeError(f"no hot operation named {name!r}") from None
        if self.kernels != "generic":  # auto resolves as fused: fit and co. rebind a generic twin
            kernel = self._compiled(operation)
            if kernel is not None:
                return kernel
        return functools.partial(operation.generic, self.xp), "generic"

    def _compiled(self, operation: Any) -> tuple[Callable[..., Any], str] | None:
        """The compiled kernel for ``operation`` on this backend, if any."""
        return None

    def dispatch_table(self) -> dict[str, str]:
        """For every hot operation, which implementation this backend runs."""
        return {name: self.resolve(name)[1] for name in sorted(OPERATIONS)}

    # --- arrays ---------------------------------------------------------------
    def asarray(self, data: Any, dtype: Any = None) -> Any:
        """``data`` as an array on this device (no copy if it already is one)."""
        return self.xp.asarray(data, dtype=dtype)

    def empty(self, shape: Any, dtype: Any) -> Any:
        return self.xp.empty(shape, dtype=dtype)

    def zeros(self, shape: Any, dtype: Any) -> Any:
        return self.xp.zeros(shape, dtype=dtype)

    def to_numpy(self, array: Any) -> np.ndarray:
        """A NumPy copy (or view, on the CPU) of an array of this backend."""
        return np.asarray(array)

    def owns(self, array: Any) -> bool:
        """Whether ``array`` already lives where this backend computes."""
        return isinstance(array, np.ndarray)

    def random(self, seed: int | None = None) -> Any:
        """A seeded random generator producing arrays on this device."""
        return np.random.default_rng(seed)

    def synchronize(self) -> None:
        """Wait until all queued work on the device is done (no-op on the CPU)."""
