"""Inputs for checking every compiled kernel against its generic version.

``CASES[name](rng, dtype, n, edge)`` returns fresh arguments for operation
``name``: ``n`` sets the size (rows of a (n, 16) batch or elements of a flat
buffer), ``edge`` mixes in extreme values (huge positive and negative inputs,
zeros, NaN).  :func:`compare` runs the generic and a compiled implementation
on copies of the same arguments and checks every array afterwards, outputs
and in-place state alike.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

from bpcore.backends.ops import ACTIVATIONS, OPERATIONS

EDGE = np.array(
    [
        0.0,
        -0.0,
        1e-3,
        -1e-3,
        1.0,
        -1.0,
        20.0,
        -20.0,
        50.0,
        -50.0,
        100.0,
        -100.0,
        500.0,
        -500.0,
        1e4,
        -1e4,
        np.nan,
    ]
)
FEATURES = 16
PARAMS = {"negative_slope": 0.07, "alpha": 1.3}


def _values(rng: np.random.Generator, dtype: Any, shape: Any, edge: bool, scale: float = 2.0) -> np.ndarray:
    x = rng.normal(0.0, scale, size=shape)
    if edge:
        flat = x.reshape(-1)
        picks = rng.integers(0, EDGE.size, size=flat.size)
        chosen = rng.random(flat.size) < 0.5
        flat[chosen] = EDGE[picks[chosen]]
    return x.astype(dtype)


def _activation_case(name: str) -> Callable[..., list[Any]]:
    body = name.removeprefix("bias_")
    activation, role = body.rsplit("_", 1)
    params = [PARAMS[p] for p in ACTIVATIONS[activation].params]

    def make(rng: np.random.Generator, dtype: Any, n: int, edge: bool) -> list[Any]:
        shape = (n, FEATURES)
        x = _values(rng, dtype, shape, edge)
        if role == "backward":
            saved = np.empty_like(x)
            with np.errstate(all="ignore"):
                OPERATIONS[f"{activation}_forward"].generic(np, x, saved, *params)
            if ACTIVATIONS[activation].saves == "input":
                saved = x
            return [_values(rng, dtype, shape, edge), saved, np.empty_like(x), *params]
        if name.startswith("bias_"):
            return [x, _values(rng, dtype, (FEATURES,), False), np.empty_like(x), *params]
        return [x, np.empty_like(x), *params]

    return make


def _flat(rng: np.random.Generator, dtype: Any, n: int, edge: bool, *, positive: bool = False) -> np.ndarray:
    x = _values(rng, dtype, (n * FEATURES,), edge and not positive, scale=1.0)
    return np.abs(x) if positive else x


def _sgd(momentum: float, nesterov: bool, first: bool, wd: float) -> Callable[..., list[Any]]:
    def make(rng, dtype, n, edge):  # type: ignore[no-untyped-def]
        p, g = _flat(rng, dtype, n, False), _flat(rng, dtype, n, edge)
        buf = _flat(rng, dtype, n, False) if momentum else np.empty(0, dtype)
        return [p, g, buf, 0.05, momentum, 0.1, wd, nesterov, first]

    return make


def _adam(decoupled: bool, amsgrad: bool, wd: float, step: int) -> Callable[..., list[Any]]:
    def make(rng, dtype, n, edge):  # type: ignore[no-untyped-def]
        p, g = _flat(rng, dtype, n, False), _flat(rng, dtype, n, edge)
        m = _flat(rng, dtype, n, False) * 0.1
        v = _flat(rng, dtype, n, False, positive=True) * 0.01
        vmax = (v * 1.5 * (rng.random(v.size) < 0.5)).astype(dtype) if amsgrad else np.empty(0, dtype)
        return [p, g, m, v, vmax, 1e-3, 0.9, 0.999, 1e-8, wd, step, decoupled, amsgrad]

    return make


def _rmsprop(centered: bool, momentum: float) -> Callable[..., list[Any]]:
    def make(rng, dtype, n, edge):  # type: ignore[no-untyped-def]
        p, g = _flat(rng, dtype, n, False), _flat(rng, dtype, n, edge)
        sq = _flat(rng, dtype, n, False, positive=True) + 0.5
        ga = _flat(rng, dtype, n, False) * 0.1 if centered else np.empty(0, dtype)
        buf = _flat(rng, dtype, n, False) if momentum else np.empty(0, dtype)
        return [p, g, sq.astype(dtype), ga, buf, 0.01, 0.99, 1e-8, 0.01, momentum, centered]

    return make


def _softmax_forward(index: bool) -> Callable[..., list[Any]]:
    def make(rng, dtype, n, edge):  # type: ignore[no-untyped-def]
        k = 10
        logits = _values(rng, dtype, (n, k), False, scale=3.0)
        if edge:
            logits[::3, 0] = 1e4
            logits[1::3, :3] = -1e4
            logits[2::7, 1] = np.nan
            logits[5::7, 0] = np.nan  # first in its row: the running max starts at NaN
        if index:
            target: Any = rng.integers(0, k, size=n).astype(np.int64)
            target[1::5] = -1  # ignored rows (CrossEntropy's ignore_index)
        else:
            target = rng.random((n, k)).astype(dtype)
            target /= target.sum(axis=1, keepdims=True)
        return [logits, target, np.empty((n, k), dtype), np.empty(n, dtype)]

    return make


def _softmax_backward(index: bool) -> Callable[..., list[Any]]:
    def make(rng, dtype, n, edge):  # type: ignore[no-untyped-def]
        k = 10
        probs = rng.random((n, k)).astype(dtype)
        probs /= probs.sum(axis=1, keepdims=True)
        if index:
            target: Any = rng.integers(0, k, size=n).astype(np.int64)
            target[1::5] = -100  # ignored rows (CrossEntropy's ignore_index)
        else:
            target = np.eye(k, dtype=dtype)[rng.integers(0, k, size=n)]
        return [probs, target, 1.0 / n, np.empty((n, k), dtype)]

    return make


def _bce(kind: str) -> Callable[..., list[Any]]:
    def make(rng, dtype, n, edge):  # type: ignore[no-untyped-def]
        shape = (n, FEATURES)
        t = (rng.random(shape) < 0.5).astype(dtype)
        if kind == "prob":
            p = rng.random(shape).astype(dtype)
            if edge:
                p[::4] = 0.0
                p[1::4] = 1.0
            return [p, t, 1.0 / n, 1e-12, np.empty(shape, dtype)]
        z = _values(rng, dtype, shape, edge)
        if kind == "forward":
            return [z, t, np.empty(shape, dtype)]
        return [z, t, 1.0 / n, np.empty(shape, dtype)]

    return make


def _dropout_forward(rng, dtype, n, edge):  # type: ignore[no-untyped-def]
    shape = (n, FEATURES)
    x = _values(rng, dtype, shape, edge)
    u = rng.random(shape).astype(dtype)
    u.reshape(-1)[::5] = 0.3  # exactly p: kept, as uniform >= p
    return [x, u, 0.3, np.empty(shape, dtype), np.empty(shape, dtype)]


def _dropout_backward(rng, dtype, n, edge):  # type: ignore[no-untyped-def]
    shape = (n, FEATURES)
    mask = ((rng.random(shape) >= 0.3) / 0.7).astype(dtype)
    return [_values(rng, dtype, shape, edge), mask, np.empty(shape, dtype)]


def _batchnorm_forward(rng, dtype, n, edge):  # type: ignore[no-untyped-def]
    f = FEATURES
    offset = 50.0 if edge else 0.0
    x = (rng.normal(offset, 2.0, size=(max(n, 2), f))).astype(dtype)
    m = max(n, 2)
    return [
        x,
        rng.normal(1, 0.2, f).astype(dtype),
        rng.normal(0, 0.2, f).astype(dtype),
        rng.normal(0, 1, f).astype(dtype),
        rng.random(f).astype(dtype) + 0.5,
        0.1,
        1e-5,
        np.empty((m, f), dtype),
        np.empty((m, f), dtype),
        np.empty(f, dtype),
    ]


def _batchnorm_backward(accumulate: bool) -> Callable[..., list[Any]]:
    def make(rng, dtype, n, edge):  # type: ignore[no-untyped-def]
        f, m = FEATURES, max(n, 2)
        xhat = rng.normal(0, 1, (m, f))
        xhat = ((xhat - xhat.mean(0)) / xhat.std(0)).astype(dtype)
        return [
            _values(rng, dtype, (m, f), False),
            xhat,
            rng.normal(1, 0.2, f).astype(dtype),
            (rng.random(f) + 0.5).astype(dtype),
            rng.normal(0, 1, f).astype(dtype),
            rng.normal(0, 1, f).astype(dtype),
            np.empty((m, f), dtype),
            accumulate,
        ]

    return make


def _l1_l2(rng, dtype, n, edge):  # type: ignore[no-untyped-def]
    g, p = _flat(rng, dtype, n, edge), _flat(rng, dtype, n, edge)
    p[::7] = 0.0
    mask = (rng.random(p.size) < 0.8).astype(dtype)
    return [g, p, 1e-3, 1e-2, mask, np.empty_like(g)]


def _grad_norm(rng, dtype, n, edge):  # type: ignore[no-untyped-def]
    return [_flat(rng, dtype, n, False), np.zeros((), np.float64)]


def _clip_norm(max_norm: float, scale: float = 1.0) -> Callable[..., list[Any]]:
    """Cases of clipping by total norm: a flat buffer, its limit and the 0-d norm to write."""

    def make(rng, dtype, n, edge):  # type: ignore[no-untyped-def]
        return [(_flat(rng, dtype, n, edge) * scale).astype(dtype), max_norm, np.full((), np.nan, dtype)]

    return make


def _scale(rng, dtype, n, edge):  # type: ignore[no-untyped-def]
    return [_flat(rng, dtype, n, edge), np.asarray(0.37, dtype=np.float64)]


def _adagrad(rng, dtype, n, edge):  # type: ignore[no-untyped-def]
    p, g = _flat(rng, dtype, n, False), _flat(rng, dtype, n, edge)
    s = _flat(rng, dtype, n, False, positive=True)
    return [p, g, s, 0.01, 0.01, 1e-10]


def _embedding_backward(padding_idx: int) -> Callable[..., list[Any]]:
    def make(rng, dtype, n, edge):  # type: ignore[no-untyped-def]
        rows, vocabulary = 3 * n, 7  # many repeated indices per weight row
        index = rng.integers(0, vocabulary, size=rows).astype(np.int64)
        grad = _values(rng, dtype, (vocabulary, FEATURES), False)
        return [_values(rng, dtype, (rows, FEATURES), edge), index, padding_idx, grad]

    return make


HIDDEN = 5  # hidden units of the recurrent cell cases (odd, so that no gate block lines up with another)


def _sequence_mask(rng: np.random.Generator, dtype: Any, n: int) -> np.ndarray:
    mask = (rng.random(n) < 0.7).astype(dtype)
    mask[0] = 1.0
    return mask


def _recurrent(name: str, relu: bool = False) -> Callable[..., list[Any]]:
    """Cases of the recurrent cell steps: (n, H) states, gate blocks of H columns, a mask with padding."""
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[name.split("_")[0]]

    def make(rng, dtype, n, edge):  # type: ignore[no-untyped-def]
        h, g = HIDDEN, gates * HIDDEN
        state = lambda: _values(rng, dtype, (n, h), False, scale=0.5)  # noqa: E731
        pre = lambda: _values(rng, dtype, (n, g), edge)  # noqa: E731
        mask = _sequence_mask(rng, dtype, n)
        empty = lambda width: np.full((n, width), np.nan, dtype)  # noqa: E731  (every entry must be written)
        if name == "rnn_cell_forward":
            return [pre(), pre(), state(), mask, relu, empty(h)]
        if name == "rnn_cell_backward":
            saved = np.empty((n, h), dtype)
            OPERATIONS["rnn_cell_forward"].generic(np, pre(), pre(), state(), np.ones(n, dtype), relu, saved)
            return [state(), state(), state(), saved, mask, relu, empty(h)]
        if name == "lstm_cell_forward":
            return [pre(), pre(), state(), state(), mask, empty(g), empty(h), empty(h)]
        if name == "lstm_cell_backward":
            saved, c_prev, c, hidden = np.empty((n, g), dtype), state(), np.empty((n, h), dtype), state()
            OPERATIONS["lstm_cell_forward"].generic(
                np, pre(), pre(), c_prev, hidden, np.ones(n, dtype), saved, c, np.empty((n, h), dtype)
            )
            return [state(), state(), state(), state(), saved, c_prev, c, mask, empty(g)]
        b_hh = _values(rng, dtype, (g,), False, scale=0.5)
        if name == "gru_cell_forward":
            # The candidate reads tanh(xw + r * hn): r's last-bit rounding is multiplied by |hn|, so edge
            # values there (|hn| in the thousands) would test the conditioning, not the kernel. Edge values
            # still reach every gate's input projection and the reset and update gates' recurrent part.
            hw = pre()
            hw[:, 2 * h :] = _values(rng, dtype, (n, h), False)
            return [pre(), hw, b_hh, state(), mask, empty(4 * h), empty(h)]
        saved, h_prev = np.empty((n, 4 * h), dtype), state()
        OPERATIONS["gru_cell_forward"].generic(np, pre(), pre(), b_hh, h_prev, np.ones(n, dtype), saved,
                                               np.empty((n, h), dtype))
        return [state(), state(), state(), saved, h_prev, mask, empty(g), empty(g)]

    return make


RECURRENT_OPS = (
    "rnn_cell_forward", "rnn_cell_backward", "lstm_cell_forward", "lstm_cell_backward",
    "gru_cell_forward", "gru_cell_backward",
)

# name -> list of (label, maker)
CASES: dict[str, list[tuple[str, Callable[..., list[Any]]]]] = {}
for _name in OPERATIONS:
    if (
        _name.endswith(("_forward", "_backward"))
        and _name.removeprefix("bias_").rsplit("_", 1)[0] in ACTIVATIONS
    ):
        CASES[_name] = [("", _activation_case(_name))]
CASES.update(
    {
        "sgd_step": [
            ("plain", _sgd(0.0, False, False, 0.0)),
            ("wd", _sgd(0.0, False, False, 0.01)),
            ("momentum", _sgd(0.9, False, False, 0.01)),
            ("first", _sgd(0.9, False, True, 0.0)),
            ("nesterov", _sgd(0.9, True, False, 0.01)),
        ],
        "adagrad_step": [("", _adagrad)],
        "rmsprop_step": [
            ("plain", _rmsprop(False, 0.0)),
            ("centered", _rmsprop(True, 0.0)),
            ("momentum", _rmsprop(False, 0.9)),
            ("centered-momentum", _rmsprop(True, 0.9)),
        ],
        "adam_step": [
            ("adam", _adam(False, False, 0.0, 1)),
            ("adam-wd", _adam(False, False, 0.01, 7)),
            ("adamw", _adam(True, False, 0.01, 3)),
            ("amsgrad", _adam(False, True, 0.0, 5)),
            ("adamw-amsgrad", _adam(True, True, 0.01, 100)),
        ],
        "l1_l2_grad": [("", _l1_l2)],
        "grad_norm_sq": [("", _grad_norm)],
        "scale_inplace": [("", _scale)],
        "clip_norm_inplace": [
            ("clipped", _clip_norm(1.0)),
            ("below-the-limit", _clip_norm(1e4, scale=1e-3)),
            ("zero-limit", _clip_norm(0.0)),
        ],
        "softmax_cross_entropy_forward": [("", _softmax_forward(False))],
        "softmax_cross_entropy_index_forward": [("", _softmax_forward(True))],
        "softmax_cross_entropy_backward": [("", _softmax_backward(False))],
        "softmax_cross_entropy_index_backward": [("", _softmax_backward(True))],
        "binary_cross_entropy_logits_forward": [("", _bce("forward"))],
        "binary_cross_entropy_logits_backward": [("", _bce("backward"))],
        "binary_cross_entropy_backward": [("", _bce("prob"))],
        "dropout_forward": [("", _dropout_forward)],
        "dropout_backward": [("", _dropout_backward)],
        "batchnorm_forward_train": [("", _batchnorm_forward)],
        "batchnorm_backward": [
            ("set", _batchnorm_backward(False)),
            ("accumulate", _batchnorm_backward(True)),
        ],
        "embedding_backward": [("plain", _embedding_backward(-1)), ("padding", _embedding_backward(3))],
    }
)
CASES.update(
    {
        name: [("tanh", _recurrent(name)), ("relu", _recurrent(name, relu=True))]
        if name.startswith("rnn_")
        else [("", _recurrent(name))]
        for name in RECURRENT_OPS
    }
)

# --- whole-buffer and per-row operations of custom loops --------------------------------------------
def _polyak(rng: np.random.Generator, dtype: Any, n: int, edge: bool) -> list[Any]:
    return [_flat(rng, dtype, n, edge), _flat(rng, dtype, n, edge), 0.3]


def _clamp(rng: np.random.Generator, dtype: Any, n: int, edge: bool) -> list[Any]:
    return [_flat(rng, dtype, n, edge), -0.5, 0.7]


def _index(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, FEATURES, size=n).astype(np.int64)


def _gather(rng: np.random.Generator, dtype: Any, n: int, edge: bool) -> list[Any]:
    return [_values(rng, dtype, (n, FEATURES), edge), _index(rng, n), np.empty(n, dtype)]


def _scatter(rng: np.random.Generator, dtype: Any, n: int, edge: bool) -> list[Any]:
    return [_values(rng, dtype, (n,), edge), _index(rng, n), np.empty((n, FEATURES), dtype)]


def _outer(rng: np.random.Generator, dtype: Any, n: int, edge: bool) -> list[Any]:
    a, b = _values(rng, dtype, (n,), edge), _values(rng, dtype, (FEATURES,), edge)
    return [a, b, np.empty((n, FEATURES), dtype)]


def _column_sums(rng: np.random.Generator, dtype: Any, n: int, edge: bool) -> list[Any]:
    return [_values(rng, dtype, (n, FEATURES), edge), np.empty(FEATURES, dtype)]


def _double_q_target(rng: np.random.Generator, dtype: Any, n: int, edge: bool) -> list[Any]:
    dones = (rng.random(n) < 0.3).astype(dtype)
    return [_values(rng, dtype, (n, FEATURES), edge), _values(rng, dtype, (n, FEATURES), edge),
            _values(rng, dtype, (n,), edge), dones, 0.99, np.empty(n, dtype)]


def _chosen_huber(rng: np.random.Generator, dtype: Any, n: int, edge: bool) -> list[Any]:
    weights = rng.uniform(0.2, 1.0, size=n).astype(dtype)
    q, target = _values(rng, dtype, (n, FEATURES), edge), _values(rng, dtype, (n,), edge)
    outputs = [np.empty((n, FEATURES), dtype), np.empty(n, dtype), np.empty((), dtype)]
    return [q, _index(rng, n), target, weights, 1.5, 1.0 / n, *outputs]


def _small_dense(rng: np.random.Generator, dtype: Any, n: int, edge: bool) -> list[Any]:
    inner = int(rng.integers(2, 5))
    x, w = _values(rng, dtype, (n, inner), edge), _values(rng, dtype, (inner, FEATURES), False)
    bias = _values(rng, dtype, (FEATURES,), False)
    return [x, w, bias, np.empty((n, FEATURES), dtype), bool(rng.integers(2))]


def _relu_bias_backward(rng: np.random.Generator, dtype: Any, n: int, edge: bool) -> list[Any]:
    gy, y = _values(rng, dtype, (n, FEATURES), edge), _values(rng, dtype, (n, FEATURES), edge)
    y[rng.random(y.shape) < 0.3] = 0.0  # a ReLU's output: exact zeros where the input was negative
    return [gy, y, np.empty((n, FEATURES), dtype), np.empty(FEATURES, dtype)]


CASES.update(
    {
        "small_dense_forward": [("", _small_dense)],
        "relu_bias_backward": [("", _relu_bias_backward)],
        "double_q_target": [("", _double_q_target)],
        "chosen_huber": [("", _chosen_huber)],
        "outer_product": [("", _outer)],
        "column_sums": [("", _column_sums)],
        "polyak_update": [("", _polyak)],
        "clamp_inplace": [("", _clamp)],
        "gather_rows": [("", _gather)],
        "scatter_rows": [("", _scatter)],
    }
)

# Operations that sum over many elements: the generic version's sums carry
# rounding error that grows with the length (the kernels sum in float64).
REDUCING = frozenset(
    {"batchnorm_forward_train", "batchnorm_backward", "grad_norm_sq", "embedding_backward",
     "clip_norm_inplace", "chosen_huber"}
)

TOLERANCE = {np.dtype(np.float32): (2e-5, 5e-6), np.dtype(np.float64): (1e-11, 1e-13)}


def compare(
    name: str, implementation: Callable[..., Any], args: list[Any], *, tol_scale: float = 1.0
) -> None:
    """Run generic and ``implementation`` on copies of ``args``; every array must agree."""
    expected = copy.deepcopy(args)
    got = copy.deepcopy(args)
    with np.errstate(all="ignore"):  # NaN and huge edge inputs make NumPy warn
        OPERATIONS[name].generic(np, *expected)
        implementation(*got)
    for position, (e, g) in enumerate(zip(expected, got, strict=True)):
        if not isinstance(e, np.ndarray) or e.dtype.kind != "f":
            continue
        rtol, atol = TOLERANCE.get(e.dtype, TOLERANCE[np.dtype(np.float64)])
        if name in REDUCING:
            rtol, atol = rtol * 50, atol * 50
        # Absolute error is judged against the array's scale: the generic
        # float32 path loses digits to cancellation (e.g. GELU's derivative
        # near its zero) where the kernels, computing in float64, do not.
        finite = np.abs(e[np.isfinite(e)])
        magnitude = max(1.0, float(finite.max(initial=0.0)))
        np.testing.assert_allclose(
            g,
            e,
            rtol=rtol * tol_scale,
            atol=atol * tol_scale * magnitude,
            equal_nan=True,
            err_msg=f"{name}: argument {position} differs from the generic version",
        )


def cuda_wrapper(name: str, provider: Callable[[str], Any]) -> Callable[..., Any]:
    """Operation ``name``'s CUDA wrapper over the kernels ``provider(kernel_name)`` returns."""
    make = OPERATIONS[name].cuda_wrapper
    assert make is not None, f"{name} is not declared with the short cuda= form"
    return make(provider)


