"""Kernel launches per time step of the recurrent layers on the CUDA code path, counted without a GPU.

RNN, LSTM and GRU (and Bidirectional around them) run on bpcore's CUDA
backend whose array module and kernels are the counting host stand-ins of
``launch_counting``: the layer code and the operations' CUDA wrappers are the
real ones, the kernels are CuPy's kernel objects driven through CuPy's call
path and run by their bodies compiled for the host.  The outputs and
gradients match the CPU backend's, and the launches are what the layers'
docstrings promise: per time step, forward ONE recurrent GEMM and ONE fused
cell kernel, backward ONE fused cell kernel and ONE GEMM (none after the
step at t = 0).  Everything else (the all-steps input projection, the
weight-gradient products, the copies in and out) is before or after the loop,
the same number of launches for any number of steps.
"""

from __future__ import annotations

import shutil
from collections import Counter
from typing import Any

import numpy as np
import pytest
from launch_counting import CountingBackend, DeviceArray, build_provider, counting

from bpcore.backends import get_backend
from bpcore.layers import GRU, LSTM, RNN, Bidirectional
from bpcore.parameters import ParameterStore

COMPILER = shutil.which("g++") or shutil.which("c++")
CELLS = {"rnn": "rnn_cell", "lstm": "lstm_cell", "gru": "gru_cell"}
KINDS = ["rnn-tanh", "rnn-relu", "lstm", "gru"]
N, FEATURES, HIDDEN, STEPS = 3, 2, 5, 4
GEMM = ("gemm", "matmul")


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> CountingBackend:
    if COMPILER is None:
        pytest.skip("no host C++ compiler (g++) to build the CUDA kernels for the CPU")
    names = [f"bp_{cell}_{direction}" for cell in CELLS.values() for direction in ("forward", "backward")]
    provider, recorder = build_provider(names, tmp_path_factory.mktemp("recurrent_launches"), COMPILER)
    counting_backend = CountingBackend(provider)
    counting_backend.recorder = recorder  # type: ignore[attr-defined]
    return counting_backend


def _layer(kind: str, sequences: bool, bidirectional: bool) -> Any:
    if kind == "lstm":
        layer: Any = LSTM(FEATURES, HIDDEN, return_sequences=sequences)
    elif kind == "gru":
        layer = GRU(FEATURES, HIDDEN, return_sequences=sequences)
    else:
        layer = RNN(FEATURES, HIDDEN, nonlinearity=kind.removeprefix("rnn-"), return_sequences=sequences)
    return Bidirectional(layer) if bidirectional else layer


def _run(kind: str, sequences: bool, bidirectional: bool, variant: str, steps: int, backend: Any) -> dict:
    """One forward and backward on ``backend``: results on the host, and the launches if it counts."""
    rng = np.random.default_rng(steps)
    x = rng.standard_normal((N, steps, FEATURES))
    lengths = np.array([steps, steps - 1, 1]) if variant != "plain" else np.full(N, steps)
    mask = np.arange(steps)[None, :] < lengths[:, None]
    layer = _layer(kind, sequences, bidirectional)
    out_shape = layer.build((steps, FEATURES), np.dtype(np.float64), backend)
    store = ParameterStore(layer.parameters(), backend, np.dtype(np.float64))
    store.initialize(np.random.default_rng(0))
    gy = rng.standard_normal((N, *out_shape))
    on = (lambda a: backend.asarray(a)) if isinstance(backend, CountingBackend) else (lambda a: a)
    if variant == "initial":
        parts = [rng.standard_normal((N, HIDDEN)) for _ in range(layer.state_count)]
        layer.initial_state = tuple(on(p) for p in parts) if layer.state_count > 1 else on(parts[0])
    x_in, mask_in, gy_in = on(x), None if variant == "plain" else on(mask), on(gy)
    with counting() as forward_launches:
        out = layer.forward(x_in, True, mask_in)
    with counting() as backward_launches:
        grad_in = layer.backward(gy_in, accumulate=False)
    host = backend.to_numpy
    initial_grad = None
    if variant == "initial":
        grads = layer.initial_state_grad
        initial_grad = [host(g) for g in (grads if layer.state_count > 1 else (grads,))]
    return {
        "out": host(out), "grad_in": host(grad_in), "grads": host(store.grad), "initial_grad": initial_grad,
        "forward": list(forward_launches), "backward": list(backward_launches), "out_type": type(out),
    }


def _loops(launches: list[tuple[str, str]], cell: str, gap: list[tuple[str, str]]) -> list[tuple[int, int]]:
    """(first, last) positions of each run of ``cell`` launches separated by exactly ``gap``."""
    positions = [k for k, launch in enumerate(launches) if launch == ("kernel", cell)]
    loops: list[list[int]] = []
    for k in positions:
        if loops and launches[loops[-1][-1] + 1 : k] == gap:
            loops[-1].append(k)
        else:
            loops.append([k])
    return [(run[0], run[-1]) for run in loops]


