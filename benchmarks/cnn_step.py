"""Training-step time of the two benchmark CNNs against PyTorch eager, with their GEMM floor.

A thin wrapper around ``bpcore bench --models cnn`` (LeNet-shaped on 28x28
and digits-shaped on 8x8, batch 64 and 128, Adam, float32, PyTorch with
``Adam(fused=True)``); any other ``bpcore bench`` option may follow:

    python benchmarks/cnn_step.py [--repeats 15] [--batch-sizes 64,128] [--json cnn.json]
"""

from __future__ import annotations

import sys

from bpcore.bench.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--models", "cnn", "--baselines", "torch-adam-fused", *sys.argv[1:]]))
