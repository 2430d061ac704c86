"""``Network``: a sequence of layers over one flat parameter buffer."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .backends import Backend, DeviceLike, device_scope, get_backend
from .layers.base import Layer
from .layers.fusion import build_sequence, check_distinct, fusion_plan, input_width
from .parameters import Parameter, ParameterStore
from .validation import as_features, check_dtype


def _natural(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and bool(value >= 0)


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
        check_distinct(layers, owner="layers")
        for layer in layers:
            if any(parameter.store is not None for parameter in layer.parameters()):
                raise ValueError(
                    f"layers: {layer!r} already belongs to another Network; create new layer objects "
                    "for each network"
                )
        if seed is not None and not _natural(seed):
            raise ValueError(f"seed: expected None or a non-negative integer, got {seed!r}")
        self.layers = layers
        self.dtype = check_dtype(dtype)
        self.seed = seed
        self.backend: Backend = get_backend(device)
        self._lock = threading.RLock()
        self.out_features = build_sequence(self.layers, None, self.dtype, self.backend, owner="layers")
        self.in_features = input_width(self.layers)
        self.store = ParameterStore(self.parameters(), self.backend, self.dtype)
        self.store.initialize(np.random.default_rng(seed))
        # Dropout masks come from a device-local generator seeded from ``seed``,
        # on a stream independent of the initial weights.
        self._random_seed = int(
            np.random.SeedSequence(seed).spawn(1)[0].generate_state(1, dtype=np.uint64)[0]
        )
        self._bind_random()
        self._plan = fusion_plan(self.layers)
        self._needs_batch = any(getattr(layer, "needs_batch_statistics", False) for layer in self.walk())
        self._output_shape: tuple[int, ...] | None = None

    # --- structure ----------------------------------------------------------
    def _bind_random(self) -> None:
        self._random = self.backend.random(self._random_seed)
        for layer in self.walk():
            layer.bind_random(self._random)

    def walk(self) -> Iterator[Layer]:
        """Every layer, including those nested inside containers such as Residual."""
        for layer in self.layers:
            yield layer
            yield from layer.walk()

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
                self._bind_random()
                self._output_shape = None
        return self

    # --- computation --------------------------------------------------------
    def as_input(self, x: Any, *, argument: str = "x", check_finite: bool = True) -> Any:
        """Validate ``x`` and convert it to this network's dtype and device."""
        return as_features(
            x, self.backend, self.dtype, in_features=self.in_features,
            argument=argument, check_finite=check_finite,
        )

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold this network for one call: its lock, and its GPU made current.

        Every public entry point (forward, backward, fit, predict, evaluate)
        runs inside this, so that a network on ``cuda:1`` computes on GPU 1
        whatever device the calling thread has current.
        """
        with self._lock, device_scope(self.backend):
            yield

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
        :meth:`backward`.  ``training=True`` draws dropout masks and uses
        (and updates) batch statistics.
        """
        with self.exclusive():
            x = self.as_input(x)
            if training and self._needs_batch and x.shape[0] < 2:
                raise ValueError(
                    f"x: BatchNorm needs more than 1 sample per batch in training, got shape {tuple(x.shape)}"
                )
            out = self._forward(x, training)
            self._output_shape = tuple(out.shape)
            return out.copy()

    __call__ = forward

    def backward(self, grad_out: Any) -> Any:
        """Backpropagate ``grad_out`` (dLoss/dOutput) from the last ``forward``.

        Parameter gradients are *added* to ``parameter.grad``, as in PyTorch;
        call :meth:`zero_grad` between steps.  Returns dLoss/dInput.
        """
        with self.exclusive():
            if self._output_shape is None:
                raise RuntimeError("Network.backward(): called before forward(); run forward(x) first")
            grad = self.backend.asarray(grad_out, dtype=self.dtype)
            if tuple(grad.shape) != self._output_shape:
                raise ValueError(
                    f"grad_out: expected the shape of the last forward() output {self._output_shape}, "
                    f"got {tuple(grad.shape)}"
                )
            return self._backward(grad, accumulate=True, need_input_grad=True).copy()

    def zero_grad(self) -> None:
        """Set every gradient to zero (one pass over the flat gradient buffer)."""
        self.store.zero_grad()

    def predict(self, x: Any, *, batch_size: int = 4096) -> Any:
        """The network's output for ``x`` in evaluation mode, computed in batches."""
        from .training import predict

        return predict(self, x, batch_size=batch_size)

    def evaluate(
        self, x: Any, y: Any, *, loss: Any, metrics: Sequence[str] = (), batch_size: int = 4096
    ) -> dict[str, float]:
        """The loss (and metrics) on ``(x, y)`` in evaluation mode."""
        from .training import evaluate

        return evaluate(self, x, y, loss=loss, metrics=metrics, batch_size=batch_size)

    def fit(self, x: Any, y: Any, **options: Any) -> Any:
        """Train on ``(x, y)``; see :func:`bpcore.training.fit` for the options."""
        from .training import fit

        return fit(self, x, y, **options)


def _share_signatures() -> None:
    """Give ``Network.fit/predict/evaluate`` the signature and docstring of the functions they call.

    One source of truth: the options are written once, in :mod:`bpcore.training`;
    ``help(network.fit)`` and ``inspect.signature`` show every one of them.
    """
    import inspect

    from . import training

    for name in ("fit", "predict", "evaluate"):
        method, function = getattr(Network, name), getattr(training, name)
        signature = inspect.signature(function)
        parameters = list(signature.parameters.values())
        parameters[0] = parameters[0].replace(name="self", annotation=inspect.Parameter.empty)
        method.__signature__ = signature.replace(parameters=parameters)
        method.__doc__ = function.__doc__


_share_signatures()
