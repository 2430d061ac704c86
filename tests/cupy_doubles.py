"""Stand-ins with CuPy 14.2's behaviour where it differs from NumPy's, for tests without a GPU.

Each double copies one documented or source-level fact about CuPy that a
NumPy-only test run would never meet:

* :class:`CupyLikeArray`: a device array that is not a NumPy array, has no
  ``__array_namespace__`` (``cupy.ndarray`` has none) and refuses implicit
  conversion to NumPy (``np.asarray`` raises, as CuPy's ``__array__`` does);
  ``.get()`` copies it to the host; ``.set(host)`` copies a NumPy array of
  the same dtype and shape into it, as ``ndarray.set`` in ``cupy/_core/core.pyx``
  (TypeError for anything but a ``numpy.ndarray`` or another dtype,
  ValueError for another shape).  :class:`CupyLikeModule` makes them with ``empty``.
* :class:`CupyLikeModule` / :class:`CupyLikeBackend`: an array module over
  such arrays and a CUDA-device backend that owns them, so that a check done
  "with the backend's own ``xp``" can be watched.
* :class:`CupyLikeGenerator`: ``Generator.random(size=None, dtype, out)`` as in
  ``cupy/random/_generator_api.pyx``: ``out`` is checked against ``size`` only
  when ``size`` is given, and ``size=None`` draws ONE value that is then
  broadcast into ``out``.  ``integers`` returns a device array (0-d for
  ``size=None``), and the generator's state cannot be read or set: its
  ``bit_generator.state()`` is a method returning a device pointer
  (``cupy/random/_bit_generator.pyx``), not NumPy's ``state`` dictionary.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np

from bpcore.backends import Backend, Device


class CupyLikeArray:
    """A CUDA array as bpcore's input path sees ``cupy.ndarray`` (held in host memory here)."""

    __module__ = "cupy"  # bpcore recognises CuPy arrays by their module, without importing CuPy

    def __init__(self, data: Any, device_id: int = 0) -> None:
        self._data = np.array(data)
        self.device = types.SimpleNamespace(id=device_id)

    dtype = property(lambda self: self._data.dtype)
    shape = property(lambda self: self._data.shape)
    ndim = property(lambda self: self._data.ndim)
    size = property(lambda self: self._data.size)

    def __len__(self) -> int:
        return len(self._data)

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()`")

    def __getitem__(self, index: Any) -> CupyLikeArray:
        return CupyLikeArray(self._data[index], self.device.id)

    def get(self) -> np.ndarray:
        return self._data.copy()

    def astype(self, dtype: Any, copy: bool = True) -> CupyLikeArray:
        return CupyLikeArray(self._data.astype(dtype, copy=copy), self.device.id)

    def all(self) -> Any:
        return bool(self._data.all())

    def set(self, arr: Any) -> None:
        # cupy/_core/core.pyx, ndarray.set: the checks in this order, then a copy from the host.
        if not isinstance(arr, np.ndarray):
            raise TypeError("Only numpy.ndarray can be set to cupy.ndarray")
        if self._data.dtype != arr.dtype:
            raise TypeError(f"{arr.dtype} array cannot be set to {self._data.dtype} array")
        if self._data.shape != arr.shape:
            raise ValueError(f"Shape mismatch. Old shape: {self._data.shape}, new shape: {arr.shape}")
        self._data[...] = arr


class CupyLikeModule:
    """The few array-module functions the input path calls, over :class:`CupyLikeArray`; counts calls."""

    ndarray = CupyLikeArray

    def __init__(self) -> None:
        self.calls: list[str] = []

    def asarray(self, data: Any, dtype: Any = None) -> CupyLikeArray:
        self.calls.append("asarray")
        values = data._data if isinstance(data, CupyLikeArray) else data
        return CupyLikeArray(np.asarray(values, dtype=dtype))

    def empty(self, shape: Any, dtype: Any = float) -> CupyLikeArray:
        # cupy/_creation/basic.py: empty(shape, dtype=float, order='C'), a C-ordered device array.
        self.calls.append("empty")
        return CupyLikeArray(np.empty(shape, dtype=dtype))

    def isfinite(self, array: CupyLikeArray) -> CupyLikeArray:
        self.calls.append("isfinite")
        return CupyLikeArray(np.isfinite(array._data))


class CupyLikeBackend(Backend):
    """A backend on ``cuda:0`` whose array module is a :class:`CupyLikeModule`."""

    name = "cupy"

    def __init__(self) -> None:
        super().__init__(CupyLikeModule(), Device("cuda", 0), kernels="generic")

    def owns(self, array: Any) -> bool:
        return isinstance(array, CupyLikeArray) and array.device.id == self.device.index

    def to_numpy(self, array: Any) -> np.ndarray:
        return array.get() if isinstance(array, CupyLikeArray) else np.asarray(array)


class CupyLikeBitGenerator:
    """CuPy's cuRAND bit generator as seen from the host: ``state()`` is a device pointer, nothing sets it."""

    def state(self) -> int:
        return 0x7F0000000000  # an address in device memory, not a state that could be saved


class CupyLikeGenerator:
    """A NumPy generator behind CuPy's ``Generator.random`` signature and broadcasting semantics."""

    def __init__(self, seed: int | None = None) -> None:
        self._numpy = np.random.default_rng(seed)
        self.bit_generator = CupyLikeBitGenerator()

    def integers(self, low: int, high: int | None = None, size: Any = None, dtype: Any = np.int64,
                 endpoint: bool = False) -> CupyLikeArray:
        shape = () if size is None else size
        return CupyLikeArray(self._numpy.integers(low, high, size=shape, dtype=dtype, endpoint=endpoint))

    def random(self, size: Any = None, dtype: Any = np.float64, out: Any = None) -> Any:
        dtype = np.dtype(dtype)
        if out is not None:
            if out.dtype != dtype:
                raise TypeError(f"Supplied output array has the wrong type. Expected {dtype.name}, "
                                f"got {out.dtype.name}")
            if size is not None and tuple(np.atleast_1d(size)) != out.shape:
                raise ValueError("size must match out.shape when used together")
        drawn = self._numpy.random(size=() if size is None else size, dtype=dtype)
        if out is None:
            return np.asarray(drawn)
        out[...] = drawn  # CuPy's elementwise copy: a single draw is broadcast
        return out
