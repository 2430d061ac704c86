"""Device names, the default device and its scoped overrides.

A device is named ``"cpu"``, ``"cuda"`` (the first GPU), ``"cuda:N"`` or
``"auto"`` (a GPU if one is usable, otherwise the CPU).  The process-wide
default comes from the ``BPCORE_DEVICE`` environment variable, read the first
time it is needed, and can be replaced with :func:`set_device`.
:func:`use_device` overrides it for a block of code in the current thread or
task only (a ``ContextVar``), so concurrent threads never see each other's
choice.

Nothing here touches a GPU until a CUDA device is actually asked for; the
probe for GPUs runs once and is cached, because it can take seconds.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import logging
import os
import threading
from collections.abc import Iterator

logger = logging.getLogger("bpcore")

ENV_VAR = "BPCORE_DEVICE"
CUDA_INSTALL_HINT = (
    "install CuPy for your CUDA version: pip install 'bpcore[cuda13]' (CUDA 13) or "
    "pip install 'bpcore[cuda12]' (CUDA 12)"
)
NO_GPU_HINT = f"run on the CPU with {ENV_VAR}=cpu, or let {ENV_VAR}=auto pick a GPU only when one is usable"


class DeviceError(ValueError):
    """A device name is malformed, or names a device that is not usable here."""


@dataclasses.dataclass(frozen=True)
class Device:
    """A concrete device: the CPU, or one CUDA GPU by index."""

    kind: str
    index: int = 0

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"


DeviceLike = str | Device
CPU = Device("cpu")


@dataclasses.dataclass(frozen=True)
class CudaProbe:
    """What the one-time GPU probe found: how many GPUs, or why none.

    ``cupy_installed`` tells the two ways of having no GPU apart: CuPy
    missing (installing it is the fix) and CuPy present without a usable
    NVIDIA GPU or driver (installing CuPy again would change nothing).
    """

    count: int
    reason: str
    cupy_installed: bool = True

    @property
    def fix(self) -> str:
        """What to do when no GPU is usable, for this probe's case only."""
        return NO_GPU_HINT if self.cupy_installed else CUDA_INSTALL_HINT


@functools.lru_cache(maxsize=1)
def probe_cuda() -> CudaProbe:
    """Import CuPy and count the GPUs, once per process (the answer is cached)."""
    try:
        import cupy
    except ImportError as exc:
        return CudaProbe(0, f"CuPy is not installed ({exc})", cupy_installed=False)
    version = getattr(cupy, "__version__", "?")
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # CUDA raises its own error types; all mean "no GPU"
        return CudaProbe(0, f"no usable NVIDIA GPU or driver was found (CuPy {version}: {exc})")
    if count == 0:
        return CudaProbe(0, f"no usable NVIDIA GPU or driver was found (CuPy {version} counts 0 GPUs)")
    return CudaProbe(count, f"{count} CUDA GPU(s)")


def available_devices() -> list[str]:
    """Names of every device usable in this process (probes for GPUs once)."""
    return ["cpu"] + [f"cuda:{i}" for i in range(probe_cuda().count)]


def _parse_name(name: str, *, origin: str) -> Device | None:
    """Parse a device name; ``None`` means ``auto``."""
    text = name.strip().lower()
    if text == "auto":
        return None
    if text == "cpu":
        return CPU
    if text == "cuda" or text == "gpu":
        return Device("cuda", 0)
    if text.startswith("cuda:"):
        suffix = text[5:]
        if suffix.isdigit():
            return Device("cuda", int(suffix))
    raise DeviceError(
        f"{origin}: expected 'cpu', 'cuda', 'cuda:N' or 'auto', got {name!r}"
    )


def resolve_device(device: DeviceLike | None = None, *, origin: str = "device") -> Device:
    """Turn a device name (or ``None`` for the current device) into a usable Device.

    Raises :class:`DeviceError` naming what was asked, what is available and
    how to fix it when a CUDA device is asked for but cannot be used.  Only
    ``auto`` falls back to the CPU, and it logs the choice.
    """
    if device is None:
        return current_device()
    if isinstance(device, Device):
        parsed: Device | None = device
    elif isinstance(device, str):
        parsed = _parse_name(device, origin=origin)
    else:
        raise DeviceError(
            f"{origin}: expected a device name such as 'cpu' or 'cuda:0', "
            f"got {type(device).__name__} {device!r}"
        )
    if parsed is None:
        probe = probe_cuda()
        chosen = Device("cuda", 0) if probe.count else CPU
        logger.info("device 'auto' chose %s (%s)", chosen, probe.reason)
        return chosen
    if parsed.is_cuda:
        probe = probe_cuda()
        if probe.count == 0:
            raise DeviceError(
                f"{origin}: {str(parsed)!r} was asked for, but {probe.reason}; "
                f"available devices: cpu. To fix: {probe.fix}"
            )
        if parsed.index >= probe.count:
            last = f"cuda:{probe.count - 1}"
            raise DeviceError(
                f"{origin}: {str(parsed)!r} was asked for, but this machine has {probe.count} CUDA GPU(s) "
                f"(device index out of range); available devices: {', '.join(available_devices())}. "
                f"To fix: ask for {'cuda:0' if probe.count == 1 else 'cuda:0 to ' + last}"
            )
    return parsed


_default_lock = threading.Lock()
_default_device: Device | None = None
_scoped_device: contextvars.ContextVar[Device | None] = contextvars.ContextVar(
    "bpcore_device", default=None
)


def _default() -> Device:
    global _default_device
    with _default_lock:
        if _default_device is None:
            value = os.environ.get(ENV_VAR, "").strip()
            _default_device = resolve_device(value or "cpu", origin=f"environment variable {ENV_VAR}")
        return _default_device


def current_device() -> Device:
    """The device in effect here: a ``use_device`` scope, else the default."""
    scoped = _scoped_device.get()
    return scoped if scoped is not None else _default()


def set_device(device: DeviceLike) -> Device:
    """Replace the process-wide default device and return it.

    Unlike :func:`use_device` this is seen by every thread, and it survives
    between notebook cells.
    """
    global _default_device
    resolved = resolve_device(device, origin="set_device(device)")
    with _default_lock:
        _default_device = resolved
    return resolved


def reset_default_device() -> None:
    """Forget the default so that ``BPCORE_DEVICE`` is read again (for tests)."""
    global _default_device
    with _default_lock:
        _default_device = None


@contextlib.contextmanager
def use_device(device: DeviceLike) -> Iterator[Device]:
    """Make ``device`` current inside the ``with`` block, in this thread only."""
    resolved = resolve_device(device, origin="use_device(device)")
    token = _scoped_device.set(resolved)
    try:
        yield resolved
    finally:
        _scoped_device.reset(token)
