"""Dropout: zero a random fraction ``p`` of the units while training."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import checks
from ..backends import Backend, device_scope
from .base import Layer, Shape


class Dropout(Layer):
    """Inverted dropout with drop probability ``p``.

    In training each unit is kept with probability ``1 - p`` and scaled by
    ``1 / (1 - p)``, so the expected output equals the input and evaluation
    needs no rescaling; in evaluation the layer is the identity.  The mask
    comes from the network's seeded generator on the network's device, so a
    seeded network drops the same units on every run.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = checks.real(p, "Dropout(p)", minimum=0.0, below=1.0, expected="a drop probability in [0, 1)")
        self._random: Any = None
        self._own_random = False  # True when the layer made its generator itself (no network)
        self._mask: Any = None
        self._ran = False

    def config(self) -> dict[str, Any]:
        return {"p": self.p}

    def bind_random(self, generator: Any) -> Any:
        previous, self._random = self._random, generator
        self._own_random = False
        return previous

    def build(self, input_shape: Shape | None, dtype: np.dtype, backend: Backend) -> Shape | None:
        self._mask, self._ran = None, False
        return super().build(input_shape, dtype, backend)

    def to(self, backend: Backend) -> None:
        super().to(backend)
        self._mask, self._ran = None, False
        if self._own_random:  # a CuPy generator's state lives on the device it was made on
            self._random, self._own_random = None, False

    def forward(self, x: Any, training: bool) -> Any:
        self._ran = True
        if not training or self.p == 0.0:
            self._mask = None
            return x
        if self._random is None:  # used outside a network: an unseeded generator on this device
            self._random, self._own_random = self.backend.random(None), True
        uniform = self.workspace("uniform", x.shape)
        # ``size`` is required: CuPy's Generator.random(out=...) without it draws ONE
        # value and broadcasts it over ``out``.  A CuPy generator draws only while
        # the device it was created on is current.
        with device_scope(self.backend):
            self._random.random(size=uniform.shape, dtype=uniform.dtype, out=uniform)
        mask = self._mask = self.workspace("mask", x.shape)
        out = self.workspace("out", x.shape)
        return self.backend.ops.dropout_forward(x, uniform, self.p, out, mask)

    def backward(self, grad_out: Any, *, accumulate: bool = True, need_input_grad: bool = True) -> Any:
        if not self._ran:
            raise self._not_run()
        if self._mask is None:
            return grad_out
        grad_in = self.workspace("grad_in", grad_out.shape)
        return self.backend.ops.dropout_backward(grad_out, self._mask, grad_in)
