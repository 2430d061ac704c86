"""Checks on user input, done on the host before data reaches the device.

Each check raises one exception that names the argument, what was expected
and what was seen.  None of them modifies anything.
"""

from __future__ import annotations

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
    device, which costs one synchronisation).
    """
    array = import_array(data, argument=argument)  # DLPack / CUDA array interface: no copy
    kind = array.dtype.kind
    if kind in "biu":
        raise TypeError(
            f"{argument}: expected floating-point features, got dtype {array.dtype}; "
            f"convert with {argument}.astype('float32') if integer features are intended"
        )
    if kind not in "f":
        raise TypeError(f"{argument}: expected floating-point features, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(
            f"{argument}: expected a 2-D array of shape (n_samples, n_features), "
            f"got shape {tuple(array.shape)}"
        )
    if array.shape[0] == 0:
        raise ValueError(f"{argument}: expected at least one sample, got shape {tuple(array.shape)}")
    if in_features is not None and array.shape[1] != in_features:
        raise ValueError(
            f"{argument}: expected {in_features} features per sample, got shape {tuple(array.shape)}"
        )
    if not check_finite:
        return to_backend(array, backend, dtype)
    if isinstance(array, np.ndarray):  # host data: checked on the host, before it moves
        _check_finite(np, array, argument)
        return to_backend(array, backend, dtype)
    # Device data is checked where it will be used, with that backend's own array
    # module: CuPy arrays have no ``__array_namespace__`` to ask.
    moved = to_backend(array, backend)
    with device_scope(backend):
        _check_finite(backend.xp, moved, argument)
    return moved if moved.dtype == dtype else backend.asarray(moved, dtype=dtype)


def _check_finite(xp: Any, array: Any, argument: str) -> None:
    if not bool(xp.isfinite(array).all()):
        raise ValueError(f"{argument}: contains NaN or Inf values (shape {tuple(array.shape)})")
