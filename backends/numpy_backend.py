"""The CPU backend: NumPy arrays, with compiled Numba kernels where present."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from .base import DEFAULT_KERNEL_MODE, Backend
from .device import CPU
from .ops import Operation

logger = logging.getLogger("bpcore")


class NumpyBackend(Backend):
    """NumPy on the CPU; operations with a CPU kernel run it when Numba is installed."""

    name = "numpy"

    def __init__(self, *, kernels: str = DEFAULT_KERNEL_MODE) -> None:
        super().__init__(np, CPU, kernels=kernels)

    def _compiled(self, operation: Operation) -> tuple[Callable[..., Any], str] | None:
        if operation.cpu is None:
            return None
        try:
            return operation.cpu(), "numba"
        except ImportError as exc:
            logger.debug("no CPU kernel for %s (%s); using the generic version", operation.name, exc)
            return None
