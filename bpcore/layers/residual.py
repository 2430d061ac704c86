"""Residual (skip) connection: ``y = x + f(x)`` for a sequence of layers ``f``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backends import Backend
from .base import Container, Layer, Shape, shape_text
from .fusion import (
    batch_statistics_count,
    build_sequence,
    check_distinct,
    fusion_plan,
    input_shape,
    output_shapes,
)


class Residual(Container):
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
    def input_shape(self) -> Shape | None:
        return input_shape(self.layers)

    def output_shape(self, input_shape: Shape) -> Shape:
        out = output_shapes(self.layers, input_shape, owner="Residual layers")[-1]
        if len(out) != len(input_shape) or any(
            a is not None and b is not None and a != b for a, b in zip(out, input_shape, strict=True)
        ):
            maps = (
                f"{input_shape[0]} features to {out[0]}" if len(input_shape) == len(out) == 1
                else f"{shape_text(input_shape)} to {shape_text(out)}"
            )
            raise ValueError(
                f"{self!r}: the residual branch must keep the shape, but it maps {maps}; "
                "the skip connection adds the input to the branch's output"
            )
        return tuple(input_shape)

    def batch_statistics_count(self, input_shape: Shape) -> int | None:
        return batch_statistics_count(self.layers, input_shape)

    def __repr__(self) -> str:
        return f"Residual({', '.join(repr(layer) for layer in self.layers)})"

    def build(self, input_shape: Shape | None, dtype: np.dtype, backend: Backend) -> Shape | None:
        expected = input_shape if input_shape is not None else self.input_shape
        super().build(expected, dtype, backend)  # checks the branch when the shape is known
        build_sequence(self.layers, expected, dtype, backend, owner="Residual layers")
        self._plan = fusion_plan(self.layers)
        self._ran = False
        return expected

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
