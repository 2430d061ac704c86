"""Training-step time of the two benchmark CNNs against PyTorch eager, with their GEMM floor.

By default a thin wrapper around ``bpcore bench --models cnn`` (LeNet-shaped
on 28x28 and digits-shaped on 8x8, batch 64 and 128, Adam, float32, PyTorch
with ``Adam(fused=True)``); any other ``bpcore bench`` option may follow:

    python benchmarks/cnn_step.py [--repeats 15] [--batch-sizes 64,128] [--json cnn.json]

On a machine that other jobs load, wall-clock times of separate processes
mean little.  ``--cpu-time [SAMPLES]`` then measures the same three steps
(bpcore, its matrix products alone, PyTorch) side by side in ONE process,
interleaved, each on one thread (OpenBLAS, Numba and PyTorch), as the process's CPU
time, and prints the medians and the range of the per-sample ratios:

    python benchmarks/cnn_step.py --cpu-time 9
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time


def cpu_time_comparison(samples: int) -> None:
    import torch

    from bpcore.bench.baselines import torch_step
    from bpcore.bench.contenders import bpcore_step, matmuls_only
    from bpcore.bench.models import MODEL_GROUPS, MODELS, synthetic_data

    torch.set_num_threads(1)
    for name in MODEL_GROUPS["cnn"]:
        spec = MODELS[name]
        for batch in spec.batch_sizes:
            data = synthetic_data(spec, batch, "float32")
            steps = {
                "bpcore": bpcore_step(spec, data, "cpu", "float32").run,
                "gemm": matmuls_only(spec, data, "cpu", "float32").run,
                "torch": torch_step(spec, data, "cpu", "float32", fused=True).run,
            }
            for run in steps.values():
                run(3)  # warm-up: compilation, allocation
            times: dict[str, list[float]] = {key: [] for key in steps}
            for _ in range(samples):
                for key, run in steps.items():
                    started = time.process_time()
                    run(2)
                    times[key].append((time.process_time() - started) / 2)
            median = {key: statistics.median(values) * 1e3 for key, values in times.items()}
            paired = sorted(t / b for t, b in zip(times["torch"], times["bpcore"], strict=True))
            print(f"{name} batch {batch}: bpcore {median['bpcore']:.2f} ms, GEMMs {median['gemm']:.2f} ms, "
                  f"PyTorch {median['torch']:.2f} ms; x PyTorch {median['torch'] / median['bpcore']:.2f} "
                  f"({paired[0]:.2f}-{paired[-1]:.2f}), x GEMM time {median['bpcore'] / median['gemm']:.2f}",
                  flush=True)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--cpu-time"]:
        samples = int(argv[1]) if len(argv) > 1 else 9
        if os.environ.get("OPENBLAS_NUM_THREADS") != "1":  # must be set before NumPy loads OpenBLAS
            env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
            return subprocess.call([sys.executable, __file__, "--cpu-time", str(samples)], env=env)
        cpu_time_comparison(samples)
        return 0
    from bpcore.bench.cli import main as bench

    return bench(["bench", "--models", "cnn", "--baselines", "torch-adam-fused", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
