"""Step time of the MNIST-shaped MLP on the CPU, fused kernels against the generic path.

Measures, for ``BPCORE_KERNELS=fused`` and ``=generic`` (each in its own
process, so that nothing is shared between the modes):

* one training step of a 784-256-128-10 ReLU MLP: forward, softmax
  cross-entropy, backward, Adam step (float32, batch 128 by default);
* the Adam step alone over the same 235,146 parameters (the flat buffer);
* a ReLU backward and a bias+ReLU forward at the first layer's size.

Method: every timed function runs ``--warmup`` times first (so kernel
compilation, cached or not, stays out of the numbers), then ``--repeats``
samples of ``--inner`` calls each are timed with ``time.perf_counter``; the
median per-call time is reported, with the interquartile range.

    python benchmarks/kernels_step.py [--batch 128] [--repeats 30] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

try:
    import bpcore  # noqa: F401
except ImportError:  # run from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _time(function: Any, warmup: int, repeats: int, inner: int) -> dict[str, float]:
    for _ in range(warmup):
        function()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            function()
        samples.append((time.perf_counter() - start) / inner)
    q = statistics.quantiles(samples, n=4)
    return {"median_ms": statistics.median(samples) * 1e3, "q1_ms": q[0] * 1e3, "q3_ms": q[2] * 1e3}


def measure(batch: int, warmup: int, repeats: int, inner: int) -> dict[str, Any]:
    """Run in one process, in the kernel mode that ``BPCORE_KERNELS`` selects."""
    import numpy as np

    import bpcore
    from bpcore.backends import get_backend
    from bpcore.layers import Dense, ReLU
    from bpcore.losses import CrossEntropy
    from bpcore.optim import Adam

    backend = get_backend("cpu")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, 784)).astype(np.float32)
    y = rng.integers(0, 10, size=batch)
    network = bpcore.Network([Dense(784, 256), ReLU(), Dense(256, 128), ReLU(), Dense(128, 10)], seed=0)
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
    grad = rng.normal(size=n).astype(np.float32)
    m, v, vmax = np.zeros(n, np.float32), np.zeros(n, np.float32), np.empty(0, np.float32)
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
        "mode": backend.kernels,
        "parameters": n,
        "batch": batch,
        "training step": _time(step, warmup, repeats, inner),
        "adam step": _time(adam_only, warmup, repeats, inner),
        "relu backward": _time(relu_backward, warmup, repeats, inner * 10),
        "bias+relu forward": _time(bias_relu_forward, warmup, repeats, inner * 10),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--inner", type=int, default=20)
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.batch, args.warmup, args.repeats, args.inner)))
        return 0
    results = []
    for mode in ("generic", "fused"):
        env = dict(os.environ, BPCORE_KERNELS=mode, BPCORE_DEVICE="cpu")
        command = [
            sys.executable,
            __file__,
            "--child",
            "--batch",
            str(args.batch),
            "--warmup",
            str(args.warmup),
            "--repeats",
            str(args.repeats),
            "--inner",
            str(args.inner),
        ]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    generic, fused = results
    print(f"{'measurement':<20} {'generic ms':>12} {'fused ms':>12} {'speed-up':>9}")
    for key in ("training step", "adam step", "relu backward", "bias+relu forward"):
        g, f = generic[key]["median_ms"], fused[key]["median_ms"]
        print(f"{key:<20} {g:>12.4f} {f:>12.4f} {g / f:>8.2f}x")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"generic": generic, "fused": fused}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
