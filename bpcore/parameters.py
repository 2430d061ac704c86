"""Parameters and the flat buffers that hold them.

Every parameter of a network is a view into ONE contiguous data buffer, and
every gradient a view into one gradient buffer.  An optimiser step, a
gradient clip or an all-reduce is therefore a single whole-buffer operation
instead of one per parameter array.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .backends import Backend, device_scope

Initializer = Callable[[np.random.Generator, tuple[int, ...], int, int], np.ndarray]


class Parameter:
    """A trainable array ``data`` and its gradient ``grad``, both views of flat buffers.

    ``fan_in``/``fan_out`` feed the initialiser; ``decay`` says whether L1/L2
    regularisation and weight decay apply (weights yes, biases by choice).
    ``requires_grad`` (PyTorch's name and meaning): when False, ``backward``
    writes no gradient for the parameter and optimisers leave it unchanged.
    """

    __slots__ = (
        "__weakref__", "_requires_grad", "data", "decay", "fan_in", "fan_out", "grad", "init", "name",
        "offset", "shape", "store",
    )

    def __init__(
        self,
        name: str,
        shape: tuple[int, ...],
        init: Initializer,
        *,
        fan_in: int,
        fan_out: int,
        decay: bool = True,
    ) -> None:
        self.name = name
        self.shape = tuple(int(s) for s in shape)
        self.init = init
        self.fan_in = fan_in
        self.fan_out = fan_out
        self.decay = decay
        self.data: Any = None
        self.grad: Any = None
        self.store: ParameterStore | None = None
        self.offset = 0
        self._requires_grad = True

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def requires_grad(self) -> bool:
        """Whether the parameter is trained (``False``: frozen)."""
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"requires_grad: expected True or False, got {value!r}")
        if bool(value) != self._requires_grad:
            self._requires_grad = bool(value)
            if self.store is not None:
                self.store.trainability_changed()

    def __repr__(self) -> str:
        return f"Parameter({self.name!r}, shape={self.shape})"


class ParameterStore:
    """The two flat buffers (data and gradients) behind a set of parameters."""

    def __init__(self, parameters: Sequence[Parameter], backend: Backend, dtype: np.dtype) -> None:
        parameters = list(parameters)
        # Weak references: each parameter refers to its store, and references back would make a
        # cycle that keeps a dropped network's buffers alive until the next garbage collection.
        # The layers (and optimisers) hold the parameters.
        self._parameters = [weakref.ref(parameter) for parameter in parameters]
        self.dtype = np.dtype(dtype)
        offset = 0
        for parameter in parameters:
            parameter.store = self
            parameter.offset = offset
            offset += parameter.size
        self.size = offset
        #: Every parameter's shape, in buffer order (fixed: what two stores must share to be copied).
        self.shapes: tuple[tuple[int, ...], ...] = tuple(parameter.shape for parameter in parameters)
        #: Held by every change of the buffers that must look atomic to other threads (a step, a save);
        #: a Network replaces it with its own lock.
        self.lock: Any = threading.RLock()
        self.backend = backend
        self._trainable: list[tuple[int, int]] | None = [(0, offset)]
        self._all_trainable = True
        self.data: Any = backend.zeros((self.size,), self.dtype)
        self.grad: Any = backend.zeros((self.size,), self.dtype)
        self._bind()

    @property
    def parameters(self) -> list[Parameter]:
        """The parameters, in buffer order (those still alive: the layers hold them)."""
        alive = [reference() for reference in self._parameters]
        return [parameter for parameter in alive if parameter is not None]

    def _bind(self) -> None:
        for parameter in self.parameters:
            start, stop = parameter.offset, parameter.offset + parameter.size
            parameter.data = self.data[start:stop].reshape(parameter.shape)
            parameter.grad = self.grad[start:stop].reshape(parameter.shape)

    def initialize(self, rng: np.random.Generator) -> None:
        """Fill every parameter from its initialiser, drawn on the host.

        Drawing on the host makes a seeded network identical on every device.
        """
        host = np.empty(self.size, dtype=self.dtype)
        for parameter in self.parameters:
            values = parameter.init(rng, parameter.shape, parameter.fan_in, parameter.fan_out)
            host[parameter.offset : parameter.offset + parameter.size] = np.asarray(values).ravel()
        self.load(host)

    def load(self, flat: Any) -> None:
        """Copy a flat array of all parameter values into the data buffer."""
        with device_scope(self.backend):
            self.data[...] = self.backend.asarray(flat, dtype=self.dtype)

    def to(self, backend: Backend) -> None:
        """Move both buffers to ``backend``'s device and rebind every view."""
        if backend is self.backend:
            return
        data = backend.asarray(self.backend.to_numpy(self.data), dtype=self.dtype)
        grad = backend.asarray(self.backend.to_numpy(self.grad), dtype=self.dtype)
        self.backend, self.data, self.grad = backend, data, grad
        self._bind()

    def zero_grad(self) -> None:
        with device_scope(self.backend):
            self.grad.fill(0)

    # --- frozen parameters ----------------------------------------------------
    def trainability_changed(self) -> None:
        """Forget the cached trainable ranges (called when a ``requires_grad`` flag changes)."""
        self._trainable = None
        self._all_trainable = False  # until trainable_ranges() says otherwise

    @property
    def all_trainable(self) -> bool:
        """True when no parameter of the store is frozen (the common case: one flat update).

        Cached with the ranges: a step reads one attribute, and a change of a
        ``requires_grad`` flag recomputes it on the next read.
        """
        if self._trainable is None:
            self.trainable_ranges()
        return self._all_trainable

    def trainable_ranges(self) -> list[tuple[int, int]]:
        """The ``(start, stop)`` ranges of the flat buffers that hold trainable parameters.

        Neighbouring trainable parameters are merged, so a network with one
        frozen layer is updated in at most two passes.
        """
        ranges = self._trainable
        if ranges is None:
            ranges = []
            for parameter in self.parameters:
                if not parameter.requires_grad or parameter.size == 0:
                    continue
                start, stop = parameter.offset, parameter.offset + parameter.size
                if ranges and ranges[-1][1] == start:
                    ranges[-1] = (ranges[-1][0], stop)
                else:
                    ranges.append((start, stop))
            self._trainable = ranges
            self._all_trainable = ranges == [(0, self.size)]
        return ranges
