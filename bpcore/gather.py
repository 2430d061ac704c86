"""Picking one value per row, with its backward: the Q-value of the action taken.

``Gather`` is ``torch.gather(values, 1, index.unsqueeze(1)).squeeze(1)``
for a 2-D ``values`` (``values[i, index[i]]`` for every row ``i``), written
as bpcore writes losses: call it, then ask for the gradient::

    pick = bpcore.Gather()
    chosen = pick(q, actions)                   # (n,) from q (n, k) and actions (n,)
    value = huber(chosen, td_target)
    net.backward(pick.backward(huber.backward()))   # dLoss/dq: zero except at the chosen entries
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .backends import Backend, backend_of
from .interop import import_array


class Gather:
    """``out[i] = values[i, index[i]]`` and its backward, on the CPU or a GPU.

    Both results are buffers reused by the next call of the same object
    (copy to keep them).  ``check=False`` skips the checks of ``index``
    (integer dtype, shape (n,), every entry in ``[0, k)``; on a GPU checking
    the range waits for the device): an index out of range is then undefined
    behaviour, as in a CUDA kernel.
    """

    def __init__(self) -> None:
        self._backend: Backend | None = None
        self._index: Any = None
        self._shape: tuple[int, ...] | None = None
        self._out: Any = None
        self._grad: Any = None

    def __call__(self, values: Any, index: Any, *, check: bool = True) -> Any:
        backend = self._backend
        if backend is None or not backend.owns(values) or not backend.owns(index):
            values = import_array(values, argument="values")
            backend = self._backend = backend_of(values)
        if check:
            values, index = self._checked(backend, values, index)
        elif index.dtype != np.int64:
            index = index.astype(np.int64)
        rows = values.shape[0]
        out = self._out
        if out is None or out.shape != (rows,) or out.dtype != values.dtype:
            out = self._out = backend.empty((rows,), values.dtype)
        backend.ops.gather_rows(values, index, out)
        self._index, self._shape = index, values.shape
        return out

    def backward(self, grad_out: Any) -> Any:
        """dLoss/dvalues from dLoss/dout (shape (n,)): ``grad_out[i]`` at ``[i, index[i]]``, else 0."""
        if self._shape is None or self._backend is None:
            raise RuntimeError("Gather.backward(): call the Gather on (values, index) first")
        backend = self._backend
        grad = self._grad
        if grad is None or grad.shape != self._shape or grad.dtype != grad_out.dtype:
            grad = self._grad = backend.empty(self._shape, grad_out.dtype)
        if tuple(grad_out.shape) != self._shape[:1]:
            raise ValueError(f"grad_out: expected shape {self._shape[:1]}, got {tuple(grad_out.shape)}")
        backend.ops.scatter_rows(grad_out, self._index, grad)
        return grad

    def _checked(self, backend: Backend, values: Any, index: Any) -> tuple[Any, Any]:
        if values.ndim != 2 or values.dtype.kind != "f":
            raise ValueError(
                f"values: expected a 2-D float array (samples, choices), got {values.dtype} "
                f"of shape {tuple(values.shape)}"
            )
        index = import_array(index, argument="index")
        if index.dtype.kind not in "iu":
            raise TypeError(f"index: expected an integer array, got dtype {index.dtype}")
        if tuple(index.shape) != values.shape[:1]:
            raise ValueError(
                f"index: expected shape {values.shape[:1]} (one index per row of values), "
                f"got {tuple(index.shape)}"
            )
        index = backend.asarray(index, dtype=np.int64)
        if index.size and not bool(((index >= 0) & (index < values.shape[1])).all()):
            raise ValueError(f"index: every entry must be in [0, {values.shape[1]}), got values outside it")
        return backend.asarray(values), index
