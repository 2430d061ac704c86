"""The one memory-layout guard of the kernels that walk flat C-order memory.

Every Numba kernel, and every CUDA ``RawModule`` kernel (softmax
cross-entropy rows, batch-norm columns), reads and writes its arrays as one
flat C-order block: an F-ordered array (``pandas.DataFrame.to_numpy()``,
``cupy.asarray`` of Fortran data), a transposed prediction or a strided
slice would be read in the wrong order and give wrong numbers without any
error.  :func:`flat_or_generic` wraps such a kernel so that it runs only
when every array argument is C-contiguous and hands the call to the
operation's generic ``xp`` version (which takes any strides) otherwise.
CuPy's ``ElementwiseKernel`` and ``ReductionKernel`` index through the
arrays' strides themselves and need no guard, ``raw`` arguments included:
CuPy's ``CArray::operator[](ptrdiff_t)`` (``carray.cuh``) turns a C-order
index into byte offsets through the shape and strides whenever the array is
not C-contiguous.  The elementwise operations declared ``flat=True`` and the
:func:`c_ordered` copies before ``raw`` arguments are therefore not needed for
correct numbers on a GPU; they keep such kernels on the flat indexing that
the host emulation in the tests checks, at the cost of the generic version or
a copy for an argument that is not C-contiguous (the network's own arrays and
workspaces always are).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

_PYTHON_SCALARS = frozenset({float, int, bool, type(None)})


def c_contiguous(*arrays: Any) -> bool:
    """Whether every argument that is an array (has ``flags``) is C-contiguous; scalars pass."""
    for array in arrays:
        if type(array) in _PYTHON_SCALARS:  # the common case, skipped without an attribute miss
            continue
        flags = getattr(array, "flags", None)
        if flags is not None and not flags.c_contiguous:
            return False
    return True


def c_ordered(array: Any) -> Any:
    """``array`` as C-contiguous memory, copied only where it is not (see the module docstring on ``raw``).

    ``copy()`` is C-ordered in NumPy and CuPy alike, so no array module is needed.
    """
    return array if array.flags.c_contiguous else array.copy()


def flat_or_generic(kernel: Callable[..., Any], generic: Callable[..., Any]) -> Callable[..., Any]:
    """``kernel`` when all array arguments are C-contiguous, else ``generic`` (same signature)."""

    @functools.wraps(kernel)
    def guarded(*args: Any) -> Any:
        if c_contiguous(*args):
            return kernel(*args)
        return generic(*args)

    guarded.kernel = kernel  # type: ignore[attr-defined]
    guarded.generic = generic  # type: ignore[attr-defined]
    return guarded


def unguarded(operation: Callable[..., Any]) -> Callable[..., Any]:
    """``operation`` without the layout guard, for callers whose arrays are C-contiguous by construction.

    A training step calls its kernels on arrays made C-contiguous where they
    are created (workspaces, the flat parameter buffers and views of them,
    optimiser state), so checking the layout again on every call is pure
    overhead; such callers take the kernel itself.  An operation with no
    guard (a generic version, an elementwise CUDA kernel) is returned as it is.
    """
    return getattr(operation, "kernel", operation)
