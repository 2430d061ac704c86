"""Step time of the MNIST-shaped MLP on the CPU, fused kernels against the generic path.

Measures, for the fused kernels and the generic path (``BPCORE_KERNELS``),
each with its own network and arrays in one process:

* one training step of a 784-256-128-10 ReLU MLP: forward, softmax
  cross-entropy, backward, Adam step (float32, batch 128 by default);
* the Adam step alone over the same 235,146 parameters (the flat buffer);
* a ReLU backward and a bias+ReLU forward at the first layer's size.

Method: every timed function runs ``--warmup`` times first (so kernel
compilation, cached or not, stays out of the numbers), then ``--repeats``
samples of ``--inner`` calls each (ten times as many for the small
activation ops) are timed with ``time.perf_counter``, the two modes'
samples interleaved so that background load hits both alike; the median
per-call time is reported (the JSON adds the interquartile range).

    python benchmarks/kernels_step.py [--batch 128] [--repeats 30] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

try:
    import bpcore  # noqa: F401
except ImportError:  # run from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _setup(mode: str, batch: int) -> tuple[dict[str, Any], int]:
    """The timed functions for one kernel mode, each with its own network and arrays."""
    import numpy as np

    import bpcore
    from bpcore.layers import Dense, ReLU
    from bpcore.losses import CrossEntropy
    from bpcore.optim import Adam

    os.environ["BPCORE_KERNELS"] = mode  # read when the network picks its backend
    from bpcore.backends import get_backend

    backend = get_backend("cpu", kernels=mode)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, 784)).astype(np.float32)
    y = rng.integers(0, 10, size=batch)
    network = bpcore.Network([Dense(784, 256), ReLU(), Dense(256, 128), ReLU(), Dense(128, 10)], seed=0)
    assert network.backend is backend
    optimizer = Adam(network.parameters(), lr=1e-3)
    loss = CrossEntropy()

    def step() -> None:
        optimizer.zero_grad()
        pred = network.forward(x, training=True)
        loss(pred, y, check=False)
        network.backward(loss.backward())
        optimizer.step()

    n = sum(int(np.prod(p.data.shape)) for p in network.parameters())
    param = rng.normal(size=n).astype(np.float32)
    grad = rng.normal(size=n).astype(np.float32) * 1e-3
    m = rng.normal(size=n).astype(np.float32) * 1e-3
    v = np.abs(rng.normal(size=n)).astype(np.float32) * 1e-6
    vmax = np.empty(0, np.float32)
    counter = iter(range(1, 10**9))

    def adam_only() -> None:
        backend.ops.adam_step(
            param, grad, m, v, vmax, 1e-3, 0.9, 0.999, 1e-8, 0.0, next(counter), False, False
        )

    z = rng.normal(size=(batch, 256)).astype(np.float32)
    b = rng.normal(size=256).astype(np.float32)
    out = np.empty_like(z)
    gy = rng.normal(size=z.shape).astype(np.float32)
    grad_in = np.empty_like(z)

    def relu_backward() -> None:
        backend.ops.relu_backward(gy, out, grad_in)

    def bias_relu_forward() -> None:
        backend.ops.bias_relu_forward(z, b, out)

    return {
        "training step": step,
        "adam step": adam_only,
        "relu backward": relu_backward,
        "bias+relu forward": bias_relu_forward,
    }, n


def measure(batch: int, warmup: int, repeats: int, inner: int) -> dict[str, Any]:
    """Both modes in one process, their samples interleaved so that machine noise hits both alike."""
    modes = ("generic", "fused")
    functions = {}
    for mode in modes:
        functions[mode], n = _setup(mode, batch)
    for mode in modes:
        for function in functions[mode].values():
            for _ in range(warmup):
                function()
    samples: dict[str, dict[str, list[float]]] = {
        mode: {key: [] for key in functions[mode]} for mode in modes
    }
    for _ in range(repeats):
        for key in functions["fused"]:
            calls = inner if key in ("training step", "adam step") else inner * 10
            for mode in modes:
                function = functions[mode][key]
                start = time.perf_counter()
                for _ in range(calls):
                    function()
                samples[mode][key].append((time.perf_counter() - start) / calls)
    report: dict[str, Any] = {"parameters": n, "batch": batch, "repeats": repeats, "warmup": warmup}
    for mode in modes:
        report[mode] = {}
        for key, values in samples[mode].items():
            q = statistics.quantiles(values, n=4)
            report[mode][key] = {
                "median_ms": statistics.median(values) * 1e3,
                "q1_ms": q[0] * 1e3,
                "q3_ms": q[2] * 1e3,
            }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--inner", type=int, default=20)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    report = measure(args.batch, args.warmup, args.repeats, args.inner)
    generic, fused = report["generic"], report["fused"]
    print(
        f"batch {args.batch}, {report['parameters']} parameters, median of {args.repeats} interleaved samples"
    )
    print(f"{'measurement':<20} {'generic ms':>12} {'fused ms':>12} {'speed-up':>9}")
    for key in generic:
        g, f = generic[key]["median_ms"], fused[key]["median_ms"]
        print(f"{key:<20} {g:>12.4f} {f:>12.4f} {g / f:>8.2f}x")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
