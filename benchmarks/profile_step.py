"""Where does the time of one training step go?  A per-phase breakdown of bpcore's step.

Runs the step of ``Network.fit`` (forward, cross-entropy, backward, Adam) on
the CPU with every phase wrapped by a timer, so that the phases are measured
in place, inside the real step, with their real inputs:

* per Dense layer: forward (the matrix product plus call overhead) and its
  fused bias + activation; backward: the activation's derivative, and the
  rest (weight-gradient product, bias sum, input-gradient product);
* the loss forward and backward; the optimiser step.

The wrappers add well under a microsecond per phase.  Each phase's time is the
median over many steps after a warm-up; ``step`` is the median of whole steps
timed without wrappers.  For reference the step's matrix products are also
timed alone at the same shapes, and PyTorch's fused Adam over the same number
of parameters where PyTorch is installed.

    python benchmarks/profile_step.py [--model mnist] [--batch 128] [--steps 300] [--kernels fused]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

try:
    import bpcore  # noqa: F401
except ImportError:  # run from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np


def _wrap(owner: Any, attribute: str, label: str, times: dict[str, list[float]]) -> None:
    original = getattr(owner, attribute)

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = original(*args, **kwargs)
        times[label].append(time.perf_counter() - started)
        return result

    setattr(owner, attribute, timed)


def profile(model: str, batch: int, steps: int, kernels: str) -> list[tuple[str, float]]:
    from bpcore.bench.contenders import BatchCycle, kernel_mode
    from bpcore.bench.models import get_model, synthetic_data
    from bpcore.layers import Dense
    from bpcore.losses import CrossEntropy
    from bpcore.network import Network
    from bpcore.optim import Adam

    spec = get_model(model)
    data = synthetic_data(spec, batch, "float32")
    with kernel_mode(kernels):
        network = Network(spec.layers(), dtype="float32", seed=0)
    criterion = CrossEntropy()
    optimizer = Adam(network.parameters(), lr=1e-3)
    batches = BatchCycle(data.x, data.labels, batch)
    loss = functools.partial(criterion, check=False)

    def step() -> None:
        xb, yb = batches.next()
        out = network._forward(xb, True)
        loss(out, yb)
        network._backward(criterion.backward(), accumulate=False, need_input_grad=False)
        optimizer.step()

    with np.errstate(all="ignore"):
        for _ in range(max(2, min(20, steps // 5))):
            step()
        whole = []
        for _ in range(steps):
            started = time.perf_counter()
            step()
            whole.append(time.perf_counter() - started)

        times: dict[str, list[float]] = defaultdict(list)
        dense = [layer for layer in network._plan if isinstance(layer, Dense)]
        for index, layer in enumerate(dense):
            shape = f"{layer.in_features}x{layer.out_features}"
            _wrap(layer, "forward", f"L{index} {shape} forward: matmul", times)
            _wrap(layer, "backward", f"L{index} {shape} backward: matmuls + bias sum", times)
            if layer.activation is not None:
                kind = layer.activation.kind
                _wrap(layer.activation, "bias_forward", f"L{index} {shape} forward: bias+{kind}", times)
                _wrap(layer.activation, "backward", f"L{index} {shape} backward: {kind} derivative", times)
        holder = type("Holder", (), {})()
        holder.loss = functools.partial(criterion, check=False)
        _wrap(holder, "loss", "loss forward (softmax cross-entropy)", times)
        loss = holder.loss
        _wrap(criterion, "backward", "loss backward", times)
        _wrap(optimizer, "step", f"optimiser: Adam over {network.store.size:,} parameters", times)
        for _ in range(steps):
            step()
    # Outer wrappers include the inner ones: subtract nested phases.
    medians = {label: statistics.median(values) for label, values in times.items()}
    for index, layer in enumerate(dense):
        shape = f"{layer.in_features}x{layer.out_features}"
        if layer.activation is not None:
            kind = layer.activation.kind
            medians[f"L{index} {shape} forward: matmul"] -= medians[f"L{index} {shape} forward: bias+{kind}"]
            medians[f"L{index} {shape} backward: matmuls + bias sum"] -= (
                medians[f"L{index} {shape} backward: {kind} derivative"])
    rows = sorted(medians.items(), key=lambda item: item[0])
    phases = sum(value for _, value in rows)
    rows.append(("sum of the phases", phases))
    rows.append(("whole step (no wrappers)", statistics.median(whole)))
    return rows


def matmuls_alone(model: str, batch: int, steps: int) -> list[tuple[str, float]]:
    from bpcore.bench.models import get_model

    spec = get_model(model)
    rng = np.random.default_rng(0)
    rows = []
    for index, (fan_in, fan_out) in enumerate(spec.shapes):
        x = rng.standard_normal((batch, fan_in), dtype=np.float32)
        w = rng.standard_normal((fan_in, fan_out), dtype=np.float32)
        g = rng.standard_normal((batch, fan_out), dtype=np.float32)
        z = np.empty((batch, fan_out), np.float32)
        gw = np.empty_like(w)
        gx = np.empty_like(x)
        gb = np.empty(fan_out, np.float32)
        cases = [("x @ W", lambda x=x, w=w, z=z: np.matmul(x, w, out=z)),
                 ("x.T @ g", lambda x=x, g=g, gw=gw: np.matmul(x.T, g, out=gw)),
                 ("g.sum(0)", lambda g=g, gb=gb: g.sum(axis=0, out=gb))]
        if index > 0:
            cases.append(("g @ W.T", lambda g=g, w=w, gx=gx: np.matmul(g, w.T, out=gx)))
        for name, call in cases:
            for _ in range(10):
                call()
            samples = []
            for _ in range(steps):
                started = time.perf_counter()
                call()
                samples.append(time.perf_counter() - started)
            rows.append((f"alone: L{index} {fan_in}x{fan_out} {name}", statistics.median(samples)))
    return rows


def torch_adam(parameters: int, steps: int) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    p = torch.nn.Parameter(torch.randn(parameters))
    p.grad = torch.randn(parameters)
    optimizer = torch.optim.Adam([p], lr=1e-3, fused=True)
    for _ in range(10):
        optimizer.step()
    samples = []
    for _ in range(steps):
        started = time.perf_counter()
        optimizer.step()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--kernels", choices=("fused", "generic"), default="fused")
    args = parser.parse_args()
    rows = profile(args.model, args.batch, args.steps, args.kernels)
    step = rows[-1][1]
    print(f"{args.model} batch {args.batch}, float32, {args.kernels} kernels: median µs per step")
    for label, seconds in rows:
        print(f"  {label:<58} {seconds * 1e6:9.1f} µs {100 * seconds / step:6.1f} %")
    for label, seconds in matmuls_alone(args.model, args.batch, args.steps):
        print(f"  {label:<58} {seconds * 1e6:9.1f} µs")
    from bpcore.bench.models import get_model

    reference = torch_adam(get_model(args.model).parameter_count, args.steps)
    if reference is not None:
        print(f"  {'reference: torch Adam(fused=True), same parameter count':<58} {reference * 1e6:9.1f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
