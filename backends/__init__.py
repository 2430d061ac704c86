"""Array backends: NumPy on the CPU and CuPy on CUDA GPUs.

This folder is the bottom layer of bpcore and is imported as
``bpcore.backends`` (never as a top-level ``backends`` module).
:func:`get_backend` returns the one backend object for a device; everything
above it is written against the :class:`Backend` interface.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from .base import DEFAULT_KERNEL_MODE, KERNEL_MODES, KERNELS_ENV_VAR, Backend, kernel_mode_from_env
from .device import (
    CPU,
    ENV_VAR,
    Device,
    DeviceError,
    DeviceLike,
    available_devices,
    current_device,
    probe_cuda,
    reset_default_device,
    resolve_device,
    set_device,
    use_device,
)
from .numpy_backend import NumpyBackend

__all__ = [
    "CPU",
    "DEFAULT_KERNEL_MODE",
    "ENV_VAR",
    "KERNELS_ENV_VAR",
    "KERNEL_MODES",
    "Backend",
    "Device",
    "DeviceError",
    "DeviceLike",
    "NumpyBackend",
    "available_devices",
    "backend_of",
    "current_device",
    "device_scope",
    "get_backend",
    "probe_cuda",
    "reset_default_device",
    "resolve_device",
    "set_device",
    "use_device",
]

_backends: dict[tuple[Device, str], Backend] = {}
_backends_lock = threading.Lock()


def get_backend(device: DeviceLike | None = None, *, kernels: str | None = None) -> Backend:
    """The backend for ``device`` (default: the current device).

    ``kernels`` is ``"auto"`` (compiled kernels where they exist, except in a
    ``fit``, ``predict`` or ``evaluate`` too small to pay for them: see
    :mod:`bpcore.training.kernel_choice`), ``"fused"`` (compiled kernels
    where they exist) or ``"generic"`` (the reference ``xp`` code only); by
    default it comes from the ``BPCORE_KERNELS`` environment variable.  Backends are created once
    per device and mode and shared.
    """
    resolved = resolve_device(device)
    mode = kernel_mode_from_env() if kernels is None else kernels
    if mode not in KERNEL_MODES:
        raise ValueError(f"kernels: expected one of {KERNEL_MODES}, got {mode!r}")
    key = (resolved, mode)
    with _backends_lock:
        backend = _backends.get(key)
        if backend is None:
            if resolved.is_cuda:
                from .cupy_backend import CupyBackend

                backend = CupyBackend(resolved, kernels=mode)
            else:
                backend = NumpyBackend(kernels=mode)
            _backends[key] = backend
    return backend


def backend_of(array: Any, *, kernels: str | None = None) -> Backend:
    """The backend whose device holds ``array``: the CPU for NumPy arrays, else the array's GPU.

    A NumPy array is recognised without importing CuPy.
    """
    if type(array).__module__.split(".")[0] == "cupy":
        return get_backend(Device("cuda", int(array.device.id)), kernels=kernels)
    return get_backend(CPU, kernels=kernels)


_NO_SCOPE = contextlib.nullcontext()  # stateless, so one instance serves every CPU call


def device_scope(backend: Backend) -> Any:
    """A context manager that makes ``backend``'s GPU current (no-op on the CPU)."""
    scope = getattr(backend, "scope", None)
    return scope() if scope is not None else _NO_SCOPE
