"""The embedding layer: integer indices of any shape to learned vectors, as PyTorch's ``nn.Embedding``."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import checks
from ..parameters import Parameter
from .base import Layer, Shape
from .embedded_recurrent import EmbeddedRecurrent
from .recurrent import GRU, LSTM, RNN


class _StandardNormal:
    """PyTorch's embedding initialisation: N(0, 1), with the padding row (if any) zero."""

    def __init__(self, padding_idx: int | None) -> None:
        self.padding_idx = padding_idx

    def __call__(self, rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Any:
        weight = rng.normal(0.0, 1.0, size=shape)
        if self.padding_idx is not None:
            weight[self.padding_idx] = 0.0
        return weight


class Embedding(Layer):
    """A lookup table: index ``j`` becomes row ``j`` of ``weight`` (num_embeddings, embedding_dim).

    Input: integer indices of any shape ``(N, ...)``; output ``(N, ..., embedding_dim)``.
    ``padding_idx`` (negative values count from the end, as in PyTorch) names
    a row that starts at zero and receives no gradient, so padded positions
    stay zero vectors; it also makes the layer start a mask (``x !=
    padding_idx`` for ``(N, T)`` input) that recurrent layers after it use to
    skip the padded steps.  Indices outside ``[0, num_embeddings)`` are refused
    by the network's input check, on the host, before anything runs.

    The backward pass adds each output row's gradient to the weight-gradient
    row it was read from (a scatter-add: repeated indices add up), one fused
    pass on the CPU (Numba) and on a GPU (``atomicAdd``).
    """

    input_kind = "index"
    preserves_shape = False

    def __init__(self, num_embeddings: int, embedding_dim: int, *, padding_idx: int | None = None) -> None:
        super().__init__()
        self.num_embeddings = checks.positive_int(num_embeddings, "Embedding(num_embeddings)")
        self.embedding_dim = checks.positive_int(embedding_dim, "Embedding(embedding_dim)")
        self.padding_idx = self._normalised_padding(padding_idx)
        self.weight = Parameter(
            "weight", (self.num_embeddings, self.embedding_dim), _StandardNormal(self.padding_idx),
            fan_in=self.num_embeddings, fan_out=self.embedding_dim,
        )
        self._index: Any = None
        self._lead: tuple[int, ...] = ()
        self._entry: EmbeddedRecurrent | None = None  # the plan's entry when a recurrent layer is absorbed

    def _normalised_padding(self, padding_idx: Any) -> int | None:
        """PyTorch's rule: ``padding_idx`` in ``[-num_embeddings, num_embeddings)``, negative from the end."""
        if padding_idx is None:
            return None
        n = self.num_embeddings
        value = checks.integer(padding_idx, "Embedding(padding_idx)", minimum=-n, maximum=n - 1,
                               expected=f"None or an integer in [-{n}, {n - 1}] (num_embeddings={n})")
        return value + n if value < 0 else value

    def config(self) -> dict[str, Any]:
        return {
            "num_embeddings": self.num_embeddings,
            "embedding_dim": self.embedding_dim,
            "padding_idx": self.padding_idx,
        }

    def output_shape(self, input_shape: Shape) -> Shape:
        return (*input_shape, self.embedding_dim)

    def parameters(self) -> list[Parameter]:
        return [self.weight]

    # --- fusion with a following recurrent layer -------------------------------
    def absorb(self, following: Layer | None) -> bool:
        """Take over a following RNN, LSTM or GRU (exactly those classes): True if absorbed.

        The plan then runs the pair as one entry (:meth:`plan_entry`), whose
        input projection is a table lookup; see
        :mod:`bpcore.layers.embedded_recurrent`.  This layer's own ``forward``
        and ``backward`` are unchanged.
        """
        fused = type(following) in (RNN, LSTM, GRU)
        self._entry = EmbeddedRecurrent(self, following) if fused else None
        return fused

    def plan_entry(self) -> Layer:
        return self if self._entry is None else self._entry

    # --- the input check (host side, once per call of the network) ----------
    def check_input_values(self, x: Any, argument: str) -> None:
        """Raise one error if ``x`` holds anything but integer indices in ``[0, num_embeddings)``."""
        kind = x.dtype.kind
        if kind not in "iu":
            raise TypeError(
                f"{argument}: {self!r} takes integer indices in [0, {self.num_embeddings}), "
                f"got dtype {x.dtype}"
            )
        if x.size == 0:
            return
        low, high = int(x.min()), int(x.max())
        if low < 0 or high >= self.num_embeddings:
            bad = low if low < 0 else high
            raise ValueError(
                f"{argument}: {self!r} takes indices in [0, {self.num_embeddings}), "
                f"got {bad} (values range from {low} to {high})"
            )

    # --- the mask protocol ------------------------------------------------------
    @property
    def produces_mask(self) -> bool:
        """True with a ``padding_idx``: the layer then starts the mask of real (non-padding) steps."""
        return self.padding_idx is not None

    def compute_mask(self, x: Any, mask: Any) -> Any:
        """``x != padding_idx`` for (N, T) indices with a ``padding_idx`` (and ``mask``, if one came).

        Without a ``padding_idx``, ``mask`` unchanged; indices of another rank
        give no (N, T) mask, so None.
        """
        if self.padding_idx is None:
            return mask
        if x.ndim != 2:
            return None
        real = x != self.padding_idx
        return real if mask is None else real & mask

    # --- computation --------------------------------------------------------
    def forward(self, x: Any, training: bool) -> Any:
        xp = self.backend.xp
        out = self.workspace("out", (*x.shape, self.embedding_dim))
        if xp is np:
            # mode="clip" takes no buffered copy; the network checked the range already.
            np.take(self.weight.data, x, axis=0, out=out, mode="clip")
        else:
            xp.take(self.weight.data, x, axis=0, out=out)
        # The indices as the scatter-add's contract takes them (int64): CuPy's kernel refuses others.
        self._index = x if x.dtype == np.int64 else x.astype(np.int64)
        return out

    def backward(self, grad_out: Any, *, accumulate: bool = True, need_input_grad: bool = True) -> Any:
        if self._index is None:
            raise self._not_run()
        weight = self.weight
        if weight.requires_grad:
            if not accumulate:
                weight.grad.fill(0.0)
            rows = grad_out.reshape(-1, self.embedding_dim)
            index = self._index.reshape(-1)
            padding = -1 if self.padding_idx is None else self.padding_idx
            self.backend.ops.embedding_backward(rows, index, padding, weight.grad)
        return None  # indices have no gradient
