"""Checks on user input, done on the host before data reaches the device.

Each check raises one exception that names the argument, what was expected
and what was seen.  None of them modifies anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .backends import Backend, device_scope
from .interop import import_array, to_backend

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype: Any, *, argument: str = "dtype") -> np.dtype:
    """The network dtype: float32 or float64."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved not in FLOAT_DTYPES:
        raise ValueError(f"{argument}: expected 'float32' or 'float64', got {dtype!r}")
    return resolved


def as_samples(
    data: Any,
    backend: Backend,
    dtype: np.dtype,
    *,
    check_shape: Callable[[tuple[int, ...], str], None],
    kind: str = "float",
    argument: str = "x",
    check_finite: bool = True,
    check_values: Callable[[Any, str], None] | None = None,
) -> Any:
    """``data`` (samples on axis 0, any per-sample shape) on ``backend``'s device, checked once.

    ``kind="float"``: floating-point features, converted to ``dtype``;
    integer data is refused (labels passed as features, or indices given to
    a float layer).  ``kind="index"``: integer indices, kept as int64.
    ``check_shape(shape, argument)`` receives the array's shape and raises a
    ``ValueError`` naming ``argument`` and the layer that cannot take it.  NaN and
    Inf are refused after the cast to ``dtype`` (device arrays are checked on
    the device, one synchronisation).  Nothing is copied when dtype and device already fit.
    ``check_values(array, argument)``, for index input, is the first layer's own
    check of the values (an embedding's index range), run before the conversion.
    """
    array = import_array(data, argument=argument)
    dtype_kind = array.dtype.kind
    if kind == "index" and check_values is not None:
        check_values(array, argument)
    if kind == "index":
        if dtype_kind not in "iu":
            raise TypeError(
                f"{argument}: expected integer indices (the first layer takes indices), "
                f"got dtype {array.dtype}"
            )
    elif dtype_kind in "biu":
        raise TypeError(
            f"{argument}: expected floating-point features, got dtype {array.dtype}; "
            f"convert with {argument}.astype('float32') if integer features are intended"
        )
    elif dtype_kind not in "f":
        raise TypeError(f"{argument}: expected floating-point features, got dtype {array.dtype}")
    if array.ndim < 2:
        raise ValueError(
            f"{argument}: expected an array with the samples on axis 0 and at least one more axis, "
            f"such as a 2-D array (n_samples, n_features); got shape {tuple(array.shape)}"
        )
    if array.shape[0] == 0:
        raise ValueError(f"{argument}: expected at least one sample, got shape {tuple(array.shape)}")
    check_shape(tuple(int(size) for size in array.shape), argument)
    if kind == "index":
        return to_backend(array, backend, np.dtype(np.int64))
    with np.errstate(over="ignore"):  # an overflow to Inf in the cast is reported just below
        converted = to_backend(array, backend, dtype)
    if check_finite:
        # Checked after the cast, with the backend's own array module (CuPy
        # arrays have no ``__array_namespace__`` to ask).
        with device_scope(backend):
            finite = bool(backend.xp.isfinite(converted).all())
        if not finite:
            raise ValueError(_not_finite(argument, array, dtype))
    return converted


def as_features(
    data: Any,
    backend: Backend,
    dtype: np.dtype,
    *,
    in_features: int | None,
    argument: str = "x",
    check_finite: bool = True,
) -> Any:
    """``data`` as a 2-D float array of the network's dtype on ``backend``'s device.

    ``data`` may be anything :func:`bpcore.interop.asarray` accepts (NumPy,
    pandas, PyTorch, JAX, CuPy, ...); it is not copied when it already has
    the right dtype and device.

    Rejects: non-numeric or integer data (a likely mistake: labels passed as
    features), a rank other than 2, no samples, the wrong number of features,
    and NaN or Inf (checked on the host; device arrays are checked on the
    device, which costs one synchronisation).  Finiteness is checked after
    the conversion to ``dtype``: a float64 ``1e39`` overflows float32 to Inf.
    """

    def two_dimensional(shape: tuple[int, ...], name: str) -> None:
        if len(shape) != 2:
            raise ValueError(
                f"{name}: expected a 2-D array of shape (n_samples, n_features), got shape {shape}"
            )
        if in_features is not None and shape[1] != in_features:
            raise ValueError(f"{name}: expected {in_features} features per sample, got shape {shape}")

    return as_samples(
        data, backend, dtype, check_shape=two_dimensional, argument=argument, check_finite=check_finite
    )


def _not_finite(argument: str, array: Any, dtype: np.dtype) -> str:
    """The error for non-finite data, saying when it was the cast to ``dtype`` that overflowed."""
    hint = ""
    if array.dtype.itemsize > dtype.itemsize and isinstance(array, np.ndarray) and np.isfinite(array).all():
        hint = f" after conversion to {dtype.name} (values beyond +-{np.finfo(dtype).max:.4g} overflow)"
    return f"{argument}: contains NaN or Inf values{hint} (shape {tuple(array.shape)})"


def as_gradient(
    data: Any, backend: Backend, dtype: np.dtype, shape: tuple[int, ...], *, argument: str
) -> Any:
    """A gradient for ``backward``: numeric, of ``shape``, finite once cast to ``dtype``, on ``backend``.

    Object, string and boolean arrays are refused rather than converted, and
    NaN or Inf would spread through every parameter gradient, so they are
    refused too (one device synchronisation on a GPU).
    """
    array = import_array(data, argument=argument)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{argument}: expected a numeric (float) array, got dtype {array.dtype}")
    if tuple(array.shape) != tuple(shape):
        raise ValueError(
            f"{argument}: expected the shape of the last forward() output {tuple(shape)}, "
            f"got {tuple(array.shape)}"
        )
    with np.errstate(over="ignore"):
        converted = to_backend(array, backend, dtype)
    with device_scope(backend):
        finite = bool(backend.xp.isfinite(converted).all())
    if not finite:
        raise ValueError(_not_finite(argument, array, dtype))
    return converted
