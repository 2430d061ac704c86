"""The device's own ceilings, measured in the same run as everything else.

* GEMM rate: a large square matrix product in the benchmark's dtype, through
  the same BLAS the network uses.  Every achieved GFLOP/s figure is shown as a
  percentage of it.
* Copy bandwidth: a large array copy, counting bytes read plus bytes written;
  the ceiling for elementwise kernels.

A ceiling is the best the device does, so each is the fastest of its samples
(the benchmark's own figures are medians); a busy moment on the machine
therefore cannot lower the ceiling and flatter the percentages.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..backends import Backend
from .timing import Budget, Clock, HostClock, measure


@dataclasses.dataclass(frozen=True)
class Ceilings:
    """Peak rates measured on one device."""

    gemm_gflops: float
    gemm_size: int
    copy_gbps: float
    copy_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def device_clock(backend: Backend) -> Clock:
    """CUDA events on a GPU; the host clock on the CPU."""
    if backend.device.is_cuda:
        from .timing import CupyEventClock

        return CupyEventClock(backend.scope())  # type: ignore[attr-defined]
    return HostClock()


def measure_ceilings(backend: Backend, dtype: Any, budget: Budget, *, gemm_size: int | None = None,
                     copy_elements: int | None = None) -> Ceilings:
    """GEMM rate and copy bandwidth of ``backend``'s device in ``dtype``."""
    xp = backend.xp
    dtype = np.dtype(dtype)
    n = gemm_size or (8192 if backend.device.is_cuda else 2048)
    elements = copy_elements or (1 << 27 if backend.device.is_cuda else 1 << 24)
    rng = np.random.default_rng(1)
    a = backend.asarray(rng.standard_normal((n, n), dtype=np.float32), dtype=dtype)
    b = backend.asarray(rng.standard_normal((n, n), dtype=np.float32), dtype=dtype)
    c = backend.empty((n, n), dtype)
    source = backend.asarray(rng.standard_normal(elements, dtype=np.float32), dtype=dtype)
    target = backend.empty((elements,), dtype)

    def gemm(steps: int) -> None:
        for _ in range(steps):
            xp.matmul(a, b, out=c)

    def copy(steps: int) -> None:
        for _ in range(steps):
            xp.copyto(target, source)

    clock = device_clock(backend)
    gemm_time = measure("gemm", gemm, clock, budget).minimum
    copy_time = measure("copy", copy, clock, budget).minimum
    copied = 2 * elements * dtype.itemsize
    return Ceilings(
        gemm_gflops=2.0 * n**3 / gemm_time / 1e9,
        gemm_size=n,
        copy_gbps=copied / copy_time / 1e9,
        copy_bytes=copied,
    )
