"""The CUDA backend: CuPy arrays on one GPU, with fused CuPy kernels.

CuPy is imported only when this backend is created, never on import of
bpcore, so that a CPU-only user never initialises CUDA.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .base import Backend
from .device import Device
from .ops import Operation


class CupyBackend(Backend):
    """CuPy on one CUDA GPU."""

    name = "cupy"

    def __init__(self, device: Device, *, kernels: str = "auto") -> None:
        import cupy

        super().__init__(cupy, device, kernels=kernels)
        self._cuda_device = cupy.cuda.Device(device.index)

    def resolve(self, name: str) -> tuple[Callable[..., Any], str]:
        """Operation ``name`` run with this backend's GPU current, compiled or generic.

        CuPy launches on the calling thread's current GPU, so an operation on
        ``cuda:1`` arrays called from a thread whose current GPU is 0 would
        read GPU 1's memory from GPU 0 (or fail without peer access).
        """
        implementation, source = super().resolve(name)
        cuda_device = self._cuda_device

        def on_device(*args: Any) -> Any:
            with cuda_device:
                return implementation(*args)

        return on_device, source

    def _compiled(self, operation: Operation) -> tuple[Callable[..., Any], str] | None:
        if operation.cuda is None:
            return None
        return operation.cuda(), "cuda"

    def asarray(self, data: Any, dtype: Any = None) -> Any:
        with self._cuda_device:
            return self.xp.asarray(data, dtype=dtype)

    def empty(self, shape: Any, dtype: Any) -> Any:
        with self._cuda_device:
            return self.xp.empty(shape, dtype=dtype)

    def zeros(self, shape: Any, dtype: Any) -> Any:
        with self._cuda_device:
            return self.xp.zeros(shape, dtype=dtype)

    def to_numpy(self, array: Any) -> np.ndarray:
        if isinstance(array, self.xp.ndarray):
            return self.xp.asnumpy(array)
        return np.asarray(array)

    def owns(self, array: Any) -> bool:
        return isinstance(array, self.xp.ndarray) and array.device.id == self.device.index

    def random(self, seed: int | None = None) -> Any:
        with self._cuda_device:
            return self.xp.random.default_rng(seed)

    def synchronize(self) -> None:
        self._cuda_device.synchronize()

    def scope(self) -> Any:
        """A context manager making this backend's GPU current for CuPy calls."""
        return self._cuda_device
