"""Shared set-up of the pytest-benchmark suite (``pytest benchmarks --benchmark-only``).

Every benchmark runs once per device: the CPU and each usable CUDA GPU (GPU
cases are marked ``gpu`` and skipped, with the reason, where there is none).
Timed functions synchronise the device before they return, so that the host
clock pytest-benchmark reads counts all queued GPU work.  See
``benchmarks/results/METHOD.md`` for the method.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

try:
    import bpcore  # noqa: F401
except ImportError:  # a source checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bpcore.backends import probe_cuda

SETTLE_SECONDS = 0.2  # lets the previous benchmark's thread pools go idle


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--bench-slow", action="store_true", default=False,
                     help="also run benchmarks marked slow (the wide 784-4096-4096-10 MLP, 1e7-element ops)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    probe = probe_cuda() if any(item.get_closest_marker("gpu") for item in items) else None
    skip_gpu = pytest.mark.skip(reason=f"needs a usable CUDA GPU: {probe.reason}") if probe else None
    skip_slow = pytest.mark.skip(reason="slow benchmark: run with --bench-slow")
    for item in items:
        if item.get_closest_marker("gpu") is not None and probe is not None and probe.count == 0:
            item.add_marker(skip_gpu)
        if item.get_closest_marker("slow") is not None and not config.getoption("--bench-slow"):
            item.add_marker(skip_slow)


def device_params() -> list[Any]:
    """``cpu``, and ``cuda:N`` for every GPU (one ``cuda:0`` case, skipped, where there is none).

    Probing for GPUs happens once per process and is cached.
    """
    count = probe_cuda().count
    gpus = [f"cuda:{i}" for i in range(max(count, 1))]
    return ["cpu"] + [pytest.param(name, marks=pytest.mark.gpu, id=name) for name in gpus]


@pytest.fixture(params=device_params())
def device(request: pytest.FixtureRequest) -> Iterator[str]:
    """The device name, with that GPU made current for the whole benchmark (so cuda:N works for N > 0)."""
    name = request.param
    if name == "cpu":
        yield name
        return
    from bpcore.backends import device_scope, get_backend

    with device_scope(get_backend(name)):
        yield name


def synchronizer(device: str) -> Callable[[], None]:
    """A function that waits for all queued work on ``device`` (nothing to wait for on the CPU)."""
    if device == "cpu":
        return lambda: None
    from bpcore.backends import get_backend

    return get_backend(device).synchronize


def run_timed(benchmark: Any, call: Callable[[], Any], synchronize: Callable[[], None], *,
              rounds: int, iterations: int = 1, warmup_rounds: int = 3,
              settle_seconds: float = SETTLE_SECONDS) -> None:
    """Benchmark ``call`` followed by a device synchronisation, after the pools settle and a warm-up."""

    def target() -> None:
        call()
        synchronize()

    time.sleep(settle_seconds)
    benchmark.pedantic(target, rounds=rounds, iterations=iterations, warmup_rounds=warmup_rounds)


def iterations_for(seconds_per_call: float, *, round_seconds: float = 0.01) -> int:
    """Calls per round so that one round lasts about ``round_seconds``."""
    return max(1, round(round_seconds / max(seconds_per_call, 1e-9)))


def estimate(call: Callable[[], Any], synchronize: Callable[[], None]) -> float:
    """Seconds of one warm call (after one untimed call)."""
    call()
    synchronize()
    started = time.perf_counter()
    call()
    synchronize()
    return time.perf_counter() - started
