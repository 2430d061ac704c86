"""The ``Layer`` interface: a forward pass and its hand-written chain rule."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backends import Backend
from ..parameters import Parameter


class Layer:
    """One step of a network.

    A layer is built once by its network (:meth:`build`), which tells it its
    input width, dtype and backend and collects its parameters.  ``forward``
    keeps what ``backward`` needs; ``backward`` receives the gradient of the
    loss with respect to the layer's output, writes (or, with
    ``accumulate=True``, adds) the gradients of its parameters, and returns
    the gradient with respect to its input.
    """

    backend: Backend
    dtype: np.dtype

    def __init__(self) -> None:
        self._workspace: dict[str, Any] = {}

    # --- construction -------------------------------------------------------
    def build(self, in_features: int | None, dtype: np.dtype, backend: Backend) -> int | None:
        """Check the input width, record dtype and backend, return the output width.

        ``None`` means "any width" (shape-preserving layers at the start).
        """
        self.dtype = np.dtype(dtype)
        self.backend = backend
        return in_features

    def parameters(self) -> list[Parameter]:
        return []

    def buffers(self) -> dict[str, Any]:
        """Non-trainable state saved with the model (e.g. running statistics)."""
        return {}

    def set_buffer(self, name: str, value: Any) -> None:
        raise KeyError(f"{type(self).__name__} has no buffer {name!r}")

    def to(self, backend: Backend) -> None:
        """Move buffers to ``backend``'s device and drop cached workspaces."""
        for name, value in self.buffers().items():
            self.set_buffer(name, backend.asarray(self.backend.to_numpy(value), dtype=value.dtype))
        self.backend = backend
        self._workspace.clear()

    def config(self) -> dict[str, Any]:
        """The constructor arguments, as JSON-compatible values (for saving)."""
        return {}

    # --- computation --------------------------------------------------------
    def forward(self, x: Any, training: bool) -> Any:
        raise NotImplementedError

    def backward(self, grad_out: Any, *, accumulate: bool = True, need_input_grad: bool = True) -> Any:
        raise NotImplementedError

    # --- helpers ------------------------------------------------------------
    def workspace(self, key: str, shape: tuple[int, ...], dtype: Any = None) -> Any:
        """A reusable scratch array, reallocated only when its shape changes.

        Reusing buffers between steps keeps a training step free of large
        allocations.  The array is overwritten by the next call with the same
        key, so nothing returned to a user may be a workspace.
        """
        array = self._workspace.get(key)
        want = self.dtype if dtype is None else dtype
        if array is None or array.shape != shape or array.dtype != want:
            array = self.backend.empty(shape, want)
            self._workspace[key] = array
        return array

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"
