"""``Network``: a sequence of layers over one flat parameter buffer."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .backends import Backend, DeviceLike, get_backend
from .layers.activations import Activation
from .layers.base import Layer
from .layers.dense import Dense
from .parameters import Parameter, ParameterStore
from .validation import as_features, check_dtype


class Network:
    """A feed-forward network trained by backpropagation.

    All parameters live as views of one contiguous buffer and all gradients in
    another (``network.store``), so whole-network operations are one pass.
    Parameters are drawn on the host from ``seed`` and then moved to the
    device, so the same seed gives the same network on every device.
    """

    def __init__(
        self,
        layers: Sequence[Layer],
        *,
        dtype: str | np.dtype = "float32",
        seed: int | None = None,
        device: DeviceLike | None = None,
    ) -> None:
        layers = list(layers) if not isinstance(layers, Layer) else [layers]
        if not layers:
            raise ValueError("layers: expected at least one layer, got an empty sequence")
        for position, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{position}]: expected a bpcore Layer, got {type(layer).__name__}")
        if len({id(layer) for layer in layers}) != len(layers):
            raise ValueError("layers: the same layer object appears twice; create a new one for each position")
        self.layers = layers
        self.dtype = check_dtype(dtype)
        self.seed = seed
        self.backend: Backend = get_backend(device)
        self._lock = threading.RLock()
        width: int | None = None
        for layer in self.layers:
            width = layer.build(width, self.dtype, self.backend)
        self.in_features = next((w for w in self._input_widths() if w is not None), None)
        self.out_features = width
        self.store = ParameterStore(self.parameters(), self.backend, self.dtype)
        self.store.initialize(np.random.default_rng(seed))
        self._plan = self._fuse()

    # --- structure ----------------------------------------------------------
    def _input_widths(self) -> Iterator[int | None]:
        for layer in self.layers:
            yield getattr(layer, "in_features", getattr(layer, "num_features", None))

    def _fuse(self) -> list[Layer]:
        """The layers to run, with each activation that follows a Dense folded into it."""
        plan: list[Layer] = []
        skip = False
        for layer, following in zip(self.layers, [*self.layers[1:], None]):
            if skip:
                skip = False
                continue
            if isinstance(layer, Dense):
                fused = following if isinstance(following, Activation) and layer.bias is not None else None
                layer.fuse(fused)
                skip = fused is not None
            plan.append(layer)
        return plan

    def walk(self) -> Iterator[Layer]:
        """Every layer, including those nested inside containers such as Residual."""
        for layer in self.layers:
            yield layer
            children = getattr(layer, "walk", None)
            if children is not None:
                yield from children()

    def parameters(self) -> list[Parameter]:
        """The trainable parameters, in a fixed order (views of ``store``)."""
        return [p for layer in self.layers for p in layer.parameters()]

    @property
    def device(self) -> Any:
        return self.backend.device

    @property
    def xp(self) -> Any:
        return self.backend.xp

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"Network([\n  {inner}\n], dtype={self.dtype.name}, device={self.device})"

    # --- device -------------------------------------------------------------
    def to(self, device: DeviceLike) -> Network:
        """Move parameters, gradients and layer state to ``device``; returns self."""
        backend = get_backend(device)
        with self._lock:
            if backend is not self.backend:
                self.store.to(backend)
                for layer in self.walk():
                    layer.to(backend)
                self.backend = backend
        return self

    # --- computation --------------------------------------------------------
    def as_input(self, x: Any, *, argument: str = "x", check_finite: bool = True) -> Any:
        """Validate ``x`` and convert it to this network's dtype and device."""
        return as_features(
            x, self.backend, self.dtype, in_features=self.in_features,
            argument=argument, check_finite=check_finite,
        )

    def _forward(self, x: Any, training: bool) -> Any:
        for layer in self._plan:
            x = layer.forward(x, training)
        return x

    def _backward(self, grad_out: Any, *, accumulate: bool, need_input_grad: bool) -> Any:
        grad = grad_out
        last = len(self._plan) - 1
        for position in range(last, -1, -1):
            needed = need_input_grad or position > 0
            grad = self._plan[position].backward(grad, accumulate=accumulate, need_input_grad=needed)
        return grad

    def forward(self, x: Any, training: bool = False) -> Any:
        """The network's output for ``x`` (an array on the network's device).

        The result is a fresh array; intermediate results are kept for
        :meth:`backward`.
        """
        with self._lock:
            return self._forward(self.as_input(x), training).copy()

    __call__ = forward

    def backward(self, grad_out: Any) -> Any:
        """Backpropagate ``grad_out`` (dLoss/dOutput) from the last ``forward``.

        Parameter gradients are *added* to ``parameter.grad``, as in PyTorch;
        call :meth:`zero_grad` between steps.  Returns dLoss/dInput.
        """
        with self._lock:
            grad = self.backend.asarray(grad_out, dtype=self.dtype)
            return self._backward(grad, accumulate=True, need_input_grad=True).copy()

    def zero_grad(self) -> None:
        """Set every gradient to zero (one pass over the flat gradient buffer)."""
        self.store.zero_grad()

    def predict(self, x: Any, *, batch_size: int = 4096) -> Any:
        """The network's output for ``x`` in evaluation mode, computed in batches."""
        from .training import predict

        return predict(self, x, batch_size=batch_size)

    def evaluate(self, x: Any, y: Any, *, loss: Any, metrics: Sequence[str] = (), batch_size: int = 4096) -> dict[str, float]:
        """The loss (and metrics) on ``(x, y)`` in evaluation mode."""
        from .training import evaluate

        return evaluate(self, x, y, loss=loss, metrics=metrics, batch_size=batch_size)

    def fit(self, x: Any, y: Any, **options: Any) -> Any:
        """Train on ``(x, y)``; see :func:`bpcore.training.fit` for the options."""
        from .training import fit

        return fit(self, x, y, **options)
