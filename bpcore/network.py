"""``Network``: a sequence of layers over one flat parameter buffer."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from . import checks
from .backends import Backend, DeviceLike, device_scope, get_backend
from .interop import import_array, to_backend
from .layers.base import Layer, Shape, shape_text
from .layers.fusion import (
    build_sequence,
    check_batch_statistics,
    check_distinct,
    fusion_plan,
    input_shape,
    input_width,
    output_shapes,
)
from .parameters import Parameter, ParameterStore
from .validation import as_gradient, as_samples, check_dtype


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
        seed = checks.optional(checks.integer, seed, "seed", minimum=0,
                               expected="None or a non-negative integer")
        self.layers = layers
        self.dtype = check_dtype(dtype)
        self.seed = seed
        self.backend: Backend = get_backend(device)
        self._lock = threading.RLock()
        #: The per-sample input shape the first layers require (None dimensions: any size).
        self.input_shape: Shape | None = input_shape(self.layers)
        with device_scope(self.backend):  # built on its GPU, whichever the calling thread has current
            #: The per-sample output shape, as far as it is known before the first input.
            self.output_shape = build_sequence(
                self.layers, self.input_shape, self.dtype, self.backend, owner="layers"
            )
            self.store = ParameterStore(self.parameters(), self.backend, self.dtype)
            self.store.initialize(np.random.default_rng(seed))
            # Dropout masks come from a device-local generator seeded from ``seed``,
            # on a stream independent of the initial weights.
            self._random_seed = int(
                np.random.SeedSequence(seed).spawn(1)[0].generate_state(1, dtype=np.uint64)[0]
            )
            self._bind_random()
        self.store.lock = self._lock  # an optimiser's step holds the network's lock
        self.out_features = self.output_shape[-1] if self.output_shape else None
        self.in_features = input_width(self.layers)
        self._checked_shapes: set[tuple[int, ...]] = set()
        self._plan = fusion_plan(self.layers)
        # Masks (variable-length sequences) are threaded only when a layer can start one.
        self._masked = any(layer.produces_mask for layer in self.walk())
        self._uses_mask = any(layer.uses_mask for layer in self.walk())  # whether forward(mask=) can matter
        self._needs_batch = any(getattr(layer, "needs_batch_statistics", False) for layer in self.walk())
        self._has_buffers = any(layer.buffers() for layer in self.walk())  # fixed by the layers' types
        # The layers with something to check against a batch before a pass runs (recurrent states).
        self._batch_checked = [
            layer
            for layer in self.walk()
            if type(layer).check_forward_batch is not Layer.check_forward_batch
            or type(layer).check_backward_batch is not Layer.check_backward_batch
        ]
        self._output_shape: tuple[int, ...] | None = None
        self._forward_thread: int | None = None  # the thread whose activations the layers hold

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

    def __str__(self) -> str:
        return self.summary()

    def summary(self, input_shape: Sequence[int | None] | None = None) -> str:
        """A table of each layer's output shape and parameter count, and the totals (as Keras's).

        ``input_shape`` is one sample's shape (no batch axis), e.g. ``(1, 28, 28)``;
        by default the shape the first layer requires (unknown sizes show as ``?``).
        """
        shape = self.input_shape if input_shape is None else tuple(input_shape)
        shapes: list[Shape | None]
        if shape is None:
            shapes = [None] * len(self.layers)
        else:
            shapes = list(output_shapes(self.layers, tuple(shape), owner="layers"))
        rows = [("Layer", "Output shape", "Parameters")]
        for layer, out in zip(self.layers, shapes, strict=True):
            count = sum(parameter.size for parameter in layer.parameters())
            rows.append((repr(layer), shape_text(out), f"{count:,}"))
        widths = [min(max(len(row[column]) for row in rows), 60) for column in range(2)]
        lines = [f"Network (input {shape_text(shape)}, {self.dtype.name}, {self.device})"]
        rule = "-" * (widths[0] + widths[1] + 16)
        for index, (name, out_text, count_text) in enumerate(rows):
            short = name if len(name) <= 60 else name[:57] + "..."
            lines.append(f"{short:<{widths[0]}}  {out_text:<{widths[1]}}  {count_text:>12}")
            if index == 0:
                lines.append(rule)
        lines.append(rule)
        total = self.store.size
        lines.append(f"Total parameters: {total:,} ({total * self.dtype.itemsize:,} bytes)")
        return "\n".join(lines)

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

    def _use_kernels(self, backend: Backend) -> None:
        """Compute with ``backend``, the same device with other kernels: nothing is moved, copied or reset.

        The optimiser follows the store's backend on its next step.  Called
        (and undone) by :mod:`bpcore.training.kernel_choice` with the network's lock held.
        """
        if backend.device != self.backend.device or backend.xp is not self.backend.xp:
            raise ValueError(
                f"backend: expected one on {self.backend.device}, got {backend!r} (use Network.to to move)"
            )
        self.backend = backend
        self.store.backend = backend
        walked = self.__dict__.get("_walked")
        if walked is None:  # the layers are fixed after construction
            walked = self._walked = tuple(self.walk())
        for layer in walked:
            layer.use_kernels(backend)

    # --- computation --------------------------------------------------------
    def as_input(
        self, x: Any, *, argument: str = "x", check_finite: bool = True, backend: Backend | None = None
    ) -> Any:
        """Validate ``x`` against the first layers and convert it to this network's dtype and device.

        ``backend`` puts the result elsewhere (the host, for data kept there during training).
        """
        kind = self.layers[0].input_kind
        return as_samples(
            x, self.backend if backend is None else backend, self.dtype, check_shape=self.check_input_shape,
            kind=kind, argument=argument, check_finite=check_finite,
            check_values=getattr(self.layers[0], "check_input_values", None),
        )

    def check_input_shape(self, shape: tuple[int, ...], argument: str = "x") -> None:
        """Raise one ``ValueError`` if an input of ``shape`` (batch axis first) does not fit the layers.

        Runs every layer's shape rule on the host (wrong rank, channel count,
        an image smaller than a kernel ...), once per new input shape.
        """
        sample = tuple(shape[1:])
        if sample in self._checked_shapes:
            return
        if len(sample) == 1 and self.in_features is not None and sample[0] != self.in_features:
            raise ValueError(
                f"{argument}: expected {self.in_features} features per sample, got shape {tuple(shape)}"
            )
        try:
            output_shapes(self.layers, sample, owner="layers")
        except ValueError as exc:
            raise ValueError(f"{argument}: got shape {tuple(shape)}; {exc}") from None
        if len(self._checked_shapes) < 64:
            self._checked_shapes.add(sample)

    def check_forward_batch(self, n: int) -> None:
        """Raise ``ValueError`` before anything runs if a layer's state does not fit a batch of ``n``.

        Every layer's :meth:`~bpcore.layers.Layer.check_forward_batch` (a
        recurrent layer's ``initial_state`` rows), so that a mismatch in the
        second layer of a stack fails before the first has run.
        """
        for layer in self._batch_checked:
            layer.check_forward_batch(n)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold this network for one call: its lock, and its GPU made current.

        Every public entry point (forward, backward, fit, predict, evaluate)
        runs inside this, so that a network on ``cuda:1`` computes on GPU 1
        whatever device the calling thread has current.
        """
        with self._lock, device_scope(self.backend):
            yield

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        """Hold this network for a whole training step written by hand.

        ``forward``, ``backward`` and ``optimizer.step()`` each hold the
        network's lock only for their own call; between a ``forward`` and its
        ``backward`` another thread's ``forward`` (or ``predict``) would replace
        the activations the gradients are computed from.  Inside ``with
        network.step():`` the lock is held throughout, so other threads wait::

            with network.step():
                loss(network.forward(x, training=True), y)
                network.zero_grad(); network.backward(loss.backward()); optimizer.step()

        Without it, such an interleaving is detected: ``backward`` raises
        RuntimeError instead of computing wrong gradients.
        """
        with self.exclusive():
            yield

    def as_mask(
        self,
        mask: Any = None,
        *,
        lengths: Any = None,
        shape: Sequence[int],
        argument: str = "mask",
        x_argument: str = "x",
    ) -> Any:
        """The boolean ``(N, T)`` mask for input of ``shape`` from ``mask`` or ``lengths``, on the device.

        ``mask``: True at real time steps, False at padding, in any pattern
        (the recurrent layers skip padded steps wherever they are; a row with
        no real step keeps its initial state); ``lengths``: one length in
        ``[0, T]`` per sequence, real steps first (:func:`~bpcore.layers.mask_from_lengths`).
        None for neither.  Raises one exception naming the argument (``argument``
        for the mask, ``x_argument`` for the input it goes with) when the mask
        does not match ``shape``'s first two axes, is not boolean, or no layer
        of this network uses a mask.
        """
        if mask is None and lengths is None:
            return None
        if mask is not None and lengths is not None:
            raise ValueError("mask, lengths: expected one of them (lengths is a mask's short form), got both")
        named = argument if lengths is None else "lengths"
        if not self._uses_mask:
            raise ValueError(
                f"{named}: no layer of this network uses a mask (RNN, LSTM, GRU, Bidirectional, "
                "GlobalMaxPool1D and GlobalAvgPool1D do); a mask here would change nothing"
            )
        shape = tuple(int(size) for size in shape)
        if len(shape) < 2:
            raise ValueError(
                f"{named}: a mask needs input with a time axis (N, T, ...), got {x_argument} of shape {shape}"
            )
        if lengths is not None:
            from .layers.masking import mask_from_lengths

            counted = import_array(lengths, argument="lengths")
            if counted.ndim != 1 or counted.shape[0] != shape[0]:
                raise ValueError(
                    f"lengths: expected {shape[0]} lengths (one per sequence of {x_argument}), got shape "
                    f"{tuple(counted.shape)}"
                )
            mask = mask_from_lengths(counted, shape[1])
        array = import_array(mask, argument=argument)
        if array.dtype != np.bool_:
            raise TypeError(
                f"{argument}: expected a boolean array (True at real steps), got dtype {array.dtype}; "
                "lengths= takes sequence lengths"
            )
        if tuple(array.shape) != shape[:2]:
            raise ValueError(
                f"{argument}: expected shape {shape[:2]} (N, T: the first two axes of {x_argument}), got "
                f"{tuple(array.shape)}"
            )
        return to_backend(array, self.backend)

    def _forward(self, x: Any, training: bool, mask: Any = None) -> Any:
        self._forward_thread = threading.get_ident()
        if self._masked or mask is not None:
            return self._forward_masked(x, training, mask)
        for layer in self._plan:
            x = layer.forward(x, training)
        return x

    def _forward_masked(self, x: Any, training: bool, mask: Any = None) -> Any:
        """The forward pass with the mask protocol: each layer's output mask from its input and mask."""
        for layer in self._plan:
            out_mask = layer.compute_mask(x, mask)
            run: Any = layer.forward  # takes mask= where the layer uses_mask
            x = run(x, training, mask=mask) if layer.uses_mask else run(x, training)
            mask = out_mask
        return x

    def _backward(self, grad_out: Any, *, accumulate: bool, need_input_grad: bool) -> Any:
        grad = grad_out
        last = len(self._plan) - 1
        for position in range(last, -1, -1):
            needed = need_input_grad or position > 0
            grad = self._plan[position].backward(grad, accumulate=accumulate, need_input_grad=needed)
        return grad

    def forward(
        self, x: Any, training: bool = False, *, mask: Any = None, lengths: Any = None, check: bool = True
    ) -> Any:
        """The network's output for ``x`` (an array on the network's device).

        The result is a fresh array; intermediate results are kept for
        :meth:`backward`.  ``training=True`` draws dropout masks and uses
        (and updates) batch statistics.

        Padded sequences: ``mask`` is a boolean ``(N, T)`` array matching the
        first two axes of ``x``, True at real steps (any pattern), or
        ``lengths`` gives each sequence's length (real steps first).  It goes
        through the layers as a mask that a ``Masking`` layer would start
        (combined with one a layer starts itself): recurrent layers skip the
        padded steps, and :meth:`backward` follows the same steps.

        ``check=False`` is the fast path for custom training loops: ``x``
        must already be an array of the network's input shape, dtype and device
        (:meth:`as_input` makes one, once), nothing is validated or copied,
        and the result is the network's own output buffer, valid only until
        the next ``forward`` of this network (copy it to keep it).  The same
        call runs on the CPU and on a GPU and never synchronises the device.
        There ``mask`` must be a boolean array on the device (:meth:`as_mask`).
        """
        if not check:
            with self._lock, device_scope(self.backend):
                if lengths is not None:  # lengths from the host: made into a mask here
                    mask = self.as_mask(mask, lengths=lengths, shape=x.shape)
                out = self._forward(x, training, mask)
                self._output_shape = out.shape
                return out
        training = checks.flag(training, "training")  # a string such as "False" would be true
        with self.exclusive():
            x = self.as_input(x)
            real = self.as_mask(mask, lengths=lengths, shape=x.shape)
            if training and self._needs_batch:
                check_batch_statistics(self.layers, tuple(x.shape), argument="x")
            self.check_forward_batch(int(x.shape[0]))
            out = self._forward(x, training, real)
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
        accumulate: bool = True,
    ) -> Any:
        """Backpropagate ``grad_out`` (dLoss/dOutput) from the last ``forward``.

        Parameter gradients are *added* to ``parameter.grad``, as in PyTorch;
        call :meth:`zero_grad` between steps.  ``accumulate=False`` writes
        them instead, as ``fit`` does: no :meth:`zero_grad` is needed before
        it, and the pass over the flat gradient buffer and an addition per
        parameter are saved.  Frozen parameters (``requires_grad=False``, see
        :meth:`freeze`) get no gradient either way.  Returns dLoss/dInput.

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
                return self._backward_selected(grad_out, parameter_grads, input_grad, accumulate)
        with self.exclusive():
            if self._output_shape is None:
                raise RuntimeError("Network.backward(): called before forward(); run forward(x) first")
            if self._forward_thread != threading.get_ident():
                raise RuntimeError(
                    "Network.backward(): another thread ran this network (forward, predict or fit) after "
                    "this thread's forward(), so its activations are gone; hold the network for the whole "
                    "step with `with network.step(): ...`"
                )
            grad = as_gradient(grad_out, self.backend, self.dtype, self._output_shape, argument="grad_out")
            accumulate = checks.flag(accumulate, "accumulate")
            for layer in self._batch_checked:  # before any layer writes a gradient
                layer.check_backward_batch()
            result = self._backward_selected(grad, parameter_grads, input_grad, accumulate)
            return None if result is None else result.copy()

    def _backward_selected(self, grad: Any, parameter_grads: bool, input_grad: bool, accumulate: bool) -> Any:
        if parameter_grads:
            return self._backward(grad, accumulate=accumulate, need_input_grad=input_grad)
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
        self.store.zero_grad()  # on the network's GPU (the store makes it current)

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
        mine, theirs = self.store.shapes, source.store.shapes
        if mine != theirs:
            raise ValueError(
                f"source: expected a network with parameter shapes {list(mine)}, got {list(theirs)}"
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
            if not (self._has_buffers or source._has_buffers):  # e.g. an MLP: nothing more to copy
                return self
            for mine_layer, their_layer in zip(self.walk(), source.walk(), strict=False):
                current = mine_layer.buffers()
                for name, value in their_layer.buffers().items():
                    mine_layer.set_buffer(
                        name, self.backend.asarray(source.backend.to_numpy(value), dtype=current[name].dtype)
                    )
        return self

    def predict(self, x: Any, *, mask: Any = None, lengths: Any = None, batch_size: int = 4096) -> Any:
        """The network's output for ``x`` in evaluation mode, computed in batches."""
        from .training import predict

        return predict(self, x, mask=mask, lengths=lengths, batch_size=batch_size)

    def evaluate(
        self,
        x: Any,
        y: Any,
        *,
        loss: Any,
        metrics: Sequence[str] = (),
        mask: Any = None,
        lengths: Any = None,
        batch_size: int = 4096,
    ) -> dict[str, float]:
        """The loss (and metrics) on ``(x, y)`` in evaluation mode."""
        from .training import evaluate

        return evaluate(
            self, x, y, loss=loss, metrics=metrics, mask=mask, lengths=lengths, batch_size=batch_size
        )

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
