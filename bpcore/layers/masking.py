"""Masks for variable-length sequences: the ``Masking`` layer (Keras's) and masks from lengths.

A mask is a boolean ``(N, T)`` array on the network's device, True at real
time steps and False at padding (see the mask protocol of
:class:`~bpcore.layers.Layer`).  ``Masking(mask_value)`` starts one from
float sequences padded with ``mask_value``; :func:`mask_from_lengths` makes
one from the sequences' lengths for a layer called by hand
(``layer.forward(x, training, mask=...)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import checks
from ..backends import backend_of, device_scope
from .base import Layer, Shape, shape_text


def mask_from_lengths(lengths: Any, steps: int) -> Any:
    """The ``(N, steps)`` mask of sequences with these ``lengths`` (padding after the real steps).

    ``lengths`` is a 1-D array or sequence of integers in ``[0, steps]``; the
    mask comes back on the same device as ``lengths`` (NumPy for a list).
    """
    steps = checks.integer(steps, "steps", minimum=1)
    backend = backend_of(lengths)  # NumPy for a list or a NumPy array, CuPy for a CuPy array
    with device_scope(backend):  # lengths' GPU, whichever the calling thread has current
        return _mask(backend.xp, lengths, steps)


def _mask(xp: Any, lengths: Any, steps: int) -> Any:
    values = xp.asarray(lengths)
    if values.ndim != 1 or values.dtype.kind not in "iu":
        raise ValueError(
            f"lengths: expected a 1-D array of integers (one length per sequence), got "
            f"dtype {values.dtype} and shape {tuple(values.shape)}"
        )
    if values.size and (int(values.min()) < 0 or int(values.max()) > steps):
        raise ValueError(
            f"lengths: expected lengths in [0, {steps}], got values from {int(values.min())} to "
            f"{int(values.max())}"
        )
    return xp.arange(steps)[None, :] < values[:, None]


class Masking(Layer):
    """Marks every time step whose features all equal ``mask_value`` as padding (Keras's ``Masking``).

    Input ``(N, T, ...)``; the output is the input with padded steps set to
    zero, and the mask ``(N, T)`` goes to the following layers (recurrent
    layers skip the padded steps).  Use it for float sequences padded with a
    value that never occurs in real data (0.0 by default).
    """

    def __init__(self, mask_value: float = 0.0) -> None:
        super().__init__()
        self.mask_value = _number(mask_value)
        self._real: Any = None

    def config(self) -> dict[str, Any]:
        return {"mask_value": self.mask_value}

    @property
    def produces_mask(self) -> bool:
        return True

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) < 1:
            raise ValueError(
                f"{self!r}: expected sequences (N, T, ...) with a time axis, got shape "
                f"{shape_text(input_shape)}"
            )
        return tuple(input_shape)

    def _steps_real(self, x: Any) -> Any:
        n, steps = x.shape[:2]
        return (x != self.mask_value).reshape(n, steps, -1).any(axis=2)

    def compute_mask(self, x: Any, mask: Any) -> Any:
        real = self._steps_real(x)
        return real if mask is None else real & mask

    def forward(self, x: Any, training: bool) -> Any:
        real = self._steps_real(x)
        keep = real.reshape(*real.shape, *(1,) * (x.ndim - 2)).astype(x.dtype)
        self._real = keep
        out = self.workspace("out", x.shape)
        return self.backend.xp.multiply(x, keep, out=out)

    def backward(self, grad_out: Any, *, accumulate: bool = True, need_input_grad: bool = True) -> Any:
        if self._real is None:
            raise self._not_run()
        if not need_input_grad:
            return None
        return self.backend.xp.multiply(grad_out, self._real, out=self.workspace("grad_in", grad_out.shape))

    def __repr__(self) -> str:
        return f"Masking(mask_value={self.mask_value!r})"


def _number(value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"Masking(mask_value): expected a number, got {type(value).__name__}")
    return float(value)
