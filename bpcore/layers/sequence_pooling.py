"""Pooling over the time axis of sequences, padding left out: ``GlobalMaxPool1D`` and ``GlobalAvgPool1D``.

Input ``(N, T, F)``, batch first with the features last (what a recurrent
layer with ``return_sequences=True`` returns); output ``(N, F)``, each
feature's maximum or mean over the time steps.  With a mask (from
``Embedding(padding_idx=...)``, ``Masking`` or ``mask=``/``lengths=``, see
the mask protocol of :class:`~bpcore.layers.Layer`) only the real steps
count, wherever they are, so a padded sequence pools to what it would
without its padding; a sequence with no real step pools to zeros and
passes no gradient back.  Without a mask both equal PyTorch's
``x.max(dim=1).values`` and ``x.mean(dim=1)``.

They are a classifier's usual read-out of a whole sequence: the last state
of a recurrent layer has to carry everything through every later step,
while the maximum over its outputs keeps what any step found.  Both are a
few whole-array operations of the backend's ``xp`` (no per-step loop), so
the same code runs on NumPy and on CuPy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backends import Backend
from .base import Layer, Shape, shape_text


class _SequencePool(Layer):
    """What both poolings share: the shape rule, the mask protocol and the saved input shape."""

    uses_mask = True
    preserves_shape = False

    def __init__(self) -> None:
        super().__init__()
        self._shape: tuple[int, ...] = ()

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 2:
            raise ValueError(
                f"{self!r}: expected sequences of shape (N, T, F), got an input of shape "
                f"{shape_text(input_shape)}"
            )
        return (input_shape[1],)

    def compute_mask(self, x: Any, mask: Any) -> Any:
        """None: the time axis is pooled away."""
        return None

    def build(self, input_shape: Shape | None, dtype: np.dtype, backend: Backend) -> Shape | None:
        self._shape = ()
        return super().build(input_shape, dtype, backend)

    def to(self, backend: Backend) -> None:
        super().to(backend)
        self._shape = ()


class GlobalMaxPool1D(_SequencePool):
    """Each feature's maximum over the real time steps: ``(N, T, F) -> (N, F)`` (Keras's GlobalMaxPooling1D).

    The backward pass sends each output's gradient to the step that held the
    maximum (the first such step on ties, as ``argmax``); padded steps get none.
    """

    def __init__(self) -> None:
        super().__init__()
        self._chosen: Any = None

    def forward(self, x: Any, training: bool, mask: Any = None) -> Any:
        xp = self.backend.xp
        n, _, features = x.shape
        values = x
        if mask is not None:  # padded steps become -inf, so that they are never the maximum
            values = self.workspace("filled", x.shape)
            xp.copyto(values, x)
            xp.copyto(values, -np.inf, where=~mask[:, :, None])
        chosen = self._chosen = self.workspace("chosen", (n, features), np.int64)
        values.argmax(axis=1, out=chosen)
        out = self.workspace("out", (n, features))
        values.max(axis=1, out=out)
        if mask is not None:
            empty = ~mask.any(axis=1)[:, None]  # no real step: output 0 and no step chosen
            xp.copyto(out, 0.0, where=empty)
            xp.copyto(chosen, -1, where=empty)
        self._shape = tuple(x.shape)
        return out

    def backward(self, grad_out: Any, *, accumulate: bool = True, need_input_grad: bool = True) -> Any:
        if not self._shape:
            raise self._not_run()
        if not need_input_grad:
            return None
        xp = self.backend.xp
        steps = self._shape[1]
        hit = xp.arange(steps)[None, :, None] == self._chosen[:, None, :]
        grad_in = self.workspace("grad_in", self._shape)
        return xp.multiply(hit, grad_out[:, None, :], out=grad_in)


class GlobalAvgPool1D(_SequencePool):
    """Each feature's mean over the real time steps: ``(N, T, F) -> (N, F)`` (Keras's GlobalAveragePooling1D).

    With a mask the mean divides by each sequence's number of real steps; the
    backward pass spreads each output's gradient evenly over those steps.
    """

    def __init__(self) -> None:
        super().__init__()
        self._weights: Any = None

    def forward(self, x: Any, training: bool, mask: Any = None) -> Any:
        xp = self.backend.xp
        n, steps, features = x.shape
        weights = self._weights = self.workspace("weights", (n, steps))  # each step's share of the mean
        if mask is None:
            weights.fill(1.0 / steps)
        else:
            counts = mask.sum(axis=1, keepdims=True)
            xp.divide(mask, xp.maximum(counts, 1), out=weights)  # no real step: all weights 0
        out = self.workspace("out", (n, 1, features))
        xp.matmul(weights[:, None, :], x, out=out)  # (N, 1, T) @ (N, T, F): one batched product
        self._shape = tuple(x.shape)
        return out.reshape(n, features)

    def backward(self, grad_out: Any, *, accumulate: bool = True, need_input_grad: bool = True) -> Any:
        if not self._shape:
            raise self._not_run()
        if not need_input_grad:
            return None
        grad_in = self.workspace("grad_in", self._shape)
        return self.backend.xp.multiply(self._weights[:, :, None], grad_out[:, None, :], out=grad_in)
