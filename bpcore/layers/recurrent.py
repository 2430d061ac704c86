"""Recurrent layers: RNN (Elman), LSTM and GRU, batch-first, with hand-written backpropagation through time.

Parameters, gate order, equations and initialisation are PyTorch's
(``weight_ih`` (G*H, F), ``weight_hh`` (G*H, H), ``bias_ih`` and ``bias_hh``
(G*H,), all drawn from U(-1/sqrt(H), 1/sqrt(H)); LSTM gates ``i, f, g, o``,
GRU ``r, z, n``), so weights move between the two libraries by a plain copy.

A forward pass has the structure cuDNN uses: the input projection of ALL
time steps is one matrix product before the loop (on the CPU, for few
features and a large projection, each step's product in the loop instead:
:data:`PER_STEP_FEATURES`); each step is ONE
recurrent product and ONE fused cell operation (gate activations, state
update, what the backward needs saved).  The backward runs ONE fused cell
backward operation and ONE product per step, then the weight gradients as
one product over all steps and the bias gradients as sums.  After an Embedding, the network's plan runs the
input projection as a table lookup instead (:meth:`Recurrent.forward_embedded`).  The cell
operations are declared in :mod:`bpcore.backends.ops.recurrent` (generic
``xp`` code, Numba on the CPU, one CuPy kernel launch on a GPU).

Masks follow the layer mask protocol (:class:`~bpcore.layers.Layer`): a
boolean ``(N, T)`` array, True at real time steps.  A padded step leaves the
state unchanged and receives no gradient; with ``return_sequences=False``
the output is each sequence's state after its last real step, with
``return_sequences=True`` the output at padded steps is zero (as PyTorch's
``pad_packed_sequence``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from .. import checks
from ..backends import Backend, device_scope
from ..backends.blas_threads import small_product
from ..backends.kernels.layout import c_ordered, unguarded
from ..interop import import_array, to_backend
from ..parameters import Parameter
from .base import Layer, Shape, shape_text


def uniform_by_hidden_size(
    rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int
) -> np.ndarray:
    """PyTorch's recurrent-layer initialisation: U(-1/sqrt(H), 1/sqrt(H)) (``fan_in`` carries H)."""
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape)


@dataclasses.dataclass(frozen=True)
class _Embedded:
    """What the backward needs of an embedded input (:meth:`Recurrent.forward_embedded`)."""

    embedding: Any  # the Embedding layer
    index: Any  # (T*N,) int64, time-major as the gate gradients
    rows: Any  # [E, 1] (vocabulary, F + 1) as the forward used it


#: The CPU forward computes each step's input projection in its time loop (:meth:`Recurrent._recur`)
#: for inputs of at most this many features whose projections of all steps hold at least
#: PER_STEP_SIZE values: measured 1.2-2x faster than one product over all steps there (a product of
#: inner size F + 1 <= 17 writes at memory speed), and slower for more features or a result that
#: stays in cache (T*N*G*H = 50 * 32 * 256).
PER_STEP_FEATURES = 16
PER_STEP_SIZE = 1 << 20
#: The time loop's per-step products (N x H by H x G*H, forward and backward) of at most this many
#: multiply-adds run on one BLAS thread (:func:`bpcore.backends.blas_threads.small_product`); larger
#: ones use the process's threads.  Measured on a quiet 2-core CPU, the step of the benchmarked models,
#: loop on one thread over loop on two: 1.20-1.27x slower at 1.5e6-2.1e6 multiply-adds per product
#: (the character LSTM and GRU, the series LSTM and GRU at batch 128), 0.98-1.19 at 3.9e5-5.2e5,
#: where the second thread, spinning between the products, gains least and costs most on a busy machine.
SMALL_PRODUCT = 1 << 20


def _gather_rows(index: Any, table: Any, out: Any) -> None:
    """A step's input projections of embedded indices: rows ``index`` of ``table`` into ``out``."""
    # mode="clip" takes no buffered copy; the network checked the range already.  The method, not
    # np.take: NumPy's Python wrapper around it cost 2.5 us a step, 1.5 % of a character LSTM's step.
    table.take(index, axis=0, out=out, mode="clip")


def _project_rows(rows: Any, projection: Any, out: Any) -> None:
    """A step's input projections: ``[x_t, 1] @ [W_ih^T; b]`` into ``out``."""
    np.matmul(rows, projection, out=out)


class _SameRows:
    """Every step's input projections as one (N, G*H) buffer: ``rows[t]`` is ``rows.rows`` for every t."""

    def __init__(self, rows: Any) -> None:
        self.rows = rows

    def __getitem__(self, t: int) -> Any:
        return self.rows


