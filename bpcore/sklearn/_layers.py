"""``coefs_`` and ``intercepts_``: scikit-learn's per-layer arrays, backed by a bpcore network.

scikit-learn keeps ``coefs_[i]`` (shape (n_in, n_out)) and ``intercepts_[i]``
(shape (n_out,)) as plain lists of arrays that users and scikit-learn's own
tests read and assign.  Here they are views of the network's flat parameter
buffer: assigning a list or one item writes through to the network, and on
the CPU the arrays themselves are views of the parameters, so in-place edits
write through too (on a GPU they are host copies: assign whole arrays).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from ..backends import device_scope
from ..interop import is_cupy_array
from ..layers import Dense
from ..network import Network


def dense_layers(network: Network) -> list[Dense]:
    return [layer for layer in network.layers if isinstance(layer, Dense)]


def parameter_of(layer: Dense, kind: str) -> Any:
    return layer.weight if kind == "coefs_" else layer.bias


def host_view(network: Network, data: Any) -> np.ndarray:
    """The parameter as a NumPy array: a view on the CPU, a copy from a GPU."""
    return data if isinstance(data, np.ndarray) else network.backend.to_numpy(data)


def write_parameter(network: Network, kind: str, index: int, value: Any) -> None:
    """Copy ``value`` into layer ``index``'s weight or bias, checking the shape first."""
    layers = dense_layers(network)
    if not -len(layers) <= index < len(layers):
        raise IndexError(f"{kind}[{index}]: the network has {len(layers)} layers")
    parameter = parameter_of(layers[index], kind)
    if is_cupy_array(value):
        value = value.get()
    array = np.asarray(value, dtype=network.dtype)
    if array.shape != tuple(parameter.shape):
        raise ValueError(
            f"{kind}[{index}]: expected an array of shape {tuple(parameter.shape)}, got shape {array.shape}"
        )
    with device_scope(network.backend):  # the copy on the network's GPU's stream
        parameter.data[...] = network.backend.asarray(array, dtype=network.dtype)


class LayerArrays(list):  # type: ignore[type-arg]
    """A list of per-layer arrays whose item assignment writes into the network's parameters."""

    def __init__(self, network: Network, kind: str) -> None:
        self._network = network
        self._kind = kind
        super().__init__(
            host_view(network, parameter_of(layer, kind).data) for layer in dense_layers(network)
        )

    def __setitem__(self, index: Any, value: Any) -> None:
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"{self._kind}: assign one layer at a time (an integer index), got {index!r}")
        index = int(index)
        write_parameter(self._network, self._kind, index, value)
        layer = dense_layers(self._network)[index]
        super().__setitem__(index, host_view(self._network, parameter_of(layer, self._kind).data))


def assign_all(network: Network, kind: str, values: Any) -> None:
    """``estimator.coefs_ = [...]``: one array per layer, all shapes checked before any is written."""
    values = list(values)
    layers = dense_layers(network)
    if len(values) != len(layers):
        raise ValueError(f"{kind}: expected {len(layers)} arrays (one per layer), got {len(values)}")
    for index, (layer, value) in enumerate(zip(layers, values, strict=True)):
        shape = np.shape(value)
        if shape != tuple(parameter_of(layer, kind).shape):
            raise ValueError(
                f"{kind}[{index}]: expected an array of shape {tuple(parameter_of(layer, kind).shape)}, "
                f"got shape {shape}"
            )
    for index, value in enumerate(values):
        write_parameter(network, kind, index, value)


def layer_sizes(coefs: list[Any], intercepts: list[Any]) -> list[int]:
    """The unit counts [n_in, hidden..., n_out] that weights assigned before fitting describe."""
    shapes = [np.shape(coef) for coef in coefs]
    if not shapes or any(len(shape) != 2 for shape in shapes):
        raise ValueError("coefs_: expected a list of 2-d arrays of shape (n_in, n_out)")
    sizes = [shapes[0][0]] + [shape[1] for shape in shapes]
    for index, (before, after) in enumerate(itertools.pairwise(shapes)):
        if before[1] != after[0]:
            raise ValueError(
                f"coefs_[{index + 1}]: expected {before[1]} rows to follow coefs_[{index}], got {after[0]}"
            )
    if len(intercepts) != len(coefs) or any(
        np.shape(b) != (n,) for b, n in zip(intercepts, sizes[1:], strict=True)
    ):
        raise ValueError(f"intercepts_: expected {len(coefs)} vectors of lengths {sizes[1:]}")
    return [int(size) for size in sizes]
