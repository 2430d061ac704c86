"""Handwritten digits on several processes: data-parallel training over MPI, same result as one process.

    mpiexec -n 2 python examples/distributed_digits.py [--epochs 30] [--seed 0] [--compare]

Every rank loads the same data; ``fit(..., distributed=True)`` gives each
rank its share of every batch of 32, averages the gradients over the ranks
with one all-reduce per step and reports from rank 0.  On GPUs, start one rank
per GPU with ``BPCORE_DEVICE=cuda``: rank r then trains on ``cuda:<local rank>``
and the gradients go through NCCL.  ``--compare`` also trains the same network
in rank 0 alone, as one process would, and checks that both reach the same test
accuracy.  Exits with status 1 below 97 % test accuracy (or when they differ).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import bpcore
from bpcore import distributed
from bpcore.cli import run_script
from bpcore.layers import Dense, ReLU
from bpcore.losses import CrossEntropy
from bpcore.optim import Adam

TARGET_ACCURACY = 0.97


def train(x: np.ndarray, y: np.ndarray, args: argparse.Namespace, *, on_all_ranks: bool) -> tuple[Any, float]:
    network = bpcore.Network([Dense(64, 128), ReLU(), Dense(128, 10)], seed=args.seed)
    started = time.perf_counter()
    network.fit(
        x, y, loss=CrossEntropy(), optimizer=Adam(network.parameters(), lr=args.lr), epochs=args.epochs,
        batch_size=args.batch_size, metrics=["accuracy"], seed=args.seed, distributed=on_all_ranks,
    )
    return network, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32, help="the global batch, shared by the ranks")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the batch order")
    parser.add_argument("--compare", action="store_true", help="also train in one process and compare")
    parser.add_argument("--target", type=float, default=TARGET_ACCURACY, help="the test accuracy to reach")
    args = parser.parse_args(argv)

    context = distributed.init()  # rank, world size, this rank's device
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data.astype(np.float32), digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std[std == 0] = 1.0
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std

    network, seconds = train(x_train, y_train, args, on_all_ranks=True)
    if context.rank != 0:
        return 0
    loss = CrossEntropy()
    test = network.evaluate(x_test, y_test, loss=loss, metrics=["accuracy"])
    print(f"{context.world_size} rank(s) on {context.device}: {args.epochs} epochs, global batch "
          f"{args.batch_size}, in {seconds:.2f}s; test accuracy {test['accuracy']:.4f}")
    failed = test["accuracy"] < args.target
    if args.compare:
        alone, seconds = train(x_train, y_train, args, on_all_ranks=False)
        single = alone.evaluate(x_test, y_test, loss=loss, metrics=["accuracy"])
        gap = float(np.abs(alone.store.data - network.store.data).max())
        print(f"1 process: {seconds:.2f}s; test accuracy {single['accuracy']:.4f}; "
              f"largest parameter difference {gap:.2e} (float32 rounding)")
        if abs(single["accuracy"] - test["accuracy"]) > 1.0 / len(y_test):
            print("FAILED: the distributed and the one-process runs differ", file=sys.stderr)
            failed = True
    if test["accuracy"] < args.target:
        print(f"FAILED: test accuracy {test['accuracy']:.4f} is below {args.target:.0%}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    run_script(main)  # a device error (e.g. --device cuda without a GPU): one line, status 2