class Recurrent(Layer):
    """What RNN, LSTM and GRU share: parameters, shapes, masks, the state API and the time loop.

    Input ``(N, T, input_size)``; output ``(N, hidden_size)`` (the last real
    step, ``return_sequences=False``, as Keras) or ``(N, T, hidden_size)``.

    State: ``layer.initial_state`` (None = zeros; set it to an ``(N, H)``
    array, or for an LSTM a pair ``(h, c)``) is the state the next forward
    starts from; after a forward, ``layer.state`` is a copy of the final state
    in the same form.  Carrying the state between batches (truncated
    backpropagation through time, generation step by step) is
    ``layer.initial_state = layer.state``; ``layer.reset_state()`` starts
    from zeros again.

    Gradients of the states, as PyTorch's ``h0.grad`` and ``h_n.backward()``:
    after a ``backward``, ``layer.initial_state_grad`` is dLoss/d(initial
    state) in the form of :attr:`initial_state` (an ``(N, H)`` array, or
    ``(dh, dc)`` for an LSTM): fresh arrays, kept until the next backward.
    It is None when the forward started from zeros (``initial_state`` None:
    a constant, as PyTorch's omitted ``h0``).  A gradient INTO the final state
    (:attr:`state`), where the final state feeds something else (a decoder's
    initial state, the next chunk of a sequence), is set beforehand as
    ``layer.final_state_grad`` (same form); the next ``backward`` adds it to
    the gradient the output brings and then resets it to None.  Padded steps
    carry both gradients through unchanged, as they carry the state.
    """

    uses_mask = True
    preserves_shape = False
    #: Gates per hidden unit (1 for the plain RNN, 4 for the LSTM, 3 for the GRU).
    gate_count = 1
    #: Number of state arrays (h; or h and c for the LSTM).
    state_count = 1

    def __init__(self, input_size: int, hidden_size: int, *, return_sequences: bool = False) -> None:
        super().__init__()
        name = type(self).__name__
        self.input_size = checks.integer(input_size, f"{name}(input_size)", minimum=1)
        self.hidden_size = checks.integer(hidden_size, f"{name}(hidden_size)", minimum=1)
        self.return_sequences = checks.flag(return_sequences, f"{name}(return_sequences)")
        rows = self.gate_count * self.hidden_size

        def parameter(label: str, shape: tuple[int, ...], decay: bool) -> Parameter:
            return Parameter(
                label, shape, uniform_by_hidden_size, fan_in=self.hidden_size, fan_out=rows, decay=decay
            )

        self.weight_ih = parameter("weight_ih", (rows, self.input_size), True)
        self.weight_hh = parameter("weight_hh", (rows, self.hidden_size), True)
        self.bias_ih = parameter("bias_ih", (rows,), False)
        self.bias_hh = parameter("bias_hh", (rows,), False)
        self._initial: tuple[Any, ...] | None = None
        self._run: tuple[Any, ...] | None = None
        self._from_initial = False  # whether the last forward started from a given initial state
        self._initial_grad: tuple[Any, ...] | None = None
        self._final_grad: tuple[Any, ...] | None = None
        self._ops_backend: Backend | None = None  # the backend _forward_op and _backward_op come from
        self._forward_op: Any = None
        self._backward_op: Any = None
        self._plans: dict[str, tuple[tuple[int, ...], list[Any]]] = {}  # the time loops' steps (_step_plan)

    # --- description ------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "return_sequences": self.return_sequences,
        }

    def parameters(self) -> list[Parameter]:
        return [self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh]

    @property
    def input_shape(self) -> Shape:
        return (None, self.input_size)

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 2 or input_shape[-1] not in (None, self.input_size):
            raise ValueError(
                f"{self!r}: expected sequences (N, T, {self.input_size}) (batch, time steps, "
                f"features), but the input it receives has shape {shape_text(input_shape)}"
            )
        steps = input_shape[0]
        if steps is not None and steps < 1:
            raise ValueError(f"{self!r}: expected at least 1 time step, got shape {shape_text(input_shape)}")
        return (steps, self.hidden_size) if self.return_sequences else (self.hidden_size,)

    def compute_mask(self, x: Any, mask: Any) -> Any:
        """The mask goes on with the sequence output; a single last state has no time axis."""
        return mask if self.return_sequences else None

    def build(self, input_shape: Shape | None, dtype: np.dtype, backend: Backend) -> Shape | None:
        out = super().build(input_shape if input_shape is not None else self.input_shape, dtype, backend)
        self._run = None
        self._plans.clear()
        self._initial_grad = None
        # States given before the build may live on another device (a CuPy array's .get(), never np.asarray).
        if self._initial is not None:
            self._initial = tuple(to_backend(part, backend, self.dtype) for part in self._initial)
        if self._final_grad is not None:
            self._final_grad = tuple(to_backend(part, backend, self.dtype) for part in self._final_grad)
        return out

    def to(self, backend: Backend) -> None:
        initial = None if self._initial is None else [self.backend.to_numpy(p) for p in self._initial]
        final = None if self._final_grad is None else [self.backend.to_numpy(p) for p in self._final_grad]
        super().to(backend)
        self._run = None
        self._plans.clear()
        self._initial_grad = None
        self._initial = None if initial is None else tuple(backend.asarray(p, self.dtype) for p in initial)
        self._final_grad = None if final is None else tuple(backend.asarray(p, self.dtype) for p in final)

    # --- state --------------------------------------------------------------------
    @property
    def initial_state(self) -> Any:
        """The state the next forward starts from: None (zeros), an (N, H) array, or (h, c) for an LSTM."""
        if self._initial is None:
            return None
        return self._initial if self.state_count > 1 else self._initial[0]

    @initial_state.setter
    def initial_state(self, value: Any) -> None:
        self._initial = None if value is None else self._state_parts(value, "initial_state")

    @property
    def initial_state_grad(self) -> Any:
        """dLoss/d(initial state) from the last backward, in the form of :attr:`initial_state`.

        Fresh arrays (``(dh, dc)`` for an LSTM), kept until the next backward;
        None before one and when the forward started from zeros.
        """
        if self._initial_grad is None:
            return None
        return self._initial_grad if self.state_count > 1 else self._initial_grad[0]

    @property
    def final_state_grad(self) -> Any:
        """A gradient for the final state (:attr:`state`) that the next backward adds in, or None.

        Set it as :attr:`initial_state` is set (an ``(N, H)`` array, ``(dh, dc)``
        for an LSTM, N the batch of the last forward); the next ``backward``
        adds it to what the output's gradient brings (with
        ``return_sequences=False`` the output IS the final ``h``), carries it
        back through the steps and resets this to None.
        """
        if self._final_grad is None:
            return None
        return self._final_grad if self.state_count > 1 else self._final_grad[0]

    @final_state_grad.setter
    def final_state_grad(self, value: Any) -> None:
        self._final_grad = None if value is None else self._state_parts(value, "final_state_grad")

    def _state_parts(self, value: Any, attribute: str) -> tuple[Any, ...]:
        """``value`` checked as a state (an (N, H) array, or a pair for an LSTM), on the layer's device."""
        name = f"{type(self).__name__}.{attribute}"
        if self.state_count > 1:
            if not isinstance(value, (tuple, list)) or len(value) != self.state_count:
                raise TypeError(f"{name}: expected None or a pair (h, c) of (N, {self.hidden_size}) arrays, "
                                f"got {type(value).__name__}")
            parts = tuple(value)
        else:
            parts = (value,)
        checked = []
        for part in parts:
            shape = getattr(part, "shape", None)
            if shape is None or len(shape) != 2 or shape[1] != self.hidden_size or shape[0] < 1:
                seen = f"shape {tuple(shape)}" if shape is not None else type(part).__name__
                raise ValueError(f"{name}: expected arrays of shape (N, {self.hidden_size}), got {seen}")
            if getattr(part, "dtype", np.dtype(np.float64)).kind != "f":
                raise TypeError(f"{name}: expected floating-point arrays, got dtype {part.dtype}")
            checked.append(to_backend(import_array(part, argument=name), self.backend, self.dtype)
                           if self.built else part)
        if len({part.shape for part in checked}) != 1:
            raise ValueError(f"{name}: h and c must have one shape, got {[tuple(p.shape) for p in checked]}")
        return tuple(checked)

    @property
    def state(self) -> Any:
        """A copy of the final state of the last forward (None before one): as :attr:`initial_state`."""
        if self._run is None:
            return None
        steps, states = self._run[0], self._run[1]
        with device_scope(self.backend):  # the copies are made on the layer's GPU
            parts = tuple(array[steps].copy() for array in states)
        return parts if self.state_count > 1 else parts[0]

    def reset_state(self) -> None:
        """Start the next forward from zeros (``initial_state = None``)."""
        self._initial = None

    # --- computation ----------------------------------------------------------------
    def _input_bias(self) -> Any:
        """The bias folded into the input projection (both biases; the GRU keeps b_hh apart)."""
        return self.bias_ih.data + self.bias_hh.data

    def _projection(self, features: int) -> Any:
        """``[W_ih^T; b]`` (F + 1, G*H): the input projection's weights, the folded-in bias as last row."""
        projection = self.workspace("weight_ih_t", (features + 1, self.gate_count * self.hidden_size))
        projection[:features] = self.weight_ih.data.T
        projection[features] = self._input_bias()
        return projection

    def forward(self, x: Any, training: bool, mask: Any = None) -> Any:
        xp = self.backend.xp
        n, steps, features = x.shape
        self._check_initial_state(n)  # before anything is overwritten
        rows = self.gate_count * self.hidden_size
        # The input projection with the bias folded in, ONE product [x_t, 1] @ [W_ih^T; b] over all
        # steps (inner dimension F + 1): 1.4-4x faster than the product and a bias pass over its
        # (T, N, G*H) result, which for a single feature was an outer product outside BLAS.
        augmented = self.workspace("x_steps", (steps * n, features + 1))
        augmented.reshape(steps, n, features + 1)[:, :, :features] = x.transpose(1, 0, 2)
        augmented[:, features] = 1.0
        projection = self._projection(features)
        if xp is np and features <= PER_STEP_FEATURES and steps * n * rows >= PER_STEP_SIZE:
            # Few features and a large (T, N, G*H) result: each step's product in the loop (_recur).
            per_step = (_project_rows, augmented.reshape(steps, n, features + 1), projection)
            return self._recur(None, mask, augmented, per_step=per_step)
        xw = self.workspace("xw", (steps, n, rows))
        xp.matmul(augmented, projection, out=xw.reshape(steps * n, rows))
        return self._recur(xw, mask, augmented)

    def forward_embedded(self, embedding: Any, index: Any, mask: Any = None) -> Any:
        """The forward of ``embedding`` (an :class:`~bpcore.layers.Embedding`) and this layer on ``index``.

        ``index`` (N, T) holds the embedding's indices; ``mask`` is the mask
        into this layer (the embedding's own combined with the one that came).
        The input projection of a looked-up row is a row of the table
        ``[E, 1] @ [W_ih^T; b]`` (vocabulary, G*H): one small product and a
        gather replace the gather of the embedded (N, T, F) input and the
        product over all T*N steps, and the backward
        (:meth:`backward`, then without an input gradient) scatter-adds the gate
        gradients into a table gradient from which dW_ih, the input-side bias
        and the embedding's weight gradient are small products: the three
        largest products of a character model after the time loop's.  Used
        by the network's plan (:class:`~bpcore.layers.embedded_recurrent.EmbeddedRecurrent`).
        """
        xp = self.backend.xp
        n, steps = index.shape
        self._check_initial_state(n)
        weight = embedding.weight.data
        vocabulary, features = weight.shape
        rows = self.gate_count * self.hidden_size
        augmented = self.workspace("embedding_rows", (vocabulary, features + 1))
        augmented[:, :features] = weight
        augmented[:, features] = 1.0
        table = self.workspace("table", (vocabulary, rows))
        xp.matmul(augmented, self._projection(features), out=table)
        steps_index = self.workspace("index_steps", (steps, n), np.int64)  # time-major, as the loop
        steps_index[...] = index.T
        source = _Embedded(embedding, steps_index.reshape(-1), augmented)
        if xp is np:  # each step gathers its rows in the loop (_recur): no (T, N, G*H) array
            return self._recur(None, mask, source, per_step=(_gather_rows, steps_index, table))
        xw = self.workspace("xw", (steps, n, rows))
        xp.take(table, steps_index, axis=0, out=xw)
        return self._recur(xw, mask, source)

    def _recur(self, xw: Any, mask: Any, source: Any, per_step: Any = None) -> Any:
        """The time loop over the input projections ``xw`` (T, N, G*H); ``source`` kept for the backward.

        ``per_step`` (CPU only, with ``xw`` None): ``(fill, operands, constant)``;
        step ``t`` then first writes its (N, G*H) input projections into one
        reused buffer, ``fill(operands[t], constant, buffer)`` (a gather of
        table rows, :func:`_gather_rows`, or a product, :func:`_project_rows`).
        The loop's data then stays in cache, where the (T, N, G*H) array of all
        steps would be written and read back from memory: the lookup of a
        character LSTM (T*N = 2048, G*H = 512) took 0.7 ms of a 20 ms step that way.
        """
        xp = self.backend.xp
        if per_step is None:
            steps, n, rows = xw.shape
        else:
            fill, operands, constant = per_step
            steps, n, rows = operands.shape[0], operands.shape[1], constant.shape[1]
            xw = _SameRows(self.workspace("xw_step", (n, rows)))
        size = self.hidden_size
        real = self.workspace("mask", (steps, n))
        if mask is None:
            real.fill(1.0)
        else:
            mask = to_backend(mask, self.backend)  # a host mask given to a GPU layer called by hand
            real[...] = mask.T
        states = tuple(self.workspace(f"state{k}", (steps + 1, n, size)) for k in range(self.state_count))
        self._start(states, n)
        gates = self._gates_workspace(steps, n)
        hw = self.workspace("hw", (n, rows))
        weight_hh = self.workspace("weight_hh_t", (size, rows))
        weight_hh[...] = self.weight_hh.data.T  # contiguous: the per-step product is 15% faster
        self._bind_cell_ops()
        matmul, cell = xp.matmul, self._forward_op
        keyed = xw if per_step is None else xw.rows  # the plan is kept while the same arrays come
        plan = self._step_plan("forward", (keyed, hw, *states, gates, real, *self._cell_constants()), steps,
                               lambda t: self._forward_args(t, xw, hw, states, gates, real))
        with self._small_products(n):
            if per_step is None:
                for h_prev, args in plan:
                    matmul(h_prev, weight_hh, out=hw)
                    cell(*args)
            else:
                buffer = xw.rows
                for t, (h_prev, args) in enumerate(plan):
                    fill(operands[t], constant, buffer)
                    matmul(h_prev, weight_hh, out=hw)
                    cell(*args)
        # The source of the input is kept for the backward: [x_t, 1], so one product gives dW_ih and the
        # bias sums, or the embedding's indices and rows (forward_embedded).
        self._run = (steps, states, gates, source, real, mask is not None, n)
        hidden = states[0]
        if not self.return_sequences:
            return hidden[steps]
        out = self.workspace("out", (n, steps, size))
        out[...] = hidden[1:].transpose(1, 0, 2)
        if mask is not None:
            out *= mask[:, :, None]
        return out

    def check_forward_batch(self, n: int) -> None:
        self._check_initial_state(n)

    def check_backward_batch(self) -> None:
        if self._run is not None:
            self._check_final_state_grad(self._run[-1])

    def _check_final_state_grad(self, n: int) -> None:
        final = self._final_grad
        if final is not None and final[0].shape[0] != n:
            raise ValueError(
                f"{type(self).__name__}.final_state_grad: expected {n} rows to match the batch of the "
                f"last forward, got shape {tuple(final[0].shape)}"
            )

    def _check_initial_state(self, n: int) -> None:
        if self._initial is not None and self._initial[0].shape[0] != n:
            raise ValueError(
                f"{type(self).__name__}.initial_state: expected {n} rows to match the batch of {n} "
                f"sequences, got shape {tuple(self._initial[0].shape)}; set initial_state = None (zeros) "
                "for a new batch size"
            )

    def _start(self, states: tuple[Any, ...], n: int) -> None:
        self._from_initial = self._initial is not None
        if self._initial is None:
            for array in states:
                array[0].fill(0.0)
            return
        for array, part in zip(states, self._initial, strict=True):
            array[0][...] = part

    def _gates_workspace(self, steps: int, n: int) -> Any:
        return None

    #: The names of the cell's forward and backward operations (``backend.ops``).
    _cell_op_names: tuple[str, str] = ("", "")

    def _bind_cell_ops(self) -> None:
        """``self._forward_op`` and ``self._backward_op``: the cell operations, resolved once per backend.

        On the CPU without the layout guard (:func:`~bpcore.backends.kernels.layout.unguarded`): every
        array a step passes is a C-contiguous workspace or a row of one (the GRU's b_hh is made
        C-ordered).  A CUDA backend's operations keep their guard (``unguarded`` returns them as they
        are), which costs a flag check per call, not a copy.
        """
        backend = self.backend
        if self._ops_backend is not backend:
            forward, backward = self._cell_op_names
            self._forward_op = unguarded(getattr(backend.ops, forward))
            self._backward_op = unguarded(getattr(backend.ops, backward))
            self._ops_backend = backend

    def _step_plan(self, direction: str, arrays: tuple[Any, ...], steps: int, make: Any) -> list[Any]:
        """Each step's arguments of the time loop, ``make(t)`` for t < steps, kept between calls.

        A step's arguments are views of the layer's workspaces (row ``t`` of
        the gates, of the states, ...); building them costs several indexing
        operations per step, about a tenth of a small cell's time loop.  The
        workspaces are the same arrays from one batch to the next (same
        shapes), so the views are made once and reused while every array in
        ``arrays`` is the same object (the cache holds views of them, so no id
        can be reused by another array while it is kept); one plan per direction.
        """
        key = (steps, *(id(array) for array in arrays))
        cached = self._plans.get(direction)
        if cached is None or cached[0] != key:
            cached = (key, [make(t) for t in range(steps)])
            self._plans[direction] = cached
        return cached[1]

    def _cell_constants(self) -> tuple[Any, ...]:
        """The arrays other than workspaces that every forward step passes (the GRU's b_hh)."""
        return ()

    def _forward_args(
        self, t: int, xw: Any, hw: Any, states: tuple[Any, ...], gates: Any, real: Any
    ) -> tuple[Any, tuple[Any, ...]]:
        """Step ``t`` of the forward loop: the product's left operand h_{t-1}, the cell's arguments."""
        raise NotImplementedError

    def _backward_args(
        self, t: int, dy: Any, dh_rec: Any, dh: Any, carry: tuple[Any, ...], dgx: Any, dgh: Any,
        states: tuple[Any, ...], gates: Any, real: Any,
    ) -> tuple[Any, ...]:
        """The cell backward's arguments at step ``t`` (``dy``, ``dgx``, ``dgh``: that step's rows)."""
        raise NotImplementedError

    def _small_products(self, n: int) -> Any:
        """The time loop's products on one BLAS thread on the CPU where small (:data:`SMALL_PRODUCT`)."""
        return small_product(self.backend.xp, n * self.hidden_size * self.gate_count * self.hidden_size,
                             SMALL_PRODUCT)

    def backward(self, grad_out: Any, *, accumulate: bool = True, need_input_grad: bool = True) -> Any:
        if self._run is None:
            raise self._not_run()
        xp = self.backend.xp
        steps, states, gates, source, real, _masked, n = self._run
        self._check_final_state_grad(n)
        final = self._final_grad
        size, rows = self.hidden_size, self.gate_count * self.hidden_size
        dgx = self.workspace("dgates_x", (steps, n, rows))
        dgh = self.workspace("dgates_h", (steps, n, rows)) if self._separate_hidden_gradient else dgx
        dh = self.workspace("dh", (n, size))
        dh_rec = self.workspace("dh_rec", (n, size))
        dh_rec.fill(0.0)
        carry = tuple(self.workspace(f"dstate{k}", (n, size)) for k in range(1, self.state_count))
        for array in carry:
            array.fill(0.0)
        if self.return_sequences:
            dys = self.workspace("dy", (steps, n, size))
            dys[...] = grad_out.transpose(1, 0, 2)
            dh.fill(0.0)
        else:
            zero = self.workspace("dy_zero", (n, size))
            zero.fill(0.0)
            dh[...] = grad_out
        if final is not None:  # the gradient into the final state joins the carried ones
            dh += final[0]
            for array, part in zip(carry, final[1:], strict=True):
                array[...] = part
            self._final_grad = None
        weight_hh = self.weight_hh.data
        self._bind_cell_ops()
        matmul, cell = xp.matmul, self._backward_op
        sequences = self.return_sequences
        dy = dys if sequences else zero
        plan = self._step_plan(
            "backward", (dy, dh_rec, dh, *carry, dgx, dgh, *states, gates, real), steps,
            lambda t: (dgh[t], self._backward_args(t, dy[t] if sequences else dy, dh_rec, dh, carry, dgx[t],
                                                   dgh[t], states, gates, real)),
        )
        with self._small_products(n):
            for t in range(steps - 1, -1, -1):
                gate_grads, args = plan[t]
                cell(*args)
                if t:
                    matmul(gate_grads, weight_hh, out=dh_rec)
        self._initial_grad = None
        if self._from_initial:  # what the step at t = 0 carries on (fresh arrays, for the caller)
            self._initial_grad = (dh + xp.matmul(dgh[0], weight_hh), *(array.copy() for array in carry))
        flat_x, flat_h = dgx.reshape(steps * n, rows), dgh.reshape(steps * n, rows)
        if isinstance(source, _Embedded):
            sums_x = self._embedded_grads(flat_x, source, accumulate)
        else:  # dW_ih and the bias sums apart: folded into one product they were slower at T*N = 6400
            features = source.shape[1] - 1
            self._add_grad(self.weight_ih, flat_x.T, source[:, :features], accumulate)
            wanted = self.bias_ih.requires_grad or self.bias_hh.requires_grad
            sums_x = self._column_sums(flat_x, "x") if wanted else None
        self._add_grad(self.weight_hh, flat_h.T, states[0][:steps].reshape(steps * n, size), accumulate)
        self._add_bias_grads(sums_x, flat_h, accumulate)
        if not need_input_grad or isinstance(source, _Embedded):  # indices have no gradient
            return None
        features = source.shape[1] - 1
        dxs = self.workspace("dx_steps", (steps, n, features))
        xp.matmul(flat_x, self.weight_ih.data, out=dxs.reshape(steps * n, features))
        grad_in = self.workspace("grad_in", (n, steps, features))
        grad_in[...] = dxs.transpose(1, 0, 2)
        return grad_in

    #: Whether the hidden-side gate gradients differ from the input-side ones (the GRU's n gate).
    _separate_hidden_gradient = False

    def _add_grad(self, parameter: Parameter, left: Any, right: Any, accumulate: bool) -> None:
        if not parameter.requires_grad:
            return
        xp = self.backend.xp
        if accumulate:
            product = xp.matmul(left, right, out=self.workspace(f"grad_{parameter.name}", parameter.shape))
            parameter.grad += product
        else:
            xp.matmul(left, right, out=parameter.grad)

    def _input_side_grads(self, left: Any, augmented: Any, accumulate: bool) -> Any:
        """dW_ih, and the column sums of the input-side gate gradients, from ONE product.

        ``left`` is the table gradient transposed (G*H, vocabulary) and
        ``augmented`` the embedding's rows ``[E, 1]`` (:meth:`_embedded_grads`):
        ``left @ augmented`` holds dW_ih in its first F columns and the bias
        sums in its last.  (For an input of T*N rows the two are taken apart:
        one product of width F + 1 = 2 was 1.6-2.2x slower at T*N = 6400.)
        Returns the sums (None when neither the weight nor a bias takes a gradient).
        """
        weight = self.weight_ih
        if not (weight.requires_grad or self.bias_ih.requires_grad or self.bias_hh.requires_grad):
            return None
        features = augmented.shape[1] - 1
        product = self.workspace("grad_ih_augmented", (left.shape[0], features + 1))
        self.backend.xp.matmul(left, augmented, out=product)
        if weight.requires_grad:
            if accumulate:
                weight.grad += product[:, :features]
            else:
                weight.grad[...] = product[:, :features]
        return product[:, features]

    def _embedded_grads(self, flat_x: Any, source: _Embedded, accumulate: bool) -> Any:
        """The input side's gradients for an embedded input (:meth:`forward_embedded`); returns the bias sums.

        The gate gradients of all steps are added up per index into the table
        gradient (vocabulary, G*H) (the embedding's scatter-add operation);
        then dW_ih and the bias sums are ``table_grad^T @ [E, 1]``, and the
        embedding's weight gradient ``table_grad @ W_ih`` (nothing for its
        padding row, as the Embedding's own backward).
        """
        embedding = source.embedding
        vocabulary, features = embedding.weight.shape
        table_grad = self.workspace("table_grad", (vocabulary, flat_x.shape[1]))
        table_grad.fill(0.0)
        self.backend.ops.embedding_backward(flat_x, source.index, -1, table_grad)
        sums = self._input_side_grads(table_grad.T, source.rows, accumulate)
        weight = embedding.weight
        if weight.requires_grad:
            product = self.workspace("grad_embedding", (vocabulary, features))
            self.backend.xp.matmul(table_grad, self.weight_ih.data, out=product)
            if embedding.padding_idx is not None:
                product[embedding.padding_idx] = 0.0
            if accumulate:
                weight.grad += product
            else:
                weight.grad[...] = product
        return sums

    def _add_bias_grads(self, sums_x: Any, flat_h: Any, accumulate: bool) -> None:
        """The bias gradients: the column sums of the gate gradients over all steps.

        ``sums_x``, those of the input-side gradients, come with dW_ih
        (:meth:`_input_side_grads`); both biases take them where they see the
        same gate gradients (RNN, LSTM).  The GRU's hidden-side gradients
        differ from them in the n gate only, whose sums are taken apart (on the
        CPU as a product with a row of ones: a BLAS matrix-vector product,
        twice as fast as NumPy's column sum).
        """
        wanted = [p for p in (self.bias_ih, self.bias_hh) if p.requires_grad]
        if not wanted:
            return
        sums_h = self._hidden_side_sums(sums_x, flat_h) if self._separate_hidden_gradient else sums_x
        for parameter in wanted:
            sums = sums_x if parameter is self.bias_ih else sums_h
            if accumulate:
                parameter.grad += sums
            else:
                parameter.grad[...] = sums

    def _hidden_side_sums(self, sums_x: Any, flat_h: Any) -> Any:
        """The hidden-side column sums: the input side's for r and z, the n gate's own (GRU)."""
        sums = self.workspace("column_sums_h", (flat_h.shape[1],))
        split = 2 * self.hidden_size
        sums[:split] = sums_x[:split]
        sums[split:] = self._column_sums(flat_h[:, split:], "h_n")
        return sums

    def _column_sums(self, rows: Any, key: str) -> Any:
        out = self.workspace(f"column_sums_{key}", (rows.shape[1],))
        if self.backend.xp is not np:
            return rows.sum(axis=0, out=out)
        ones = self.workspace("ones_rows", (rows.shape[0],))
        ones.fill(1.0)
        return np.matmul(ones, rows, out=out)

    def __repr__(self) -> str:
        extra = "".join(f", {key}={value!r}" for key, value in self._extra_config().items())
        if self.return_sequences:
            extra += ", return_sequences=True"
        return f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra})"

    def _extra_config(self) -> dict[str, Any]:
        return {}