LAYOUTS = ("fortran", "strided")


def relayout(args: list[Any], layout: str, xp: Any = np) -> list[Any]:
    """``args`` with every array in a layout a flat-memory kernel would misread, values unchanged.

    ``fortran``: 2-D arrays in column-major order (what ``DataFrame.to_numpy()``
    gives); ``strided``: every array a view of every other element of a
    larger buffer along its last axis (a sliced or transposed prediction).
    ``xp`` is the arrays' module (CuPy for device arrays).
    """
    out: list[Any] = []
    for arg in args:
        if not isinstance(arg, xp.ndarray) or arg.ndim == 0:
            out.append(arg)
        elif layout == "fortran":
            out.append(xp.asfortranarray(arg) if arg.ndim == 2 else arg.copy())
        else:
            buffer = xp.zeros((*arg.shape[:-1], 2 * arg.shape[-1]), arg.dtype)
            view = buffer[..., ::2]
            view[...] = arg
            out.append(view)
    return out


def compare_layout(name: str, implementation: Callable[..., Any], args: list[Any], layout: str) -> None:
    """``implementation`` on ``args`` in ``layout`` against the generic version on C-ordered copies."""
    expected = copy.deepcopy(args)
    got = relayout(args, layout)
    assert layout == "fortran" or not all(
        a.flags.c_contiguous for a in got if isinstance(a, np.ndarray) and a.ndim
    )
    with np.errstate(all="ignore"):
        OPERATIONS[name].generic(np, *expected)
        implementation(*got)
    for position, (e, g) in enumerate(zip(expected, got, strict=True)):
        if isinstance(e, np.ndarray) and e.dtype.kind == "f":
            rtol, atol = TOLERANCE[e.dtype]
            np.testing.assert_allclose(
                g, e, rtol=rtol * 50, atol=atol * 50, equal_nan=True,
                err_msg=f"{name} ({layout}): argument {position} differs from the generic version",
            )


