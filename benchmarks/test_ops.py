"""Each fused hot operation against its generic ``xp`` version, at 1e4 to 1e7 elements, on every device.

``extra_info["gb_per_s"]`` is the operation's minimum memory traffic (each
input read once, each output written once) over its median time: compare it
with the copy bandwidth that ``bpcore bench`` measures on the same device.
The 1e7-element cases are marked slow (``--bench-slow``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import estimate, iterations_for, run_timed, synchronizer

from bpcore.backends import get_backend
from bpcore.backends.ops import ACTIVATIONS, OPERATIONS

SIZES = [
    pytest.param(10_000, id="1e4"),
    pytest.param(100_000, id="1e5"),
    pytest.param(1_000_000, id="1e6"),
    pytest.param(10_000_000, id="1e7", marks=pytest.mark.slow),
]
MODES = ["fused", "generic"]
COLUMNS = 100  # width of the 2-D arrays (bias + activation, cross-entropy rows use 10 classes)
CLASSES = 10
ACTIVATION_NAMES = ["relu", "sigmoid", "tanh", "leaky_relu", "elu", "gelu", "gelu_erf", "silu", "softplus"]
DEFAULT_PARAMS = {"negative_slope": 0.01, "alpha": 1.0}


def _params(activation: str) -> tuple[float, ...]:
    return tuple(DEFAULT_PARAMS[name] for name in ACTIVATIONS[activation].params)


def _setup(op: str, size: int, backend: Any) -> tuple[Callable[[], Any], int]:
    """The call to time and its minimum number of array elements moved (read + written)."""
    dtype = np.float32
    rng = np.random.default_rng(0)

    def random(*shape: int, low: float = -3.0, high: float = 3.0) -> Any:
        return backend.asarray(rng.uniform(low, high, shape).astype(dtype), dtype=dtype)

    operation = getattr(backend.ops, op)
    if op.endswith("_backward") and op.removesuffix("_backward") in ACTIVATIONS:
        activation = op.removesuffix("_backward")
        gy, saved, out = random(size), random(size), backend.empty((size,), dtype)
        params = _params(activation)
        return (lambda: operation(gy, saved, out, *params)), 3 * size
    if op.startswith("bias_"):
        activation = op.removeprefix("bias_").removesuffix("_forward")
        rows = max(1, size // COLUMNS)
        source, b = random(rows, COLUMNS), random(COLUMNS)
        z = backend.empty(source.shape, dtype)
        out = z if ACTIVATIONS[activation].saves == "output" else backend.empty(source.shape, dtype)
        params = _params(activation)

        def bias_forward() -> None:
            z[...] = source  # z is overwritten by the operation: restore it (one more read and write)
            operation(z, b, out, *params)

        moved = (2 if out is z else 3) * rows * COLUMNS + 2 * rows * COLUMNS
        return bias_forward, moved
    if op.startswith("softmax_cross_entropy_index"):
        rows = max(1, size // CLASSES)
        logits = random(rows, CLASSES)
        labels = backend.asarray(rng.integers(0, CLASSES, rows))
        probs, losses = backend.empty((rows, CLASSES), dtype), backend.empty((rows,), dtype)
        if op.endswith("_forward"):
            return (lambda: operation(logits, labels, probs, losses)), 2 * rows * CLASSES + rows
        out = backend.empty((rows, CLASSES), dtype)
        backend.ops.softmax_cross_entropy_index_forward(logits, labels, probs, losses)
        return (lambda: operation(probs, labels, 1.0 / rows, out)), 2 * rows * CLASSES
    if op == "adam_step":
        param, grad = random(size, low=-0.1, high=0.1), random(size, low=-0.01, high=0.01)
        m, v, vmax = backend.zeros((size,), dtype), backend.zeros((size,), dtype), backend.zeros((0,), dtype)
        counter = iter(range(1, 1 << 62))
        return (lambda: operation(param, grad, m, v, vmax, 1e-3, 0.9, 0.999, 1e-8, 0.0, next(counter), False,
                                  False)), 7 * size
    if op == "sgd_step":
        param, grad = random(size, low=-0.1, high=0.1), random(size, low=-0.01, high=0.01)
        buf = backend.zeros((size,), dtype)
        return (lambda: operation(param, grad, buf, 1e-2, 0.9, 0.0, 0.0, False, False)), 5 * size
    raise AssertionError(f"no set-up for {op}")


OPS = (
    [f"{name}_backward" for name in ACTIVATION_NAMES]
    + [f"bias_{name}_forward" for name in ("relu", "sigmoid", "gelu")]
    + ["softmax_cross_entropy_index_forward", "softmax_cross_entropy_index_backward", "adam_step", "sgd_step"]
)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("op", OPS)
def test_op(benchmark: Any, device: str, op: str, size: int, mode: str) -> None:
    if op not in OPERATIONS:
        pytest.skip(f"operation {op} is not declared in this version")
    backend = get_backend(device, kernels=mode)
    implementation = backend.resolve(op)[1]
    if mode == "fused" and implementation == "generic":
        pytest.skip(f"{op} has no compiled kernel on {device}: the fused mode runs the generic version")
    call, moved = _setup(op, size, backend)
    synchronize = synchronizer(device)
    seconds = estimate(call, synchronize)
    benchmark.group = f"op {device} {op} {size:.0e}"
    run_timed(benchmark, call, synchronize, rounds=10, iterations=iterations_for(seconds),
              settle_seconds=0.02)
    itemsize = np.dtype(np.float32).itemsize
    benchmark.extra_info.update(implementation=implementation, elements=size,
                                gb_per_s=moved * itemsize / benchmark.stats.stats.median / 1e9)
