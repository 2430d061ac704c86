"""Copies of a network's trainable state, taken and restored in whole-buffer passes.

``fit`` takes one at the start of every epoch so that a diverged epoch can be
undone, and early stopping keeps one of the best epoch.  Parameters are
copied as the one flat buffer (one memory copy); layer buffers (running
statistics) and, optionally, the optimiser's state are copied alongside.
The copies are made into arrays allocated once, so taking a snapshot every
epoch allocates nothing after the first time.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np


def _is_array(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "copy")


_IMMUTABLE = (int, float, str, bool, type(None))


def _copy_state(value: Any, previous: Any = None) -> Any:
    """A deep copy of ``value``, reusing the arrays of ``previous`` where shapes match."""
    if isinstance(value, _IMMUTABLE):
        return value
    if _is_array(value):
        if (
            _is_array(previous)
            and type(previous) is type(value)
            and previous.shape == value.shape
            and previous.dtype == value.dtype
            and previous.shape != ()
        ):
            previous[...] = value
            return previous
        return value.copy()
    if isinstance(value, dict):
        old = previous if isinstance(previous, dict) else {}
        return {key: _copy_state(item, old.get(key)) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        same = isinstance(previous, (list, tuple)) and len(previous) == len(value)
        old_items = list(previous) if same else []
        items = [_copy_state(item, old_items[i] if old_items else None) for i, item in enumerate(value)]
        return type(value)(items)
    return copy.deepcopy(value)


def _fresh(value: Any) -> Any:
    """A deep copy that shares no array with ``value``."""
    return _copy_state(value, None)


class Snapshot:
    """The parameters and layer buffers of ``network`` (and ``optimizer``'s state, if given)."""

    def __init__(self, network: Any, optimizer: Any = None) -> None:
        self.network = network
        self.optimizer = optimizer
        self._data: Any = None
        self._buffers: dict[tuple[int, str], Any] = {}
        self._optimizer_state: Any = None
        self.taken = False

    def take(self) -> None:
        """Copy the current state into this snapshot."""
        store = self.network.store
        if self._data is None or self._data.shape != store.data.shape or (
            type(self._data) is not type(store.data)
        ):
            self._data = store.data.copy()
        else:
            self._data[...] = store.data
        for position, layer in enumerate(self.network.walk()):
            for name, value in layer.buffers().items():
                key = (position, name)
                self._buffers[key] = _copy_state(value, self._buffers.get(key))
        if self.optimizer is not None and hasattr(self.optimizer, "state_dict"):
            self._optimizer_state = _copy_state(self.optimizer.state_dict(), self._optimizer_state)
        self.taken = True

    def restore(self) -> None:
        """Put the saved state back (bit for bit)."""
        if not self.taken:
            raise RuntimeError("Snapshot.restore(): no snapshot has been taken")
        self.network.store.data[...] = self._data
        for position, layer in enumerate(self.network.walk()):
            for name in layer.buffers():
                saved = self._buffers.get((position, name))
                if saved is not None:
                    layer.set_buffer(name, saved.copy())
        if self._optimizer_state is not None and hasattr(self.optimizer, "load_state_dict"):
            self.optimizer.load_state_dict(_fresh(self._optimizer_state))

    # --- checkpoints ----------------------------------------------------------
    def state(self) -> dict[str, Any] | None:
        """The saved parameters and layer buffers as NumPy arrays (for a checkpoint); None if not taken."""
        if not self.taken:
            return None
        to_numpy = self.network.backend.to_numpy
        return {
            "parameters": to_numpy(self._data),
            "buffers": {
                f"{position}/{name}": to_numpy(value) for (position, name), value in self._buffers.items()
            },
        }

    def check_state(self, state: Any) -> None:
        """Raise ValueError unless ``state`` (from :meth:`state`) fits this network; changes nothing."""
        if not isinstance(state, dict) or set(state) != {"parameters", "buffers"}:
            raise ValueError(f"expected {{'parameters', 'buffers'}}, got {type(state).__name__}")
        store = self.network.store
        data = state["parameters"]
        if not (isinstance(data, np.ndarray) and data.shape == (store.size,) and data.dtype == store.dtype):
            raise ValueError(f"parameters: expected {store.size} values of {store.dtype.name}")
        if not np.isfinite(data).all():
            raise ValueError("parameters contain NaN or Inf values")
        expected = {
            f"{position}/{name}": value
            for position, layer in enumerate(self.network.walk())
            for name, value in layer.buffers().items()
        }
        buffers = state["buffers"]
        if not isinstance(buffers, dict) or set(buffers) != set(expected):
            raise ValueError(f"buffers: expected {sorted(expected)}")
        for key, value in buffers.items():
            if not (isinstance(value, np.ndarray) and value.shape == tuple(expected[key].shape)):
                raise ValueError(f"buffers: {key} must have shape {tuple(expected[key].shape)}")

    def load_state(self, state: dict[str, Any]) -> None:
        """Make ``state`` (checked with :meth:`check_state`) this snapshot's content."""
        backend, dtype = self.network.backend, self.network.store.dtype
        self._data = backend.asarray(state["parameters"], dtype=dtype)
        self._buffers = {}
        for key, value in state["buffers"].items():
            position, name = key.split("/", 1)
            self._buffers[(int(position), name)] = backend.asarray(value, dtype=value.dtype)
        self.taken = True
