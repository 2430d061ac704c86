"""The BLAS thread policy: ``one_thread`` sets and restores the count, ``small_product`` picks it."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from bpcore.backends import blas_threads


@pytest.fixture
def blas():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    controller = threadpoolctl.ThreadpoolController().select(user_api="blas")
    if not controller.lib_controllers:
        pytest.skip("no BLAS library seen by threadpoolctl")
    return controller


def test_the_count_readers_read_what_threadpoolctl_reads(blas) -> None:
    blas_threads._controller()
    assert len(blas_threads._readers) == len(blas.lib_controllers)
    for count in (1, 2):
        with blas.limit(limits=count):
            for library, read in blas_threads._readers:
                assert read() == library.get_num_threads()


def test_one_thread_sets_one_and_restores_the_count_also_after_an_exception(blas) -> None:
    library = blas.lib_controllers[0]
    with blas.limit(limits=2):
        before = library.get_num_threads()
        with blas_threads.one_thread():
            assert library.get_num_threads() == 1
            with blas_threads.one_thread():  # nested: nothing to change, nothing to restore
                assert library.get_num_threads() == 1
            assert library.get_num_threads() == 1
        assert library.get_num_threads() == before
        with pytest.raises(KeyError), blas_threads.one_thread():
            raise KeyError("inside")
        assert library.get_num_threads() == before


def test_small_product_limits_only_the_products_openblas_would_split_up_to_most() -> None:
    most = blas_threads.SPLIT_FROM * 4
    for multiply_adds in (blas_threads.SPLIT_FROM + 1, most):
        assert isinstance(blas_threads.small_product(np, multiply_adds, most), blas_threads.one_thread)
    for multiply_adds in (blas_threads.SPLIT_FROM, most + 1):
        assert isinstance(blas_threads.small_product(np, multiply_adds, most), contextlib.nullcontext)
    assert isinstance(blas_threads.small_product(object(), most, most), contextlib.nullcontext)  # not NumPy
