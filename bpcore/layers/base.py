"""The ``Layer`` interface: a forward pass and its hand-written chain rule."""

from __future__ import annotations

from collections.abc import Iterator
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

    ``forward`` and ``backward`` do no argument checking: they are the hot
    path, and the network validates its input once, on the host, before it
    reaches them.
    """

    backend: Backend
    dtype: np.dtype
    #: The input width the layer requires, or None if it accepts any width.
    input_width: int | None = None

    def __init__(self) -> None:
        self._workspace: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails, so it costs nothing once built.
        if name in ("backend", "dtype"):
            raise AttributeError(
                f"{type(self).__name__}: the layer is not built yet, so it has no {name}; add it to a "
                "bpcore.Network (which builds it) before calling forward() or backward()"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # --- construction -------------------------------------------------------
    def build(self, in_features: int | None, dtype: np.dtype, backend: Backend) -> int | None:
        """Check the input width, record dtype and backend, return the output width.

        ``None`` means "any width" (shape-preserving layers at the start).
        """
        self.dtype = np.dtype(dtype)
        self.backend = backend
        self._workspace.clear()
        return in_features

    @property
    def built(self) -> bool:
        return "backend" in self.__dict__

    def parameters(self) -> list[Parameter]:
        """The trainable parameters, including those of nested layers."""
        return []

    def walk(self) -> Iterator[Layer]:
        """The layers nested inside this one, depth first (none for a plain layer)."""
        return iter(())

    def bind_random(self, generator: Any) -> Any:
        """Give the layer a random generator (for dropout masks); returns the previous one."""
        return None

    def buffers(self) -> dict[str, Any]:
        """Non-trainable state saved with the model (e.g. running statistics)."""
        return {}

    def set_buffer(self, name: str, value: Any) -> None:
        raise KeyError(f"{type(self).__name__} has no buffer {name!r}")

    def to(self, backend: Backend) -> None:
        """Move buffers to ``backend``'s device and drop cached workspaces."""
        moved = {name: self.backend.to_numpy(value) for name, value in self.buffers().items()}
        self.backend = backend
        self._workspace.clear()
        for name, value in moved.items():
            self.set_buffer(name, value)

    def config(self) -> dict[str, Any]:
        """The constructor arguments, as JSON-compatible values (for saving)."""
        return {}

    # --- computation --------------------------------------------------------
    def forward(self, x: Any, training: bool) -> Any:
        raise NotImplementedError

    def backward(self, grad_out: Any, *, accumulate: bool = True, need_input_grad: bool = True) -> Any:
        raise NotImplementedError

    def _not_run(self) -> RuntimeError:
        return RuntimeError(f"{self!r}: backward() called before forward()")

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
