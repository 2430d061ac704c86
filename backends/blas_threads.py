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
while the per-step products are small (:func:`small_product`; larger ones,
such as (32, 128) x (128, 512), made the steps 1.2x faster on two threads of a quiet
machine) and everything else at the process's BLAS thread count, which is the
user's to set (``OPENBLAS_NUM_THREADS``, ``threadpoolctl.threadpool_limits``).

:func:`one_thread` uses threadpoolctl where it is installed (it comes with
scikit-learn) and does nothing without it.  OpenBLAS's thread count belongs
to the whole process and neither OpenBLAS nor threadpoolctl coordinates the
threads that change it: a block reads the count, sets one and sets back what
it read.  Blocks of several bpcore threads leave the count where it was
(one that starts while another runs reads one and changes nothing), but a
``threadpool_limits`` block that a user's thread runs at the same time is
not seen: it may meet the count a bpcore block sets back, and the last of
the two to end decides the count left (measured: 1 in 200 such races left
the process on one thread).  Products that run anywhere during a block run
on one thread: that changes their speed, never what they compute.  A user
who sets the count should set it for the process (``OPENBLAS_NUM_THREADS``).
On a GPU backend no block is entered.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import numpy as np

#: OpenBLAS runs a product of at most about this many multiply-adds (``M * N * K``) on one thread by
#: itself (its GEMM_MULTITHREAD_THRESHOLD times SMP_THRESHOLD_MIN, 4 * 65536).
SPLIT_FROM = 1 << 18

_lock = threading.Lock()
# threadpoolctl's controller of the BLAS libraries loaded at first use; False where threadpoolctl is missing.
_blas: Any = None
# Per library: (its controller, the cheapest call that reads its thread count), made with ``_blas``.
_readers: tuple[tuple[Any, Any], ...] = ()


def _controller() -> Any:
    global _blas, _readers
    if _blas is None:
        with _lock:
            if _blas is None:
                try:
                    from threadpoolctl import ThreadpoolController
                except ImportError:
                    _readers, _blas = (), False
                else:
                    blas = ThreadpoolController().select(user_api="blas")
                    _readers = tuple((library, _count_reader(library)) for library in blas.lib_controllers)
                    _blas = blas
    return _blas


def _count_reader(library: Any) -> Any:
    """A call returning ``library``'s thread count: OpenBLAS's own C function where threadpoolctl reads it.

    threadpoolctl's ``get_num_threads`` looks the symbol up again on every call
    (1.5 us, against 0.2 us for the C call itself); for OpenBLAS built with its
    own threads (not OpenMP) it calls ``openblas_get_num_threads``, which is
    taken here once.  Any other library, or a threadpoolctl without these
    attributes, keeps threadpoolctl's method.
    """
    symbol = getattr(library, "_get_symbol", None)
    if (getattr(library, "internal_api", None) == "openblas" and callable(symbol)
            and getattr(library, "threading_layer", "openmp") != "openmp"):
        function = symbol("openblas_get_num_threads")
        if function is not None:
            return function
    return library.get_num_threads


class one_thread:  # used as a function: ``with one_thread():``
    """The block's BLAS calls on one thread (where threadpoolctl is installed); the count restored after.

    What ``threadpoolctl``'s ``limit(limits=1)`` does (each library's count read, set to one, set
    back), through the libraries' own calls: the ``limit`` object re-reads every library's whole
    description on entry, 9 us a block against under 1 us here, which convolutions that enter a
    block per forward and backward pass, and Dense layers per product, paid once per call.  Only
    the libraries not on one thread already are set (and set back): a process on one BLAS thread
    pays one read per library and block.
    """

    __slots__ = ("_changed",)

    def __init__(self) -> None:
        self._changed: list[tuple[Any, int]] = []

    def __enter__(self) -> None:
        if _blas is None:
            _controller()
        changed = self._changed
        for library, read in _readers:
            count = read()
            if count is not None and count != 1:
                library.set_num_threads(1)
                changed.append((library, count))

    def __exit__(self, *exc: object) -> None:
        changed = self._changed
        while changed:
            library, count = changed.pop()
            library.set_num_threads(count)


_NULL = contextlib.nullcontext()  # reusable: entering it does nothing


def small_product(xp: Any, multiply_adds: int, most: int) -> Any:
    """:func:`one_thread` for a CPU product that OpenBLAS would split yet has at most ``most`` multiply-adds.

    A null context on a GPU (``xp`` not NumPy), for products that run on one
    thread anyway (at most :data:`SPLIT_FROM`), and for larger ones, whose
    threads pay off.
    """
    if xp is not np or not SPLIT_FROM < multiply_adds <= most:
        return _NULL
    return one_thread()
