"""``Concatenate(*branches)``: layer sequences over one input, their outputs joined on the last axis."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import checks
from ..backends import Backend
from .base import Container, Layer, Shape, shape_text
from .fusion import batch_statistics_count, build_sequence, check_distinct, fusion_plan, output_shapes


class Concatenate(Container):
    """Each branch (a layer, or a list of layers run in order) reads the same input; outputs joined.

    ``Concatenate([Bidirectional(GRU(64, 32, return_sequences=True)),
    GlobalMaxPool1D()], GlobalAvgPool1D())`` puts a recurrent read-out and the
    mean of its input side by side: ``(N, T, 64) -> (N, 64 + 64)``.  Every
    branch must give the same output shape except for the last axis, which
    is the sum of the branches' last axes, in the order given.  A mask (see
    the mask protocol of :class:`~bpcore.layers.Layer`) goes into every branch
    and through its layers as in a Network; the output keeps it only when it
    keeps the input's time axis.  The backward pass adds the branches' input
    gradients.  Each branch is planned as a Network plans its layers (a Dense
    absorbs the activation after it), and its parameters live in the
    network's flat buffers like any others.

    A branch may not start a mask itself (``Masking``) or take indices
    (``Embedding``): the mask and the input come from before the layer.  The
    model format saves the branches' layers in one list with
    ``branch_lengths`` (how many of them each branch has), which the
    constructor also accepts: ``Concatenate(a, b, c, branch_lengths=[2, 1])``.
    """

    uses_mask = True
    preserves_shape = False

    def __init__(
        self, *branches: Layer | Sequence[Layer], branch_lengths: Sequence[int] | None = None
    ) -> None:
        super().__init__()
        owner = "Concatenate(*branches)"
        split: list[list[Layer]]
        if branch_lengths is not None:
            lengths = [checks.positive_int(size, "Concatenate(branch_lengths)") for size in branch_lengths]
            flat = [layer for layer in branches if isinstance(layer, Layer)]
            if len(flat) != len(branches):
                raise TypeError(f"{owner}: with branch_lengths, pass the branches' layers one by one")
            if sum(lengths) != len(branches):
                raise ValueError(
                    f"{owner}: branch_lengths {list(lengths)} add up to {sum(lengths)}, but "
                    f"{len(branches)} layers were given"
                )
            starts = np.cumsum([0, *lengths]).tolist()
            split = [flat[start:stop] for start, stop in itertools.pairwise(starts)]
        else:
            split = [
                [branch] if isinstance(branch, Layer) else list(branch) for branch in branches
            ]
        if len(split) < 2:
            raise ValueError(f"{owner}: expected at least two branches, got {len(split)}")
        for number, branch in enumerate(split):
            if not branch:
                raise ValueError(f"{owner}: branch {number} has no layers")
            for position, layer in enumerate(branch):
                if not isinstance(layer, Layer):
                    raise TypeError(
                        f"{owner}: branch {number}, layer {position} must be a bpcore Layer, "
                        f"got {type(layer).__name__}"
                    )
                if layer.input_kind == "index" or layer.produces_mask:
                    raise ValueError(
                        f"{owner}: {layer!r} (branch {number}) takes indices or starts a mask; put it "
                        "before the Concatenate"
                    )
        check_distinct([layer for branch in split for layer in branch], owner=owner)
        self.branches = split
        #: All the branches' layers in order (what the model format saves as this layer's children).
        self.layers = [layer for branch in split for layer in branch]
        self._plans: list[list[Layer]] = []
        self._ran: tuple[tuple[int, ...], list[int]] | None = None

    def config(self) -> dict[str, Any]:
        return {"branch_lengths": [len(branch) for branch in self.branches]}

    def __repr__(self) -> str:
        def text(branch: list[Layer]) -> str:
            return repr(branch[0]) if len(branch) == 1 else f"[{', '.join(map(repr, branch))}]"

        return f"Concatenate({', '.join(text(branch) for branch in self.branches)})"

    @property
    def input_shape(self) -> Shape | None:
        for branch in self.branches:
            for layer in branch:
                if layer.input_shape is not None:
                    return layer.input_shape
                if not layer.preserves_shape:
                    break
        return None

    def output_shape(self, input_shape: Shape) -> Shape:
        outs = [
            output_shapes(branch, input_shape, owner=f"Concatenate branch {number}")[-1]
            for number, branch in enumerate(self.branches)
        ]
        first = outs[0]
        for number, out in enumerate(outs[1:], 1):
            if len(out) != len(first) or len(out) == 0 or any(
                a is not None and b is not None and a != b for a, b in zip(out[:-1], first[:-1], strict=True)
            ):
                raise ValueError(
                    f"{self!r}: branch {number} gives {shape_text(out)} and branch 0 {shape_text(first)}; "
                    "the branches must agree on every axis but the last"
                )
        widths = [out[-1] for out in outs]
        total = None if any(width is None for width in widths) else sum(w for w in widths if w is not None)
        return (*first[:-1], total)

    def batch_statistics_count(self, input_shape: Shape) -> int | None:
        counts = [batch_statistics_count(branch, input_shape) for branch in self.branches]
        known = [count for count in counts if count is not None]
        return min(known) if known else None

    def compute_mask(self, x: Any, mask: Any) -> Any:
        """The incoming mask where the output keeps the time axis, else None."""
        if mask is None:
            return None
        return mask if len(self.output_shape(tuple(x.shape[1:]))) == x.ndim - 1 else None

    def build(self, input_shape: Shape | None, dtype: np.dtype, backend: Backend) -> Shape | None:
        expected = input_shape if input_shape is not None else self.input_shape
        out = super().build(expected, dtype, backend)  # checks the branches when the shape is known
        for number, branch in enumerate(self.branches):
            build_sequence(branch, expected, dtype, backend, owner=f"Concatenate branch {number}")
        self._plans = [fusion_plan(branch) for branch in self.branches]
        self._ran = None
        return out

    def to(self, backend: Backend) -> None:
        super().to(backend)  # the network moves the branches' layers itself (they are in walk())
        self._ran = None

    def forward(self, x: Any, training: bool, mask: Any = None) -> Any:
        outs = []
        for plan in self._plans:
            h, inner = x, mask
            for layer in plan:
                following = layer.compute_mask(h, inner) if inner is not None else None
                run: Any = layer.forward  # takes mask= where the layer uses_mask
                h = run(h, training, mask=inner) if layer.uses_mask else run(h, training)
                inner = following
            outs.append(h)
        widths = [int(h.shape[-1]) for h in outs]
        out = self.workspace("out", (*outs[0].shape[:-1], sum(widths)))
        start = 0
        for h, width in zip(outs, widths, strict=True):
            out[..., start : start + width] = h
            start += width
        self._ran = (tuple(x.shape), widths)
        return out

    def backward(self, grad_out: Any, *, accumulate: bool = True, need_input_grad: bool = True) -> Any:
        if self._ran is None:
            raise self._not_run()
        shape, widths = self._ran
        xp = self.backend.xp
        grad_in = self.workspace("grad_in", shape) if need_input_grad else None
        start = 0
        for number, (plan, width) in enumerate(zip(self._plans, widths, strict=True)):
            g = xp.ascontiguousarray(grad_out[..., start : start + width])
            start += width
            for position in range(len(plan) - 1, -1, -1):
                g = plan[position].backward(
                    g, accumulate=accumulate, need_input_grad=need_input_grad or position > 0
                )
            if grad_in is not None:
                if number == 0:
                    xp.copyto(grad_in, g)
                else:
                    xp.add(grad_in, g, out=grad_in)
        return grad_in