class RNN(Recurrent):
    """Elman RNN: ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``, act = tanh or ReLU (PyTorch's RNN)."""

    def __init__(
        self, input_size: int, hidden_size: int, *, nonlinearity: str = "tanh", return_sequences: bool = False
    ) -> None:
        self.nonlinearity = checks.choice(nonlinearity, "RNN(nonlinearity)", ("tanh", "relu"))
        super().__init__(input_size, hidden_size, return_sequences=return_sequences)
        self._relu = self.nonlinearity == "relu"

    def config(self) -> dict[str, Any]:
        return {**super().config(), "nonlinearity": self.nonlinearity}

    def _extra_config(self) -> dict[str, Any]:
        return {} if self.nonlinearity == "tanh" else {"nonlinearity": self.nonlinearity}

    _cell_op_names = ("rnn_cell_forward", "rnn_cell_backward")

    def _forward_args(
        self, t: int, xw: Any, hw: Any, states: tuple[Any, ...], gates: Any, real: Any
    ) -> tuple[Any, tuple[Any, ...]]:
        hidden = states[0]
        return hidden[t], (xw[t], hw, hidden[t], real[t], self._relu, hidden[t + 1])

    def _backward_args(
        self, t: int, dy: Any, dh_rec: Any, dh: Any, carry: tuple[Any, ...], dgx: Any, dgh: Any,
        states: tuple[Any, ...], gates: Any, real: Any,
    ) -> tuple[Any, ...]:
        return (dy, dh_rec, dh, states[0][t + 1], real[t], self._relu, dgx)


