"""The execution plan of a layer sequence: a layer may absorb the one after it (Dense + activation).

Shared by :class:`~bpcore.Network` and :class:`~bpcore.layers.Residual`, so a
sequence of layers runs the same way wherever it appears.
"""

from __future__ import annotations

from collections.abc import Sequence

from .base import Layer, Shape


def fusion_plan(layers: Sequence[Layer]) -> list[Layer]:
    """The layers to run, each layer offered the next one to absorb (:meth:`Layer.absorb`).

    A Dense or Conv2D with bias absorbs a following elementwise activation:
    it adds its bias and applies the activation in one pass after the matrix
    product, and applies the activation's derivative in one pass before its
    backward products.  A Conv2D with a ReLU also takes a 2x2 stride-2
    MaxPool2D right after them (:meth:`Layer.absorb_after`).  An Embedding
    absorbs a following RNN, LSTM or GRU: the plan then runs the pair as one
    entry, whose input projection is a table lookup
    (:class:`~bpcore.layers.embedded_recurrent.EmbeddedRecurrent`).
    """
    plan: list[Layer] = []
    position = 0
    while position < len(layers):
        layer = layers[position]
        position += 1
        following = layers[position] if position < len(layers) else None
        if layer.absorb(following):
            position += 1
            after = layers[position] if position < len(layers) else None
            if layer.absorb_after(after):
                position += 1
        plan.append(layer.plan_entry())
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


def input_shape(layers: Sequence[Layer]) -> Shape | None:
    """The per-sample input shape a layer sequence requires (None if it is not fixed).

    Leading shape-preserving layers (activations, dropout) take any shape, so
    the first layer with a required shape decides, unless a layer that
    changes shapes without requiring one (Flatten, Reshape) comes first.
    """
    for layer in layers:
        if layer.input_shape is not None:
            return layer.input_shape
        if not layer.preserves_shape:
            return None
    return None


def input_width(layers: Sequence[Layer]) -> int | None:
    """The size of the last input axis a 2-D input needs (None if any size will do)."""
    shape = input_shape(layers)
    return shape[-1] if shape is not None and len(shape) == 1 else None


def output_shapes(layers: Sequence[Layer], shape: Shape, *, owner: str) -> list[Shape]:
    """Each layer's per-sample output shape for a per-sample input ``shape``, checked on the host.

    A shape a layer cannot take raises one ``ValueError`` naming the layer's
    position within ``owner`` and the shapes.
    """
    shapes: list[Shape] = []
    for position, layer in enumerate(layers):
        try:
            shape = layer.output_shape(tuple(shape))
        except ValueError as exc:
            raise ValueError(f"{owner}[{position}]: {exc}") from None
        shapes.append(shape)
    return shapes


def batch_statistics_count(layers: Sequence[Layer], shape: Shape) -> int | None:
    """The fewest values per channel one sample of ``shape`` gives a batch-statistics layer in ``layers``.

    ``layers`` run in order from a per-sample input ``shape`` (nested layers
    included, :meth:`Layer.batch_statistics_count`); None where none of them
    normalises with batch statistics.
    """
    fewest: int | None = None
    for layer in layers:
        count = layer.batch_statistics_count(tuple(shape))
        if count is not None:
            fewest = count if fewest is None else min(fewest, count)
        shape = layer.output_shape(tuple(shape))
    return fewest


def check_batch_statistics(layers: Sequence[Layer], shape: Shape, *, argument: str) -> None:
    """Reject a training batch of ``shape`` (batch axis first) that gives a BatchNorm in ``layers`` one value.

    Batch statistics need more than one value per channel, as in PyTorch: two
    samples of an (N, C) input, or one sample of an (N, C, H, W) input with
    H * W >= 2.  Checked before anything runs, so that no layer's running
    statistics move in a pass that then fails.
    """
    per_sample = batch_statistics_count(layers, tuple(shape[1:]))
    samples = shape[0] or 0
    if per_sample is not None and samples * per_sample < 2:
        raise ValueError(
            f"{argument}: BatchNorm needs more than 1 value per channel in training (its batch statistics), "
            f"got shape {tuple(shape)}: {samples} sample(s) giving it {per_sample} value(s) per channel each"
        )


def build_sequence(
    layers: Sequence[Layer], shape: Shape | None, dtype: object, backend: object, *, owner: str
) -> Shape | None:
    """Build ``layers`` in order; a shape mismatch names the position within ``owner``."""
    for position, layer in enumerate(layers):
        if layer.input_kind == "index" and (position > 0 or owner != "layers"):
            raise ValueError(
                f"{owner}[{position}]: {layer!r} takes integer indices, so it must be the network's first "
                "layer (the layers before it would give it floating-point values)"
            )
        try:
            shape = layer.build(shape, dtype, backend)  # type: ignore[arg-type]
        except ValueError as exc:
            raise ValueError(f"{owner}[{position}]: {exc}") from None
    return shape
