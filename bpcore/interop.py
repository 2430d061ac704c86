"""Arrays from other libraries: anything with ``__dlpack__`` or ``__cuda_array_interface__``.

PyTorch tensors, JAX arrays, CuPy and NumPy arrays are imported without a
copy when they already live where they are wanted: DLPack (or the CUDA array
interface) hands over the memory itself.  bpcore's own outputs are NumPy or
CuPy arrays, which speak DLPack too, so they can be handed back the same way,
e.g. ``torch.from_dlpack(network.predict(x))``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .backends import Backend, DeviceLike, get_backend

# DLPack device types (dlpack.h, DLDeviceType)
_DL_CPU, _DL_CUDA, _DL_CUDA_HOST, _DL_CUDA_MANAGED = 1, 2, 3, 13


def is_cupy_array(data: Any) -> bool:
    """Whether ``data`` is a CuPy array (checked without importing CuPy)."""
    return type(data).__module__.split(".")[0] == "cupy"


def host_array(data: Any, dtype: Any = None) -> np.ndarray:
    """A NumPy copy or view of a NumPy or CuPy array, or of anything ``np.asarray`` takes.

    CuPy refuses the implicit conversion (``np.asarray`` of a CuPy array
    raises TypeError), so a device array is copied with its ``get()``.
    """
    if is_cupy_array(data):
        data = data.get()
    return np.asarray(data, dtype=dtype)


def import_array(data: Any, *, argument: str = "x") -> Any:
    """``data`` as a NumPy or CuPy array on the device it already lives on, sharing its memory.

    Objects with ``__dlpack__`` go through DLPack (CPU memory to NumPy, CUDA
    memory to CuPy), objects with only ``__cuda_array_interface__`` through
    CuPy; anything else (lists, pandas frames, ``__array__`` objects) through
    ``np.asarray``, which copies only when it must.
    """
    if isinstance(data, np.ndarray) or is_cupy_array(data):
        return data
    if hasattr(data, "__dlpack__") and hasattr(data, "__dlpack_device__"):
        try:
            kind, _index = data.__dlpack_device__()
            if kind in (_DL_CPU, _DL_CUDA_HOST):
                return np.from_dlpack(data)
            if kind in (_DL_CUDA, _DL_CUDA_MANAGED):
                import cupy

                return cupy.from_dlpack(data)
        except (RuntimeError, TypeError, ValueError, BufferError) as exc:
            raise TypeError(
                f"{argument}: could not share the memory of a {type(data).__name__} through DLPack ({exc})"
            ) from None
        raise TypeError(
            f"{argument}: a {type(data).__name__} on DLPack device type {kind} cannot be used; "
            "bpcore runs on the CPU and on CUDA GPUs"
        )
    if hasattr(data, "__cuda_array_interface__"):
        import cupy

        return cupy.asarray(data)
    try:
        return np.asarray(data)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{argument}: expected a numeric array, got {type(data).__name__} ({exc})") from None


def to_backend(array: Any, backend: Backend, dtype: Any = None) -> Any:
    """A NumPy or CuPy ``array`` on ``backend``'s device in ``dtype`` (no copy when nothing changes)."""
    if is_cupy_array(array):
        if not backend.device.is_cuda:
            array = array.get()
        elif array.device.id != backend.device.index:
            array = array.get()  # another GPU: through the host, which works without peer access
    return backend.asarray(array, dtype=dtype)


def asarray(data: Any, device: DeviceLike | None = None, dtype: Any = None) -> Any:
    """``data`` as a NumPy (CPU) or CuPy (CUDA) array, without a copy where possible.

    ``data`` may be anything with ``__dlpack__`` or ``__cuda_array_interface__``
    (PyTorch, JAX, CuPy), a NumPy array, or anything ``np.asarray`` accepts.
    With ``device=None`` the data stays on the device it is on; naming a
    ``device`` (``"cpu"``, ``"cuda:1"``) moves it there, copying only if it
    lives elsewhere.  A ``dtype`` different from the data's makes a
    converted copy.  The result shares memory with ``data`` when neither the
    device nor the dtype changes, so writes to one show in the other.
    """
    wanted = None if dtype is None else np.dtype(dtype)
    array = import_array(data, argument="data")
    if device is not None:
        return to_backend(array, get_backend(device), wanted)
    if wanted is not None and array.dtype != wanted:
        return array.astype(wanted)
    return array


__all__ = ["asarray", "host_array", "import_array", "is_cupy_array", "to_backend"]