class LSTM(Recurrent):
    """Long short-term memory (PyTorch's LSTM): gates ``i, f, g, o`` in that order in the weight rows.

    ``i, f, o = sigmoid(...)``, ``g = tanh(...)``, each ``W_i* x + b_i* + W_h* h + b_h*``;
    ``c_t = f * c_{t-1} + i * g``, ``h_t = o * tanh(c_t)``.  The state is the pair ``(h, c)``.
    """

    gate_count = 4
    state_count = 2
    _cell_op_names = ("lstm_cell_forward", "lstm_cell_backward")

    def _gates_workspace(self, steps: int, n: int) -> Any:
        return self.workspace("gates", (steps, n, 4 * self.hidden_size))

    def _forward_args(
        self, t: int, xw: Any, hw: Any, states: tuple[Any, ...], gates: Any, real: Any
    ) -> tuple[Any, tuple[Any, ...]]:
        hidden, cells = states
        return hidden[t], (xw[t], hw, cells[t], hidden[t], real[t], gates[t], cells[t + 1], hidden[t + 1])

    def _backward_args(
        self, t: int, dy: Any, dh_rec: Any, dh: Any, carry: tuple[Any, ...], dgx: Any, dgh: Any,
        states: tuple[Any, ...], gates: Any, real: Any,
    ) -> tuple[Any, ...]:
        cells = states[1]
        return (dy, dh_rec, dh, carry[0], gates[t], cells[t], cells[t + 1], real[t], dgx)


