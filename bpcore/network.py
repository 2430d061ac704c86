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
            self._adopt(backend)
        return self

    def _adopt(self, backend: Backend) -> None:
        if backend is not self.backend:
            self.store.to(backend)
            for layer in self.walk():
                layer.to(backend)
            self.backend = backend
            self._bind_random()
            self._output_shape = None

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

    def forward(self, x: Any, training: bool = False, *, check: bool = True) -> Any:
        """The network's output for ``x`` (an array on the network's device).

        The result is a fresh array; intermediate results are kept for
        :meth:`backward`.  ``training=True`` draws dropout masks and uses
        (and updates) batch statistics.

        ``check=False`` is the fast path for custom training loops: ``x``
        must already be a 2-D array of the network's dtype on its device
        (:meth:`as_input` makes one, once), nothing is validated or copied,
        and the result is the network's own output buffer, valid only until
        the next ``forward`` of this network (copy it to keep it).  The same
        call runs on the CPU and on a GPU and never synchronises the device.
        """
        if not check:
            with self._lock, device_scope(self.backend):
                out = self._forward(x, training)
                self._output_shape = out.shape
                return out
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

    def backward(
        self,
        grad_out: Any,
        *,
        check: bool = True,
        parameter_grads: bool = True,
        input_grad: bool = True,
    ) -> Any:
        """Backpropagate ``grad_out`` (dLoss/dOutput) from the last ``forward``.

        Parameter gradients are *added* to ``parameter.grad``, as in PyTorch;
        call :meth:`zero_grad` between steps.  Frozen parameters
        (``requires_grad=False``, see :meth:`freeze`) get no gradient.
        Returns dLoss/dInput.

        ``parameter_grads=False`` computes only dLoss/dInput and leaves every
        parameter gradient untouched (to train a generator through a critic
        that is not being trained).  ``input_grad=False`` skips dLoss/dInput
        and returns None.  ``check=False`` is the fast path of
        :meth:`forward`: ``grad_out`` must be an array of the network's dtype
        on its device with the last output's shape, and the result is a
        buffer of the network's, valid until its next ``backward``.
        """
        if not check:
            with self._lock, device_scope(self.backend):
                return self._backward_selected(grad_out, parameter_grads, input_grad)
        with self.exclusive():
            if self._output_shape is None:
                raise RuntimeError("Network.backward(): called before forward(); run forward(x) first")
            grad = self.backend.asarray(grad_out, dtype=self.dtype)
            if tuple(grad.shape) != self._output_shape:
                raise ValueError(
                    f"grad_out: expected the shape of the last forward() output {self._output_shape}, "
                    f"got {tuple(grad.shape)}"
                )
            result = self._backward_selected(grad, parameter_grads, input_grad)
            return None if result is None else result.copy()

    def _backward_selected(self, grad: Any, parameter_grads: bool, input_grad: bool) -> Any:
        if parameter_grads:
            return self._backward(grad, accumulate=True, need_input_grad=input_grad)
        if not input_grad:
            return None
        # Every parameter counts as frozen for this one pass (under the lock), so no
        # layer writes a parameter gradient and none is computed.
        parameters = self.store.parameters
        saved = [parameter._requires_grad for parameter in parameters]
        try:
            for parameter in parameters:
                parameter._requires_grad = False
            return self._backward(grad, accumulate=True, need_input_grad=True)
        finally:
            for parameter, flag in zip(parameters, saved, strict=True):
                parameter._requires_grad = flag

    def zero_grad(self) -> None:
        """Set every gradient to zero (one pass over the flat gradient buffer)."""
        self.store.zero_grad()

    # --- several networks: freezing, copies and target updates ---------------
    def freeze(self) -> Network:
        """Stop training every parameter (``requires_grad = False``); returns self.

        ``backward`` then writes no parameter gradients (it still returns
        dLoss/dInput) and optimisers leave the parameters as they are, as in
        PyTorch.  Freeze single parameters with ``parameter.requires_grad = False``.
        """
        with self._lock:
            for parameter in self.store.parameters:
                parameter.requires_grad = False
        return self

    def unfreeze(self) -> Network:
        """Train every parameter again (``requires_grad = True``); returns self."""
        with self._lock:
            for parameter in self.store.parameters:
                parameter.requires_grad = True
        return self

    def clone(self) -> Network:
        """An independent copy: same layers, parameters, buffers, dtype, device and frozen flags.

        Made through bpcore's model format (what :func:`bpcore.save` writes),
        so exactly what a saved model holds is copied; the copy's dropout
        generator continues from this network's current state on the CPU
        (on a GPU it restarts from the seed).  Gradients start at zero.
        """
        with self._lock:
            state = self._portable_state()
        return _restore_network(*state, backend=self.backend)

    def _portable_state(self) -> tuple[bytes, str, list[bool], Any, dict[str, type[Layer]]]:
        import io

        from .serialization import write_model
        from .serialization.registry import builtin_layer_types

        buffer = io.BytesIO()
        write_model(buffer, self)
        frozen = [not parameter.requires_grad for parameter in self.store.parameters]
        generator = self._random
        random_state = generator.bit_generator.state if isinstance(generator, np.random.Generator) else None
        builtin = set(builtin_layer_types().values())
        custom = {type(layer).__name__: type(layer) for layer in self.walk() if type(layer) not in builtin}
        return buffer.getvalue(), str(self.device), frozen, random_state, custom

    def __deepcopy__(self, memo: dict[int, Any]) -> Network:
        return self.clone()

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Pickled as a bpcore model file (bytes), never as modules or backends.
        with self._lock:
            return _restore_network, self._portable_state()

    def copy_from(self, source: Network, tau: float = 1.0) -> Network:
        """Move this network's parameters towards ``source``'s; returns self.

        ``tau=1`` copies them (a hard target-network update), ``0 < tau < 1``
        is the Polyak (soft) update ``p = (1 - tau) * p + tau * p_source``;
        either is one pass over the flat parameter buffer.  Buffers (batch
        statistics) are copied.  ``source`` must have the same parameter
        shapes; it may have another dtype or device (then the values are
        converted, which is slower).
        """
        if not isinstance(source, Network):
            raise TypeError(f"source: expected a bpcore Network, got {type(source).__name__}")
        if isinstance(tau, bool) or not isinstance(tau, (int, float, np.floating)) or not 0.0 <= tau <= 1.0:
            raise ValueError(f"tau: expected a number in [0, 1], got {tau!r}")
        mine = [p.shape for p in self.store.parameters]
        theirs = [p.shape for p in source.store.parameters]
        if mine != theirs:
            raise ValueError(
                f"source: expected a network with parameter shapes {mine}, got {theirs}"
            )
        if source is self or tau == 0.0:
            return self
        first, second = sorted((self, source), key=id)
        with first._lock, second._lock, device_scope(self.backend):
            data = self.store.data
            same = source.backend is self.backend and source.dtype == self.dtype
            values = source.store.data if same else self.backend.asarray(
                source.backend.to_numpy(source.store.data), dtype=self.dtype
            )
            if tau == 1.0:
                self.xp.copyto(data, values)
            else:
                self.backend.ops.polyak_update(data, values, float(tau))
            for mine_layer, their_layer in zip(self.walk(), source.walk(), strict=False):
                current = mine_layer.buffers()
                for name, value in their_layer.buffers().items():
                    mine_layer.set_buffer(
                        name, self.backend.asarray(source.backend.to_numpy(value), dtype=current[name].dtype)
                    )
        return self

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


def _restore_network(
    model: bytes,
    device: str,
    frozen: Sequence[bool],
    random_state: Any,
    custom_layers: dict[str, type[Layer]] | None = None,
    *,
    backend: Backend | None = None,
) -> Network:
    """A network from :meth:`Network._portable_state` (the target of clone, deepcopy and pickle)."""
    import io

    from .serialization import load

    network = load(
        io.BytesIO(model), device=device if backend is None else backend.device, custom_layers=custom_layers
    )
    if backend is not None:
        network._adopt(backend)
    for parameter, is_frozen in zip(network.store.parameters, frozen, strict=True):
        parameter.requires_grad = not is_frozen
    if random_state is not None and isinstance(network._random, np.random.Generator):
        network._random.bit_generator.state = random_state
    return network