# --- the convolution's data movement and max pooling (n sets the batch) -------------
def _window_case(name: str, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
                 start: tuple[int, int]) -> Callable[..., list[Any]]:
    def make(rng, dtype, n, edge):  # type: ignore[no-untyped-def]
        shape = (max(1, n // 40), 3, 9, 8)
        out_hw = tuple(
            (size + 2 * pad - d * (k - 1) - 1) // s + 1
            for size, pad, d, k, s in zip(shape[2:], start, dilation, kernel, stride, strict=True)
        )
        window = (*kernel, *stride, *dilation, *start, *out_hw)
        cols = (shape[1] * kernel[0] * kernel[1], shape[0] * out_hw[0] * out_hw[1])
        if name == "im2col":
            return [_values(rng, dtype, shape, edge), *window, np.zeros(cols, dtype)]
        return [_values(rng, dtype, cols, edge), *window, np.zeros(shape, dtype)]

    return make


def _swap_case(name: str, relu: bool, with_bias: bool, accumulate: bool) -> Callable[..., list[Any]]:
    def make(rng, dtype, n, edge):  # type: ignore[no-untyped-def]
        images = (max(1, n // 8), 5, 4, 7)  # past the parallel threshold at the tests' large n
        channels = (images[1], images[0] * images[2] * images[3])
        if name == "channels_to_images":
            return [_values(rng, dtype, channels, edge), _values(rng, dtype, images[1], False),
                    np.zeros(images, dtype), relu]
        return [_values(rng, dtype, images, edge), _values(rng, dtype, images, False),
                np.zeros(channels, dtype), _values(rng, dtype, images[1], False), relu, with_bias, accumulate]

    return make


def _max_pool_case(name: str, kernel: tuple[int, int], stride: tuple[int, int]) -> Callable[..., list[Any]]:
    def make(rng, dtype, n, edge):  # type: ignore[no-untyped-def]
        shape = (max(1, n // 40), 3, 8, 7)
        out = (*shape[:2], (shape[2] - kernel[0]) // stride[0] + 1, (shape[3] - kernel[1]) // stride[1] + 1)
        if name == "max_pool2d_forward":
            return [_values(rng, dtype, shape, False), *kernel, *stride, np.zeros(out, dtype),
                    np.zeros(out, np.int64)]
        index = rng.integers(0, kernel[0] * kernel[1], out).astype(np.int64)
        return [_values(rng, dtype, out, edge), index, *kernel, *stride, np.zeros(shape, dtype)]

    return make


CASES.update(
    {
        name: [("3x3-pad1", _window_case(name, (3, 3), (1, 1), (1, 1), (1, 1))),
               ("strided-dilated", _window_case(name, (2, 3), (2, 1), (1, 2), (0, 2)))]
        for name in ("im2col", "col2im")
    }
)
CASES.update(
    {
        name: [
            ("plain", _swap_case(name, False, True, False)),
            ("relu-accumulate", _swap_case(name, True, True, True)),
            ("no-bias", _swap_case(name, True, False, False)),
        ]
        for name in ("channels_to_images", "images_to_channels")
    }
)
CASES.update(
    {
        name: [
            ("2x2", _max_pool_case(name, (2, 2), (2, 2))),
            ("3x2-overlapping", _max_pool_case(name, (3, 2), (1, 2))),
        ]
        for name in ("max_pool2d_forward", "max_pool2d_backward")
    }
)


def _conv_pool_case(name: str, with_bias: bool, accumulate: bool) -> Callable[..., list[Any]]:
    """A convolution's product and its 2x2-pooled images (the fused convolution, ReLU and max pool)."""
    def make(rng, dtype, n, edge):  # type: ignore[no-untyped-def]
        pooled = (max(1, n // 8), 5, 3, 4)
        channels = (pooled[1], pooled[0] * pooled[2] * pooled[3] * 4)
        if name == "channels_to_pooled":
            # No edge values: NaN's first-maximum rule differs between argmax and the kernels' selects.
            return [_values(rng, dtype, channels, False), _values(rng, dtype, pooled[1], False),
                    np.zeros(pooled, dtype), np.zeros(pooled, np.uint8)]
        index = rng.integers(0, 4, pooled).astype(np.uint8)
        return [_values(rng, dtype, pooled, edge), _values(rng, dtype, pooled, edge), index,
                np.zeros(channels, dtype), _values(rng, dtype, pooled[1], False), with_bias, accumulate]

    return make


CASES.update(
    {
        name: [
            ("plain", _conv_pool_case(name, True, False)),
            ("accumulate", _conv_pool_case(name, True, True)),
            ("no-bias", _conv_pool_case(name, False, False)),
        ]
        for name in ("channels_to_pooled", "pooled_to_channels")
    }
)