class GRU(Recurrent):
    """Gated recurrent unit (PyTorch's GRU): gates ``r, z, n`` in that order in the weight rows.

    ``r, z = sigmoid(W_i* x + b_i* + W_h* h + b_h*)``,
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h_t = (1 - z) * n + z * h_{t-1}``.
    """

    gate_count = 3
    _separate_hidden_gradient = True
    _cell_op_names = ("gru_cell_forward", "gru_cell_backward")

    def _input_bias(self) -> Any:
        return self.bias_ih.data

    def _bind_cell_ops(self) -> None:
        super()._bind_cell_ops()
        # The one array a step passes that is not a workspace: C-ordered for the unguarded kernels.
        self._bias_hh = c_ordered(self.bias_hh.data)

    def _cell_constants(self) -> tuple[Any, ...]:
        return (self._bias_hh,)

    def _gates_workspace(self, steps: int, n: int) -> Any:
        return self.workspace("gates", (steps, n, 4 * self.hidden_size))

    def _forward_args(
        self, t: int, xw: Any, hw: Any, states: tuple[Any, ...], gates: Any, real: Any
    ) -> tuple[Any, tuple[Any, ...]]:
        hidden = states[0]
        return hidden[t], (xw[t], hw, self._bias_hh, hidden[t], real[t], gates[t], hidden[t + 1])

    def _backward_args(
        self, t: int, dy: Any, dh_rec: Any, dh: Any, carry: tuple[Any, ...], dgx: Any, dgh: Any,
        states: tuple[Any, ...], gates: Any, real: Any,
    ) -> tuple[Any, ...]:
        return (dy, dh_rec, dh, gates[t], states[0][t], real[t], dgx, dgh)
