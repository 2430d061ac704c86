"""Conv2D's parts of a batch on several threads: how they are split, how many threads, errors."""

from __future__ import annotations

import threading

import pytest

from bpcore.backends import blas_threads
from bpcore.backends.kernels import cpu
from bpcore.layers import part_threads


def test_split_gives_contiguous_runs_of_near_equal_length() -> None:
    assert part_threads.split(range(0, 10, 2), 2) == [range(0, 6, 2), range(6, 10, 2)]
    assert [list(run) for run in part_threads.split(range(7), 3)] == [[0, 1, 2], [3, 4], [5, 6]]
    assert part_threads.split(range(0), 1) == [range(0)]


def test_slots_follow_the_blas_threads_but_not_for_one_part_or_parallel_kernels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(blas_threads, "thread_count", lambda: 2)
    assert part_threads.slots(4, 1000) == 2
    assert part_threads.slots(1, 1000) == 1
    monkeypatch.setattr(blas_threads, "thread_count", lambda: 8)
    assert part_threads.slots(3, 1000) == 3  # at most one thread a part
    # parts large enough for the kernels' prange builds run one after the other (Numba's own threads)
    assert part_threads.slots(4, min(cpu.PARALLEL_MIN.values())) == 1
    monkeypatch.setattr(blas_threads, "thread_count", lambda: 1)
    assert part_threads.slots(4, 1000) == 1


def test_thread_count_is_the_blas_count() -> None:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        assert blas_threads.thread_count() == 1


def test_run_runs_every_body_at_once_and_raises_a_body_error_after_all_finished() -> None:
    barrier = threading.Barrier(3, timeout=10)  # passes only if the three bodies run at the same time
    seen: list[int] = []

    def body(slot: int) -> None:
        barrier.wait()
        seen.append(slot)

    part_threads.run([lambda slot=slot: body(slot) for slot in range(3)])
    assert sorted(seen) == [0, 1, 2]

    finished: list[int] = []

    def failing() -> None:
        raise ValueError("a part failed")

    def slow() -> None:
        threading.Event().wait(0.05)
        finished.append(1)

    with pytest.raises(ValueError, match="a part failed"):
        part_threads.run([slow, failing])
    assert finished == [1]
