"""Host-to-device transfer of a training batch and of a large array (GPU only).

Times ``backend.asarray`` of a NumPy array (pageable host memory) onto the
GPU, then a synchronisation: what moving one minibatch costs next to a
training step.  On the CPU there is nothing to transfer, so the CPU case is
skipped with that reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import estimate, iterations_for, run_timed, synchronizer

from bpcore.backends import get_backend

SHAPES = [
    pytest.param((128, 784), id="mnist-batch128"),
    pytest.param((1024, 784), id="mnist-batch1024"),
    pytest.param((4096, 4096), id="64MiB"),
]


@pytest.mark.parametrize("shape", SHAPES)
def test_host_to_device(benchmark: Any, device: str, shape: tuple[int, int]) -> None:
    if device == "cpu":
        pytest.skip("host-to-device transfer needs a GPU: on the CPU the data is already in place")
    backend = get_backend(device)
    host = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    synchronize = synchronizer(device)

    def transfer() -> None:
        backend.asarray(host, dtype=np.float32)

    seconds = estimate(transfer, synchronize)
    benchmark.group = f"host-to-device {device}"
    run_timed(benchmark, transfer, synchronize, rounds=10, iterations=iterations_for(seconds),
              settle_seconds=0.05)
    benchmark.extra_info.update(bytes=host.nbytes, gb_per_s=host.nbytes / benchmark.stats.stats.median / 1e9)
