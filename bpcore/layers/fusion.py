"""The execution plan of a layer sequence: Dense layers absorb the activation after them.

Shared by :class:`~bpcore.Network` and :class:`~bpcore.layers.Residual`, so a
sequence of layers runs the same way wherever it appears.
"""

from __future__ import annotations

from collections.abc import Sequence

from .activations import Activation
from .base import Layer
from .dense import Dense


def fusion_plan(layers: Sequence[Layer]) -> list[Layer]:
    """The layers to run, with each elementwise activation that follows a Dense folded into it.

    A fused Dense adds its bias and applies the activation in one pass after
    the matrix product, and applies the activation's derivative in one pass
    before its backward products.  A Dense without bias is not fused.
    """
    plan: list[Layer] = []
    position = 0
    while position < len(layers):
        layer = layers[position]
        position += 1
        if isinstance(layer, Dense):
            following = layers[position] if position < len(layers) else None
            fused = following if isinstance(following, Activation) and layer.bias is not None else None
            layer.fuse(fused)
            if fused is not None:
                position += 1
        plan.append(layer)
    return plan


def check_distinct(layers: Sequence[Layer], *, owner: str) -> None:
    """Reject a layer object that appears twice, at any depth: it would share one state."""
    seen: set[int] = set()
    for layer in layers:
        for member in (layer, *layer.walk()):
            if id(member) in seen:
                raise ValueError(
                    f"{owner}: the layer object {member!r} appears twice; create a new one for each position"
                )
            seen.add(id(member))


def input_width(layers: Sequence[Layer]) -> int | None:
    """The input width a layer sequence requires (None if any width will do).

    Layers without a fixed width preserve the width, so the first fixed one decides.
    """
    return next((layer.input_width for layer in layers if layer.input_width is not None), None)


def build_sequence(
    layers: Sequence[Layer], in_features: int | None, dtype: object, backend: object, *, owner: str
) -> int | None:
    """Build ``layers`` in order; a width mismatch names the position within ``owner``."""
    width = in_features
    for position, layer in enumerate(layers):
        try:
            width = layer.build(width, dtype, backend)  # type: ignore[arg-type]
        except ValueError as exc:
            raise ValueError(f"{owner}[{position}]: {exc}") from None
    return width
