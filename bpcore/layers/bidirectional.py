"""``Bidirectional(layer)``: a recurrent layer run forwards and backwards in time, outputs concatenated."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..backends import Backend
from ..parameters import Parameter
from .base import Layer, Shape
from .recurrent import Recurrent


class Bidirectional(Layer):
    """``layer`` over the sequence and a twin of it over the reversed sequence (PyTorch's ``bidirectional``).

    The output concatenates the two on the feature axis: ``(N, T, 2H)`` with
    ``return_sequences=True`` (step t holds the forward state after step t
    and the reverse state after reading steps T-1 down to t), else ``(N, 2H)``:
    the forward state after each sequence's last real step and the reverse
    state after its first, as PyTorch's ``h_n`` of the two directions.  With a
    mask, the reverse direction reads each sequence's real steps from its last
    to its first (padded steps are skipped, wherever they are).

    The twin's parameters follow the forward layer's, named as PyTorch names
    them (``weight_ih_reverse`` ... for ``weight_ih_l0_reverse``), so a
    bidirectional PyTorch layer's eight tensors copy over in order.  The
    directions are ``layer.forward_layer`` and ``layer.backward_layer`` (each
    with its own ``initial_state`` and ``state``).
    """

    uses_mask = True
    preserves_shape = False

    def __init__(self, layer: Recurrent) -> None:
        super().__init__()
        if not isinstance(layer, Recurrent):
            raise TypeError(
                f"Bidirectional(layer): expected an RNN, LSTM or GRU layer, got {type(layer).__name__}"
            )
        if any(parameter.store is not None for parameter in layer.parameters()):
            raise ValueError(
                f"Bidirectional(layer): {layer!r} already belongs to a Network; wrap a new layer object"
            )
        self.forward_layer = layer
        self.backward_layer = type(layer)(**layer.config())
        for parameter in self.backward_layer.parameters():
            parameter.name = f"{parameter.name}_reverse"
        #: The wrapped layer (what the model format saves as this layer's child).
        self.layers = [layer]
        self._ran: tuple[int, bool] | None = None

    @property
    def return_sequences(self) -> bool:
        return self.forward_layer.return_sequences

    def config(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        return f"Bidirectional({self.forward_layer!r})"

    @property
    def input_shape(self) -> Shape:
        return self.forward_layer.input_shape

    def output_shape(self, input_shape: Shape) -> Shape:
        out = self.forward_layer.output_shape(input_shape)
        return (*out[:-1], 2 * self.forward_layer.hidden_size)

    def compute_mask(self, x: Any, mask: Any) -> Any:
        return self.forward_layer.compute_mask(x, mask)

    def build(self, input_shape: Shape | None, dtype: np.dtype, backend: Backend) -> Shape | None:
        out = super().build(input_shape if input_shape is not None else self.input_shape, dtype, backend)
        for layer in (self.forward_layer, self.backward_layer):
            layer.build(input_shape, dtype, backend)
        self._ran = None
        return out

    def parameters(self) -> list[Parameter]:
        return [*self.forward_layer.parameters(), *self.backward_layer.parameters()]

    def walk(self) -> Iterator[Layer]:
        yield self.forward_layer
        yield self.backward_layer

    def to(self, backend: Backend) -> None:
        super().to(backend)  # the network moves the two directions itself (they are in walk())
        self._ran = None

    def forward(self, x: Any, training: bool, mask: Any = None) -> Any:
        size = self.forward_layer.hidden_size
        self.backward_layer.check_forward_batch(x.shape[0])  # both states fit before either direction runs
        ahead = self.forward_layer.forward(x, training, mask)
        reversed_x = self.workspace("x_reversed", x.shape)
        reversed_x[...] = x[:, ::-1]
        behind = self.backward_layer.forward(reversed_x, training, None if mask is None else mask[:, ::-1])
        if self.return_sequences:
            out = self.workspace("out", (*ahead.shape[:2], 2 * size))
            out[:, :, :size] = ahead
            out[:, :, size:] = behind[:, ::-1]
        else:
            out = self.workspace("out", (ahead.shape[0], 2 * size))
            out[:, :size] = ahead
            out[:, size:] = behind
        self._ran = (size, self.return_sequences)
        return out

    def backward(self, grad_out: Any, *, accumulate: bool = True, need_input_grad: bool = True) -> Any:
        if self._ran is None:
            raise self._not_run()
        size, sequences = self._ran
        self.backward_layer.check_backward_batch()
        ahead = self.forward_layer.backward(
            grad_out[..., :size], accumulate=accumulate, need_input_grad=need_input_grad
        )
        behind_grad = grad_out[:, ::-1, size:] if sequences else grad_out[:, size:]
        behind = self.backward_layer.backward(
            behind_grad, accumulate=accumulate, need_input_grad=need_input_grad
        )
        if not need_input_grad:
            return None
        grad_in = self.workspace("grad_in", ahead.shape)
        return self.backend.xp.add(ahead, behind[:, ::-1], out=grad_in)
