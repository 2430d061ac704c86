"""Layers that change only the shape of each sample: Flatten and Reshape (views, no copy)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .base import Layer, Shape, shape_text


class Flatten(Layer):
    """``(N, d1, d2, ...) -> (N, d1 * d2 * ...)`` in row-major order, as PyTorch's ``flatten(1)``."""

    preserves_shape = False

    def __init__(self) -> None:
        super().__init__()
        self._shape: tuple[int, ...] = ()

    def output_shape(self, input_shape: Shape) -> Shape:
        if not input_shape:
            raise ValueError(f"{self!r}: expected an input with at least one axis after the batch axis")
        if any(size is None for size in input_shape):
            return (None,)
        return (math.prod(input_shape),)  # type: ignore[arg-type]

    def forward(self, x: Any, training: bool) -> Any:
        self._shape = tuple(x.shape)
        return self.backend.xp.ascontiguousarray(x).reshape(x.shape[0], -1)

    def backward(self, grad_out: Any, *, accumulate: bool = True, need_input_grad: bool = True) -> Any:
        if not self._shape:
            raise self._not_run()
        return grad_out.reshape(self._shape)


class Reshape(Layer):
    """Each sample reshaped to ``shape`` (the batch axis kept; one entry may be -1), row-major."""

    preserves_shape = False

    def __init__(self, shape: tuple[int, ...] | list[int]) -> None:
        super().__init__()
        items = tuple(shape) if isinstance(shape, (tuple, list)) else None
        if (
            not items
            or not all(
                not isinstance(s, bool) and isinstance(s, (int, np.integer)) and (s >= 1 or s == -1)
                for s in items
            )
            or sum(1 for s in items if s == -1) > 1
        ):
            raise ValueError(
                "Reshape(shape): expected a non-empty tuple of positive sizes (at most one -1), "
                f"got {shape!r}"
            )
        self.shape = tuple(int(s) for s in items)
        self._in_shape: tuple[int, ...] = ()

    def config(self) -> dict[str, Any]:
        return {"shape": list(self.shape)}

    def output_shape(self, input_shape: Shape) -> Shape:
        if any(size is None for size in input_shape):
            return tuple(None if s == -1 else s for s in self.shape)
        total = math.prod(input_shape)  # type: ignore[arg-type]
        known = math.prod(s for s in self.shape if s != -1)
        if (-1 in self.shape and total % known) or (-1 not in self.shape and total != known):
            raise ValueError(
                f"{self!r}: cannot reshape an input of shape {shape_text(input_shape)} ({total} values per "
                f"sample) to {shape_text(self.shape)}"
            )
        return tuple(total // known if s == -1 else s for s in self.shape)

    def forward(self, x: Any, training: bool) -> Any:
        self._in_shape = tuple(x.shape)
        return self.backend.xp.ascontiguousarray(x).reshape(x.shape[0], *self.shape)

    def backward(self, grad_out: Any, *, accumulate: bool = True, need_input_grad: bool = True) -> Any:
        if not self._in_shape:
            raise self._not_run()
        return grad_out.reshape(self._in_shape)
