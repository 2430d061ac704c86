"""Residual (skip) connection: ``y = x + f(x)`` for a sequence of layers ``f``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..backends import Backend
from ..parameters import Parameter
from .base import Layer
from .fusion import build_sequence, check_distinct, fusion_plan, input_width


class Residual(Layer):
    """``y = x + f(x)``, where ``f`` runs ``layers`` in order.

    ``f`` must give back as many features as it receives.  A Dense followed by
    an activation inside ``f`` is fused exactly as in a Network, and the
    parameters of ``f`` live in the network's flat buffers like any others.
    The backward pass adds the identity path's gradient to ``f``'s.
    """

    def __init__(self, *layers: Layer) -> None:
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        if not layers:
            raise ValueError("Residual(*layers): expected at least one layer, got none")
        for position, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(
                    f"Residual(*layers): layers[{position}] must be a bpcore Layer, "
                    f"got {type(layer).__name__}"
                )
        check_distinct(layers, owner="Residual(*layers)")
        self.layers = list(layers)
        self._plan: list[Layer] = []
        self._ran = False

    @property
    def input_width(self) -> int | None:  # type: ignore[override]
        return input_width(self.layers)

    def __repr__(self) -> str:
        return f"Residual({', '.join(repr(layer) for layer in self.layers)})"

    def build(self, in_features: int | None, dtype: np.dtype, backend: Backend) -> int | None:
        super().build(in_features, dtype, backend)
        width = build_sequence(self.layers, in_features, dtype, backend, owner="Residual layers")
        expected = in_features if in_features is not None else self.input_width
        if width != expected:
            raise ValueError(
                f"{self!r}: the residual branch must keep the width, but it maps {expected} "
                f"features to {width}; the skip connection adds the input to the branch's output"
            )
        self._plan = fusion_plan(self.layers)
        self._ran = False
        return width

    def parameters(self) -> list[Parameter]:
        return [parameter for layer in self.layers for parameter in layer.parameters()]

    def walk(self) -> Iterator[Layer]:
        for layer in self.layers:
            yield layer
            yield from layer.walk()

    def to(self, backend: Backend) -> None:
        super().to(backend)
        self._ran = False

    def forward(self, x: Any, training: bool) -> Any:
        h = x
        for layer in self._plan:
            h = layer.forward(h, training)
        out = self.workspace("out", x.shape)
        self._ran = True
        return self.backend.xp.add(x, h, out=out)

    def backward(self, grad_out: Any, *, accumulate: bool = True, need_input_grad: bool = True) -> Any:
        if not self._ran:
            raise self._not_run()
        plan = self._plan
        g = grad_out
        for position in range(len(plan) - 1, -1, -1):
            g = plan[position].backward(
                g, accumulate=accumulate, need_input_grad=need_input_grad or position > 0
            )
        if not need_input_grad:
            return None
        grad_in = self.workspace("grad_in", grad_out.shape)
        return self.backend.xp.add(grad_out, g, out=grad_in)
