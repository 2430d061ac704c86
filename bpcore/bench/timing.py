"""Timing done right: warm-up first, the median of repeats, the device synchronised.

A measured function ``run(steps)`` performs ``steps`` training steps (or
operations).  Each sample times one call; the call is long enough (many
steps for a fast operation) that the clock's resolution and the call's own
overhead vanish in it.  On a GPU the clock is a pair of CUDA events recorded
on the stream that does the work, so queued work is counted and host-side
timing noise is not.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

#: How long OpenBLAS's idle worker threads keep a core busy after a product that used them.  Measured on
#: a 2-core CPU with NumPy's OpenBLAS: after a two-thread product the process went on using a whole core
#: for 100-110 ms (its workers spin, then sleep), where PyTorch's OpenMP threads used none.  A library
#: sampled in that window (PyTorch on its two threads, right after a sample of bpcore's) loses a core.
IDLE_THREADS_SECONDS = 0.15


def let_idle_threads_sleep() -> None:
    """Wait until the BLAS threads of a previous sample have stopped spinning (:data:`IDLE_THREADS_SECONDS`).

    Called between the samples of two libraries that run interleaved, so that
    neither is timed while the other's idle threads still take a core.
    """
    time.sleep(IDLE_THREADS_SECONDS)


class Clock(Protocol):
    """Measures the time of one region of work on one device."""

    def start(self) -> None: ...

    def stop(self) -> float:
        """Seconds since :meth:`start`, after all work of the region has finished."""
        ...


class HostClock:
    """The host's monotonic clock, for work that is finished when the call returns."""

    def __init__(self) -> None:
        self._started = 0.0

    def start(self) -> None:
        self._started = time.perf_counter()

    def stop(self) -> float:
        return time.perf_counter() - self._started


class SynchronizingClock:
    """The host clock, with the device synchronised before each reading.

    For devices whose library offers no events; the synchronisation makes the
    reading include all queued work.
    """

    def __init__(self, synchronize: Callable[[], None]) -> None:
        self._synchronize = synchronize
        self._started = 0.0

    def start(self) -> None:
        self._synchronize()
        self._started = time.perf_counter()

    def stop(self) -> float:
        self._synchronize()
        return time.perf_counter() - self._started


class CupyEventClock:
    """CUDA events on CuPy's current stream of one GPU."""

    def __init__(self, cuda_device: Any) -> None:
        import cupy

        self._cupy = cupy
        self._device = cuda_device
        with cuda_device:
            self._begin = cupy.cuda.Event()
            self._end = cupy.cuda.Event()

    def start(self) -> None:
        with self._device:
            self._device.synchronize()
            self._begin.record()

    def stop(self) -> float:
        with self._device:
            self._end.record()
            self._end.synchronize()
            return self._cupy.cuda.get_elapsed_time(self._begin, self._end) / 1e3


class TorchEventClock:
    """CUDA events on PyTorch's current stream of one GPU."""

    def __init__(self, torch: Any, device: Any) -> None:
        self._torch = torch
        self._device = device
        self._begin = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)

    def start(self) -> None:
        self._torch.cuda.synchronize(self._device)
        self._begin.record(self._torch.cuda.current_stream(self._device))

    def stop(self) -> float:
        self._end.record(self._torch.cuda.current_stream(self._device))
        self._end.synchronize()
        return float(self._begin.elapsed_time(self._end)) / 1e3


@dataclasses.dataclass(frozen=True)
class Budget:
    """How long to measure one thing.

    ``repeats`` samples are taken (fewer, but never under ``min_repeats``, when
    ``max_seconds`` would be exceeded); each sample lasts about
    ``sample_seconds`` (at least one step); the first ``warmup_seconds`` of
    calls (at least one call) are not counted.
    """

    repeats: int = 7
    min_repeats: int = 3
    sample_seconds: float = 0.02
    warmup_seconds: float = 0.05
    max_seconds: float = 1.5

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ValueError(f"repeats: expected a positive integer, got {self.repeats!r}")
        for name in ("sample_seconds", "warmup_seconds", "max_seconds"):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"{name}: expected a non-negative number of seconds, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Measurement:
    """Seconds per step: the median of the samples, with their spread."""

    median: float
    minimum: float
    maximum: float
    samples: int
    steps_per_sample: int

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Timed:
    """Something to time: ``run(steps)`` and the clock that fits its device.

    A timed call runs a whole multiple of ``min_steps`` steps (for a library
    whose per-call overhead is paid once per pass over the data).
    """

    name: str
    run: Callable[[int], Any]
    clock: Clock
    min_steps: int = 1
    steps: int = 1
    per_step: list[float] = dataclasses.field(default_factory=list)

    def sample(self) -> float:
        """Seconds per step of one sample of ``self.steps`` steps."""
        self.clock.start()
        self.run(self.steps)
        seconds = self.clock.stop() / self.steps
        self.per_step.append(seconds)
        return seconds

    def warm_up(self, budget: Budget) -> float:
        """Run until warm, then choose the steps per sample; returns the estimated step time."""
        self.clock.start()
        self.run(self.min_steps)  # first call: allocation, compilation, caches
        self.clock.stop()
        spent, steps, estimate = 0.0, self.min_steps, float("inf")
        while True:
            self.clock.start()
            self.run(steps)
            elapsed = self.clock.stop()
            spent += elapsed
            estimate = min(estimate, elapsed / steps)
            if spent >= budget.warmup_seconds:
                break
            steps = min(steps * 2, 1 << 20)
        wanted = budget.sample_seconds / estimate if estimate > 0 else 1
        self.steps = self.min_steps * max(1, round(wanted / self.min_steps))  # whole multiples of min_steps
        return estimate

    def result(self) -> Measurement:
        if not self.per_step:
            raise RuntimeError(f"{self.name}: no samples were taken")
        return Measurement(
            median=statistics.median(self.per_step),
            minimum=min(self.per_step),
            maximum=max(self.per_step),
            samples=len(self.per_step),
            steps_per_sample=self.steps,
        )


def measure_interleaved(items: Sequence[Timed], budget: Budget) -> dict[str, Measurement]:
    """Warm every item up, then sample them in turn, round after round.

    Interleaving spreads any drift of the machine (other processes, clock
    changes) over all items alike, so that their ratios stay fair.
    """
    names = [item.name for item in items]
    if len(set(names)) != len(names):
        raise ValueError(f"items: names must be unique, got {names}")
    estimates = [item.warm_up(budget) for item in items]
    round_seconds = sum(estimate * item.steps for estimate, item in zip(estimates, items, strict=True))
    affordable = int(budget.max_seconds / round_seconds) if round_seconds > 0 else budget.repeats
    rounds = max(budget.min_repeats, min(budget.repeats, affordable))
    rounds = min(rounds, budget.repeats)
    for _ in range(rounds):
        for item in items:
            item.sample()
    return {item.name: item.result() for item in items}


def measure(name: str, run: Callable[[int], Any], clock: Clock, budget: Budget) -> Measurement:
    """Median seconds per step of ``run`` alone."""
    return measure_interleaved([Timed(name, run, clock)], budget)[name]
