"""Where a data-parallel step's time goes: all-reduce of the gradient buffer, compute, optimiser.

    mpiexec -n 1 python benchmarks/distributed_step.py --global-batch 256
    mpiexec -n 2 python benchmarks/distributed_step.py --global-batch 256

The MNIST-shaped MLP (784-256-128-10, 235,146 float32 parameters), Adam, on
the CPU.  Each rank trains its share of the global batch; the step is timed
in three parts (forward + loss + backward, the one all-reduce of the flat
gradient buffer, the optimiser step), each the median over ``--steps``
steps after a warm-up, with a barrier before every step so that the ranks
start together.  The all-reduce alone is also timed on its own, repeated.
Rank 0 prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import bpcore
from bpcore import distributed
from bpcore.layers import Dense, ReLU
from bpcore.losses import CrossEntropy
from bpcore.optim import Adam


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--global-batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()

    ctx = distributed.init()
    comm = ctx.comm
    network = bpcore.Network([Dense(784, 256), ReLU(), Dense(256, 128), ReLU(), Dense(128, 10)], seed=0)
    distributed.broadcast_parameters(network)
    optimizer, loss = Adam(network.parameters(), lr=1e-3), CrossEntropy()
    share = args.global_batch // ctx.world_size
    rng = np.random.default_rng(ctx.rank)
    x = rng.normal(size=(share, 784)).astype(np.float32)
    y = rng.integers(0, 10, size=share)

    grad = network.store.grad
    collectives = ctx.collectives_for(network.backend)
    alone = []
    for repeat in range(220):
        comm.Barrier()
        started = time.perf_counter()
        collectives.all_reduce_sum(grad, network.backend)
        if repeat >= 20:
            alone.append(time.perf_counter() - started)

    parts: dict[str, list[float]] = {"compute": [], "all_reduce": [], "optimizer": [], "step": []}
    for step in range(args.steps + 10):
        comm.Barrier()
        t0 = time.perf_counter()
        loss(network.forward(x, training=True), y)
        network.zero_grad()
        network.backward(loss.backward())
        t1 = time.perf_counter()
        distributed.all_reduce_gradients(network)
        t2 = time.perf_counter()
        optimizer.step()
        t3 = time.perf_counter()
        if step >= 10:
            for key, value in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
                parts[key].append(value)
    steps = comm.gather(parts["step"], root=0)
    if ctx.rank == 0:
        slowest = np.max(np.array(steps), axis=0)  # a step ends when its slowest rank ends
        median = {key: float(np.median(values)) * 1e3 for key, values in parts.items()}
        print(json.dumps({
            "ranks": ctx.world_size, "global_batch": args.global_batch, "share": share,
            "parameters": int(network.store.size),
            "all_reduce_alone_ms": float(np.median(alone)) * 1e3,
            "all_reduce_alone_p90_ms": float(np.percentile(alone, 90)) * 1e3,
            "rank0_ms": median, "step_ms_slowest_rank": float(np.median(slowest)) * 1e3,
            "samples_per_s": args.global_batch / float(np.median(slowest)),
        }))


if __name__ == "__main__":
    main()
