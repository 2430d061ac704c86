"""A layer's parts of the batch on several threads at once, each thread's matrix products on one BLAS thread.

Conv2D runs a large batch in parts (see :data:`bpcore.layers.conv.CHUNK_BYTES`):
gather, product, swap, per part.  With the BLAS on several threads only the
products ran in parallel; the gathers, swaps and scatters between them ran on
one core while the BLAS's other threads spun, waiting for the next product.
Splitting the parts among as many threads as the BLAS has, each running its
parts' products on one BLAS thread (:func:`~bpcore.backends.blas_threads.one_thread`),
runs everything in parallel and leaves no thread spinning.  NumPy's products and
the Numba kernels release the GIL, so the threads run at once.

:func:`slots` says how many threads a layer's parts get (the BLAS's thread
count, at most one per part); :func:`run` runs the bodies, the first on the
calling thread, and waits for all.  The worker threads are started on first
use, never at import, and live as long as the process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from ..backends import blas_threads
from ..backends.kernels import cpu as kcpu

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def slots(parts: int, elements: int) -> int:
    """Threads for ``parts`` parts of a batch whose largest per-part buffer has ``elements`` elements.

    One where there is one part, or where a part is large enough for the
    kernels' parallel (``prange``) builds: those are Numba's threads, which
    two callers must not drive at once.  Otherwise the BLAS's thread count, at
    most one thread per part.
    """
    if parts <= 1 or elements >= min(kcpu.PARALLEL_MIN.values()):
        return 1
    return max(1, min(parts, blas_threads.thread_count()))


def split(items: Sequence[int], count: int) -> list[Sequence[int]]:
    """``items`` in ``count`` contiguous runs of near-equal length (the first ones longer)."""
    size, extra = divmod(len(items), count)
    runs, start = [], 0
    for slot in range(count):
        end = start + size + (slot < extra)
        runs.append(items[start:end])
        start = end
    return runs


def _forget_workers() -> None:
    """In a forked child: the parent's worker threads do not exist there; start new ones when needed."""
    global _pool, _pool_size
    _pool, _pool_size = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers)


def _workers(count: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < count:
            _pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix="bpcore-parts")
            _pool_size = count
        return _pool


def run(bodies: Sequence[Callable[[], None]]) -> None:
    """Run ``bodies`` at once, the first on this thread, with the BLAS on one thread; wait for all.

    A body's exception is raised here once every body has finished.
    """
    if len(bodies) == 1:
        bodies[0]()
        return
    pool = _workers(len(bodies) - 1)
    with blas_threads.one_thread():
        futures = [pool.submit(body) for body in bodies[1:]]
        try:
            bodies[0]()
        finally:
            errors = [future.exception() for future in futures]
    for error in errors:
        if error is not None:
            raise error
