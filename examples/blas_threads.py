"""A helper shared by the examples with custom training loops."""

from __future__ import annotations


def limit_blas_threads(count: int) -> None:
    """Run the matrix products on ``count`` threads (where threadpoolctl is installed).

    A custom loop makes thousands of products of a few hundred thousand
    operations each: extra BLAS threads only add wake-up cost, and on a
    machine shared with other work they stall.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(count, user_api="blas")
