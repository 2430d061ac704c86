"""The convolution's and pooling's hot operations, fused against generic, at the LeNet step's shapes.

Shapes are those of the LeNet-shaped CNN of ``bpcore bench --models cnn`` at
batch 64: its first convolution (1 -> 32 channels on 28x28) and its second
(32 -> 64 on 14x14), 3x3 kernels with padding 1, each followed by a 2x2 max
pool.  ``extra_info["gb_per_s"]`` is the minimum memory traffic (each input
read once, each output written once) over the median time, as in
``test_ops.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import estimate, iterations_for, run_timed, synchronizer

from bpcore.backends import get_backend

MODES = ["fused", "generic"]
BATCH = 64
LAYERS = {"conv1": (1, 32, 28), "conv2": (32, 64, 14)}  # in channels, out channels, image size
OPS = ["im2col", "col2im", "channels_to_images", "images_to_channels", "max_pool2d_forward",
       "max_pool2d_backward"]


def _setup(op: str, layer: str, backend: Any) -> tuple[Callable[[], Any], int]:
    """The call to time and the number of array elements it moves at least (read + written)."""
    cin, cout, size = LAYERS[layer]
    dtype = np.float32
    rng = np.random.default_rng(0)

    def random(*shape: int) -> Any:
        return backend.asarray(rng.standard_normal(shape, dtype=np.float32), dtype=dtype)

    operation = getattr(backend.ops, op)
    pixels = BATCH * size * size
    window = (3, 3, 1, 1, 1, 1, 1, 1, size, size)
    if op == "im2col":
        x, cols = random(BATCH, cin, size, size), backend.empty((cin * 9, pixels), dtype)
        return (lambda: operation(x, *window, cols)), x.size + cols.size
    if op == "col2im":
        cols, grad = random(cin * 9, pixels), backend.empty((BATCH, cin, size, size), dtype)
        return (lambda: operation(cols, *window, grad)), cols.size + grad.size
    if op == "channels_to_images":
        z, bias, out = random(cout, pixels), random(cout), backend.empty((BATCH, cout, size, size), dtype)
        return (lambda: operation(z, bias, out, True)), 2 * z.size
    if op == "images_to_channels":
        gy, y = random(BATCH, cout, size, size), random(BATCH, cout, size, size)
        g, bias_grad = backend.empty((cout, pixels), dtype), backend.zeros((cout,), dtype)
        return (lambda: operation(gy, y, g, bias_grad, True, True, False)), 3 * g.size
    half = size // 2
    image = random(BATCH, cout, size, size)
    out = backend.empty((BATCH, cout, half, half), dtype)
    index = backend.empty((BATCH, cout, half, half), np.int64)
    backend.ops.max_pool2d_forward(image, 2, 2, 2, 2, out, index)
    if op == "max_pool2d_forward":
        return (lambda: operation(image, 2, 2, 2, 2, out, index)), image.size + 3 * out.size
    grad = backend.empty(image.shape, dtype)
    return (lambda: operation(out, index, 2, 2, 2, 2, grad)), 3 * out.size + grad.size


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layer", list(LAYERS))
@pytest.mark.parametrize("op", OPS)
def test_conv_op(benchmark: Any, device: str, op: str, layer: str, mode: str) -> None:
    backend = get_backend(device, kernels=mode)
    implementation = backend.resolve(op)[1]
    if mode == "fused" and implementation == "generic":
        pytest.skip(f"{op} has no compiled kernel on {device}: the fused mode runs the generic version")
    call, moved = _setup(op, layer, backend)
    synchronize = synchronizer(device)
    seconds = estimate(call, synchronize)
    benchmark.group = f"conv op {device} {op} {layer}"
    run_timed(benchmark, call, synchronize, rounds=10, iterations=iterations_for(seconds),
              settle_seconds=0.02)
    benchmark.extra_info.update(implementation=implementation, layer=layer,
                                gb_per_s=moved * 4 / benchmark.stats.stats.median / 1e9)
