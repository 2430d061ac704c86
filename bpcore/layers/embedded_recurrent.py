"""An Embedding followed by a recurrent layer, run as ONE entry of a network's plan.

The recurrent layer's input projection of an embedded index is a row of the
table ``[E, 1] @ [W_ih^T; b]`` (vocabulary, G*H), so the pair needs neither
the embedded (N, T, F) input nor the projection product over every step, and
its backward replaces the two products over every step (dW_ih and the
embedded input's gradient) and the embedding's scatter-add of (N, T, F) rows
by one scatter-add of the gate gradients into a table gradient and small
products (:meth:`~bpcore.layers.recurrent.Recurrent.forward_embedded`).
The table costs work per vocabulary row where the products cost it per
looked-up position, so the lookup runs where the vocabulary is at most half
the number of positions (N * T) of the batch; a larger vocabulary runs the
two layers one after the other, as without the fusion.  The planner
(:func:`~bpcore.layers.fusion.fusion_plan`) builds this entry when
:meth:`Embedding.absorb <bpcore.layers.Embedding.absorb>` takes the recurrent
layer; both layers stay what they are when called on their own.
"""

from __future__ import annotations

from typing import Any

from .base import Layer


class EmbeddedRecurrent(Layer):
    """Runs ``embedding`` then ``recurrent`` (an RNN, LSTM or GRU) in a plan, masks included."""

    uses_mask = True
    preserves_shape = False

    def __init__(self, embedding: Any, recurrent: Any) -> None:
        super().__init__()
        self.embedding = embedding
        self.recurrent = recurrent
        self.looked_up = False  # whether the last forward took the table lookup

    def compute_mask(self, x: Any, mask: Any) -> Any:
        return self.recurrent.compute_mask(None, self.embedding.compute_mask(x, mask))

    def forward(self, x: Any, training: bool, mask: Any = None) -> Any:
        inner = self.embedding.compute_mask(x, mask)  # the mask into the recurrent layer
        self.looked_up = 2 * self.embedding.num_embeddings <= x.size
        if self.looked_up:
            return self.recurrent.forward_embedded(self.embedding, x, inner)
        return self.recurrent.forward(self.embedding.forward(x, training), training, inner)

    def backward(self, grad_out: Any, *, accumulate: bool = True, need_input_grad: bool = True) -> Any:
        """Both layers' parameter gradients; None (indices have no gradient)."""
        if self.looked_up:
            self.recurrent.backward(grad_out, accumulate=accumulate, need_input_grad=False)
            return None
        grad = self.recurrent.backward(grad_out, accumulate=accumulate, need_input_grad=True)
        return self.embedding.backward(grad, accumulate=accumulate, need_input_grad=False)

    def __repr__(self) -> str:
        return f"EmbeddedRecurrent({self.embedding!r}, {self.recurrent!r})"
