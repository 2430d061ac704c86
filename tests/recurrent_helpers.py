"""What the recurrent-layer tests share: the layer kinds, PyTorch twins and a central difference."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bpcore.layers import GRU, LSTM, RNN
from bpcore.layers.recurrent import Recurrent

KINDS = ("lstm", "gru", "rnn-tanh", "rnn-relu")
NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def make(kind: str, features: int, hidden: int, **options: Any) -> Recurrent:
    """A layer of ``kind`` (one of :data:`KINDS`)."""
    if kind == "lstm":
        return LSTM(features, hidden, **options)
    if kind == "gru":
        return GRU(features, hidden, **options)
    return RNN(features, hidden, nonlinearity=kind.removeprefix("rnn-"), **options)


def torch_twin(layer: Recurrent, torch: Any) -> Any:
    """The same layer in PyTorch (float64, batch-first), its parameters copied from ``layer``."""
    kind = type(layer).__name__
    options = {"nonlinearity": layer.nonlinearity} if kind == "RNN" else {}  # type: ignore[attr-defined]
    twin = getattr(torch.nn, kind)(layer.input_size, layer.hidden_size, batch_first=True, **options).double()
    with torch.no_grad():
        for name in NAMES:
            getattr(twin, f"{name}_l0").copy_(torch.from_numpy(np.asarray(getattr(layer, name).data)))
    return twin


def central_difference(array: np.ndarray, loss: Callable[[], float], eps: float) -> np.ndarray:
    """d loss / d array by central differences, perturbing ``array`` in place (restored after)."""
    out = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        keep = array[index]
        array[index] = keep + eps
        plus = loss()
        array[index] = keep - eps
        minus = loss()
        array[index] = keep
        out[index] = (plus - minus) / (2 * eps)
    return out
