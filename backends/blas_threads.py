"""The BLAS thread policy of the CPU backend: loops of small matrix products run on ONE BLAS thread.

NumPy's BLAS (OpenBLAS in NumPy's wheels) splits a product over its threads
once ``M * N * K`` passes a fixed size (about 2.6e5 in OpenBLAS), which the
per-step products of a recurrent layer, such as (32, 64) x (64, 256), do.
For such products the threads cost more than they bring: measured on a
2-core CPU, a (128, 64) x (64, 256) product took 37-78 us on one thread and
120-700 us on two as soon as another process used a core.  The large
products around the loop (the input projection of all time steps, the weight
gradients over all steps, a Dense layer over ``N * T`` rows) do gain from two
threads.  So a recurrent layer runs its time loop inside :func:`one_thread`
and everything else at the process's BLAS thread count, which is the user's
to set (``OPENBLAS_NUM_THREADS``, ``threadpoolctl.threadpool_limits``).

:func:`one_thread` uses threadpoolctl where it is installed (it comes with
scikit-learn) and does nothing without it.  It is thread-safe as threadpoolctl
makes it: OpenBLAS's thread count belongs to the whole process, and
threadpoolctl lets one Python thread at a time change it (the one that set it
first); while one thread's block runs, another thread's block changes
nothing, and the count is restored when the first block ends.  Products that
other threads run during a block also run on one thread: that changes their
speed, not what they compute.  On a GPU backend no block is entered.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

_lock = threading.Lock()
# threadpoolctl's controller of the BLAS libraries loaded at first use; False where threadpoolctl is missing.
_blas: Any = None


def _controller() -> Any:
    global _blas
    if _blas is None:
        with _lock:
            if _blas is None:
                try:
                    from threadpoolctl import ThreadpoolController
                except ImportError:
                    _blas = False
                else:
                    _blas = ThreadpoolController().select(user_api="blas")
    return _blas


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """The block's BLAS calls on one thread (where threadpoolctl is installed); the count restored after."""
    blas = _controller()
    if not blas:
        yield
        return
    with blas.limit(limits=1):
        yield
