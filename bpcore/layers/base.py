"""The ``Layer`` interface: a forward pass and its hand-written chain rule."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..backends import Backend
from ..parameters import Parameter

#: A per-sample shape (the batch axis left out); ``None`` marks a dimension
#: that is known only at the first forward (an image's height, a sequence's length).
Shape = tuple[int | None, ...]


def shape_text(shape: Shape | None) -> str:
    """``shape`` as a user reads it, with the batch axis: ``(N, 3, 32, 32)``, ``(N, ...)``."""
    if shape is None:
        return "(N, ...)"
    return "(" + ", ".join(["N", *("?" if size is None else str(size) for size in shape)]) + ")"


class Layer:
    """One step of a network.

    A layer is built once by its network (:meth:`build`), which tells it its
    input shape (per sample, without the batch axis; ``None`` when unknown),
    dtype and backend and collects its parameters.  The shape protocol:
    :attr:`input_shape` is what the layer requires (``None``: any shape),
    :attr:`input_kind` whether it takes floating-point features or integer
    indices, and :meth:`output_shape` maps a per-sample input shape to the
    output's, raising ``ValueError`` for one the layer cannot take.  The
    network runs that chain once per new input shape, on the host.  ``forward``
    keeps what ``backward`` needs; ``backward`` receives the gradient of the
    loss with respect to the layer's output, writes (or, with
    ``accumulate=True``, adds) the gradients of its parameters, and returns
    the gradient with respect to its input.

    ``forward`` and ``backward`` do no argument checking: they are the hot
    path, and the network validates its input once, on the host, before it
    reaches them.
    """

    backend: Backend
    dtype: np.dtype
    #: What the layer takes: "float" (features) or "index" (integer indices, e.g. an embedding).
    input_kind: str = "float"
    #: Whether the output has the input's shape whatever it is (elementwise layers).
    preserves_shape: bool = True

    @property
    def input_shape(self) -> Shape | None:
        """The per-sample input shape the layer requires (``None`` sizes: any; ``None``: any shape)."""
        return None

    @property
    def input_width(self) -> int | None:
        """The size of the last input axis the layer requires, or None if any will do."""
        shape = self.input_shape
        return shape[-1] if shape else None

    def output_shape(self, input_shape: Shape) -> Shape:
        """The per-sample output shape for ``input_shape``; ``ValueError`` if the layer cannot take it.

        The default is a shape-preserving (elementwise) layer.
        """
        return tuple(input_shape)

    def batch_statistics_count(self, input_shape: Shape) -> int | None:
        """The values per channel that ONE sample of ``input_shape`` gives this layer's batch statistics.

        For a layer that normalises with statistics over the batch (BatchNorm:
        one value per sample of an (N, C) input, H * W of an (N, C, H, W) one),
        or a container holding such layers (the fewest among them); None for
        every other layer.  The network checks before a training pass that
        the batch gives each such layer more than one value per channel, as
        PyTorch requires (:func:`~bpcore.layers.fusion.check_batch_statistics`).
        """
        return None

    # --- the mask protocol (variable-length sequences) ------------------------
    #: Whether ``forward`` takes ``mask=``: a boolean (N, T) array on the layer's
    #: backend, True at real time steps, False at padding (the recurrent layers).
    uses_mask: bool = False

    @property
    def produces_mask(self) -> bool:
        """Whether the layer can START a mask from its input (``Masking``, ``Embedding(padding_idx=p)``).

        A network threads masks through its layers only when one of them does,
        so networks without one pay nothing.
        """
        return False

    def compute_mask(self, x: Any, mask: Any) -> Any:
        """The mask of this layer's output, given its input ``x`` and the mask that came with it.

        The default passes ``mask`` on unchanged (elementwise layers, Dense on
        the last axis, Dropout); layers that remove or reshape the time axis
        return None.
        """
        return mask if self.preserves_shape else None

    def absorb(self, following: Layer | None) -> bool:
        """Fusion protocol: take over ``following`` (run it inside this layer); True if absorbed.

        Called by the planner with the next layer of a sequence, or with None
        to undo an earlier fusion.  Layers that cannot fuse return False.
        """
        return False

    def plan_entry(self) -> Layer:
        """What the planner runs for this layer after :meth:`absorb`: the layer itself by default.

        A layer whose fusion with the next one is a computation of its own
        (an Embedding and a recurrent layer) returns an object running both,
        so that the layer itself, called on its own, keeps its own meaning.
        """
        return self

    def absorb_after(self, following: Layer | None) -> bool:
        """Fusion protocol, second step: having absorbed a layer, take over the one after it too.

        Called by the planner only after :meth:`absorb` returned True, with the
        layer after the absorbed one (or None).  Layers that cannot fuse
        further return False.
        """
        return False

    def __init__(self) -> None:
        self._workspace: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails, so it costs nothing once built.
        if name in ("backend", "dtype"):
            raise AttributeError(
                f"{type(self).__name__}: the layer is not built yet, so it has no {name}; add it to a "
                "bpcore.Network (which builds it) before calling forward() or backward()"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # --- construction -------------------------------------------------------
    def build(self, input_shape: Shape | None, dtype: np.dtype, backend: Backend) -> Shape | None:
        """Check the input shape, record dtype and backend, return the output shape.

        ``None`` means "not known yet" (shape-preserving layers at the start):
        the layer then checks nothing, and returns None unless its output
        shape does not depend on its input's.
        """
        self.dtype = np.dtype(dtype)
        self.backend = backend
        self._workspace.clear()
        return None if input_shape is None else self.output_shape(tuple(input_shape))

    @property
    def built(self) -> bool:
        return "backend" in self.__dict__

    def parameters(self) -> list[Parameter]:
        """The trainable parameters, including those of nested layers."""
        return []

    def walk(self) -> Iterator[Layer]:
        """The layers nested inside this one, depth first (none for a plain layer)."""
        return iter(())

    def check_forward_batch(self, n: int) -> None:
        """Raise ``ValueError`` if what is set on this layer does not fit a forward of ``n`` samples.

        A recurrent layer's ``initial_state`` must have ``n`` rows.  The network
        calls this for every layer before a checked forward runs, so that a
        mismatch deep in a stack leaves every layer as it was.  Nothing to check
        by default.
        """

    def check_backward_batch(self) -> None:
        """Raise ``ValueError`` if what is set on this layer does not fit the next backward.

        A recurrent layer's ``final_state_grad`` must have the last forward's
        rows; called for every layer before a checked backward writes anything.
        """

    def bind_random(self, generator: Any) -> Any:
        """Give the layer a random generator (for dropout masks); returns the previous one."""
        return None

    def buffers(self) -> dict[str, Any]:
        """Non-trainable state saved with the model (e.g. running statistics)."""
        return {}

    def set_buffer(self, name: str, value: Any) -> None:
        raise KeyError(f"{type(self).__name__} has no buffer {name!r}")

    def to(self, backend: Backend) -> None:
        """Move buffers to ``backend``'s device and drop cached workspaces."""
        moved = {name: self.backend.to_numpy(value) for name, value in self.buffers().items()}
        self.backend = backend
        self._workspace.clear()
        for name, value in moved.items():
            self.set_buffer(name, value)

    def use_kernels(self, backend: Backend) -> None:
        """Compute with ``backend``: this layer's device with other kernels (``fused`` or ``generic``).

        Nothing moves and no state is dropped; a layer that keeps operations
        looked up on its backend forgets them here.  ``BPCORE_KERNELS=auto``
        binds a generic twin of the CPU backend for a small ``fit`` this way
        (see :mod:`bpcore.training.kernel_choice`).
        """
        self.backend = backend

    def config(self) -> dict[str, Any]:
        """The constructor arguments, as JSON-compatible values (for saving)."""
        return {}

    # --- computation --------------------------------------------------------
    def forward(self, x: Any, training: bool) -> Any:
        raise NotImplementedError

    def backward(self, grad_out: Any, *, accumulate: bool = True, need_input_grad: bool = True) -> Any:
        raise NotImplementedError

    def _not_run(self) -> RuntimeError:
        return RuntimeError(f"{self!r}: backward() called before forward()")

    # --- helpers ------------------------------------------------------------
    def workspace(self, key: str, shape: tuple[int, ...], dtype: Any = None) -> Any:
        """A reusable scratch array, reallocated only when its shape changes.

        Reusing buffers between steps keeps a training step free of large
        allocations.  The array is overwritten by the next call with the same
        key, so nothing returned to a user may be a workspace.
        """
        array = self._workspace.get(key)
        want = self.dtype if dtype is None else dtype
        # ``is`` first: NumPy's built-in dtypes are single objects, and the comparison costs more.
        if array is None or array.shape != shape or (array.dtype is not want and array.dtype != want):
            array = self.backend.empty(shape, want)
            self._workspace[key] = array
        return array

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class Container(Layer):
    """A layer made of the layers in ``self.layers`` (Residual, Concatenate): their parameters and nesting."""

    layers: list[Layer]

    def parameters(self) -> list[Parameter]:
        return [parameter for layer in self.layers for parameter in layer.parameters()]

    def walk(self) -> Iterator[Layer]:
        for layer in self.layers:
            yield layer
            yield from layer.walk()