def split_forward(launches: list[tuple[str, str]], cell: str) -> tuple[list[Any], list[Any], list[int]]:
    """Launches before the time loops, after them, and each loop's steps (each step: one GEMM, one cell)."""
    loops = _loops(launches, cell, [GEMM])
    inside, steps = set(), []
    for first, last in loops:
        assert launches[first - 1] == GEMM, "the first step starts with its recurrent product"
        inside |= set(range(first - 1, last + 1))
        steps.append((last - first) // 2 + 1)
    outside = [launch for k, launch in enumerate(launches) if k not in inside]
    before = [launch for k, launch in enumerate(launches) if k < loops[0][0] - 1 and k not in inside]
    return before, outside[len(before):], steps


def split_backward(launches: list[tuple[str, str]], cell: str) -> tuple[list[Any], list[Any], list[int]]:
    """As :func:`split_forward`; a backward step is one cell launch and one GEMM, the last step no GEMM."""
    loops = _loops(launches, cell, [GEMM])
    inside, steps = set(), []
    for first, last in loops:
        inside |= set(range(first, last + 1))
        steps.append((last - first) // 2 + 1)
    outside = [launch for k, launch in enumerate(launches) if k not in inside]
    before = [launch for k, launch in enumerate(launches) if k < loops[0][0]]
    return before, outside[len(before):], steps


CASES = [
    pytest.param(kind, sequences, bidirectional, variant,
                 id=f"{kind}-{'seq' if sequences else 'last'}-{variant}{'-bi' if bidirectional else ''}")
    for kind in KINDS for sequences in (False, True) for bidirectional in (False, True)
    for variant in ("plain", "masked", "initial") if not (bidirectional and variant == "initial")
]


@pytest.mark.parametrize(("kind", "sequences", "bidirectional", "variant"), CASES)
def test_per_step_one_gemm_and_one_fused_kernel_each_way(
    kind: str, sequences: bool, bidirectional: bool, variant: str, backend: CountingBackend
) -> None:
    cpu = _run(kind, sequences, bidirectional, variant, STEPS, get_backend("cpu"))
    got = _run(kind, sequences, bidirectional, variant, STEPS, backend)
    longer = _run(kind, sequences, bidirectional, variant, STEPS + 3, backend)
    # the CUDA path's arithmetic: the CPU backend's results
    assert got["out_type"] is DeviceArray
    for key in ("out", "grad_in", "grads"):
        np.testing.assert_allclose(got[key], cpu[key], rtol=1e-12, atol=1e-13, err_msg=key)
    if variant == "initial":
        for part, expected in zip(got["initial_grad"], cpu["initial_grad"], strict=True):
            np.testing.assert_allclose(part, expected, rtol=1e-12, atol=1e-13)
    cell = CELLS[kind.split("-")[0]]
    directions = 2 if bidirectional else 1
    # each time loop is STEPS x (GEMM, cell kernel) forward, (cell kernel, GEMM) backward ...
    for run, split, op in (("forward", split_forward, "forward"), ("backward", split_backward, "backward")):
        name = f"bp_{cell}_{op}"
        for result, steps in ((got, STEPS), (longer, STEPS + 3)):
            before, after, loop_steps = split(result[run], name)
            assert loop_steps == [steps] * directions, (run, result[run])
            assert ("kernel", name) not in before + after
        # ... and nothing else grows with the number of steps: 3 more steps, 3 more of each per direction
        grown = Counter(longer[run]) - Counter(got[run])
        assert Counter(got[run]) - Counter(longer[run]) == Counter()
        assert grown == Counter({GEMM: 3 * directions, ("kernel", name): 3 * directions}), (run, grown)


def test_the_kernels_went_through_cupys_call_path(backend: CountingBackend) -> None:
    recorder = backend.recorder  # type: ignore[attr-defined]
    if recorder is None:
        pytest.skip("CuPy is not installed: the kernels ran on the host without CuPy's argument checks")
    _run("gru", True, False, "masked", STEPS, backend)
    _run("lstm", False, False, "plain", STEPS, backend)
    kernels = {program.kernel for program in recorder.programs.values()}
    assert {"bp_gru_cell_forward", "bp_gru_cell_backward", "bp_lstm_cell_forward",
            "bp_lstm_cell_backward"} <= kernels


def test_the_count_sees_a_launch_added_to_the_loop(backend: CountingBackend) -> None:
    """A copy inside the time loop (what the count must catch) breaks the loop's pattern."""
    layer = RNN(FEATURES, HIDDEN)
    layer.build((STEPS, FEATURES), np.dtype(np.float64), backend)
    ParameterStore(layer.parameters(), backend, np.dtype(np.float64)).initialize(np.random.default_rng(0))
    layer._bind_cell_ops()
    original = layer._forward_op

    def with_a_copy(*args: Any) -> None:  # the RNN cell's arguments: (xw, hw, h_prev, mask, relu, h)
        original(*args)
        args[-1].copy()

    layer._forward_op = with_a_copy
    with counting() as launches:
        layer.forward(backend.asarray(np.ones((N, STEPS, FEATURES))), True)
    _before, _after, steps = split_forward(launches, "bp_rnn_cell_forward")
    assert steps == [1] * STEPS  # no run of (GEMM, cell) steps: every step is broken up
