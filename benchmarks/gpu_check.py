"""One-shot GPU verification of the fused kernels; writes its results under benchmarks/results/.

Run on a machine with a CUDA GPU (and CuPy installed):

    python benchmarks/gpu_check.py

It does, in order, and records each outcome (pass/fail and output) with the
device name, date and git commit in ``benchmarks/results/gpu_check-<date>.md``:

1. ``pytest -m gpu``: every fused CuPy kernel against the NumPy path on the
   same inputs (tests/test_gpu.py) and the other GPU tests;
2. the digits example on ``cpu`` and on ``cuda`` with the same seed (the test
   accuracies should agree within a small tolerance);
3. kernel launches of one training step of the MNIST-shaped MLP
   (784-256-128-10, batch 128, Adam, float32), fused against generic, counted
   with Nsight Systems (``nsys``) when it is installed;
4. the step time of that MLP on the GPU, fused against generic (median of
   repeats after warm-up, with device synchronisation).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(command: list[str], env: dict[str, str] | None = None, timeout: int = 1800) -> tuple[int, str]:
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def mlp_steps(kernels: str, steps: int) -> None:
    """Run ``steps`` training steps of the MNIST-shaped MLP on cuda:0 (child process)."""
    import numpy as np

    import bpcore
    from bpcore.backends import get_backend
    from bpcore.layers import Dense, ReLU
    from bpcore.losses import CrossEntropy
    from bpcore.optim import Adam

    backend = get_backend("cuda:0", kernels=kernels)
    rng = np.random.default_rng(0)
    x = backend.asarray(rng.normal(size=(128, 784)).astype(np.float32))
    y = backend.asarray(rng.integers(0, 10, size=128))
    network = bpcore.Network(
        [Dense(784, 256), ReLU(), Dense(256, 128), ReLU(), Dense(128, 10)], seed=0, device="cuda:0"
    )
    optimizer = Adam(network.parameters(), lr=1e-3)
    loss = CrossEntropy()

    def step() -> None:
        optimizer.zero_grad()
        loss(network.forward(x, training=True), y, check=False)
        network.backward(loss.backward())
        optimizer.step()

    for _ in range(20):  # warm-up: kernel compilation and memory pool
        step()
    backend.synchronize()
    samples = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        backend.synchronize()
        samples.append(time.perf_counter() - start)
    print(json.dumps({"kernels": kernels, "median_ms": statistics.median(samples) * 1e3}))


def count_launches(kernels: str) -> str:
    """Kernel launches per training step, from an nsys trace of 100 steps."""
    nsys = shutil.which("nsys")
    if nsys is None:
        return "not measured: Nsight Systems (nsys) is not installed"
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "trace"
        code, output = _run(
            [
                nsys,
                "profile",
                "--trace=cuda",
                "-o",
                str(report),
                sys.executable,
                __file__,
                "--child",
                kernels,
                "--steps",
                "100",
            ],
            env=_env(),
        )
        if code != 0:
            return f"nsys failed:\n{output[-2000:]}"
        code, output = _run(
            [nsys, "stats", "--report", "cuda_gpu_kern_sum", "--format", "csv", str(report) + ".nsys-rep"]
        )
        if code != 0:
            return f"nsys stats failed:\n{output[-2000:]}"
    total = 0
    for line in output.splitlines():
        parts = line.split(",")
        if len(parts) > 3 and parts[2].strip('"').isdigit():
            total += int(parts[2].strip('"'))  # the "Instances" column
    # 120 steps were traced (20 warm-up + 100 timed).
    return f"{total / 120:.1f} kernel launches per step (all launches in the trace / 120 steps)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=("fused", "generic"), help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args(argv)
    if args.child:
        mlp_steps(args.child, args.steps)
        return 0

    import cupy

    device = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    commit = _run(["git", "rev-parse", "HEAD"])[1].strip()
    now = datetime.datetime.now(datetime.timezone.utc)
    sections = [f"# GPU check\n\n- device: {device}\n- date: {now:%Y-%m-%d %H:%M} UTC\n- commit: {commit}\n"]
    failed = False

    code, output = _run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs"], env=_env())
    failed |= code != 0
    sections.append(f"## pytest -m gpu: {'PASS' if code == 0 else 'FAIL'}\n\n```\n{output[-6000:]}\n```\n")

    lines = []
    for device_name in ("cpu", "cuda"):
        code, output = _run(
            [sys.executable, "examples/digits.py", "--device", device_name, "--seed", "0"], env=_env()
        )
        failed |= code != 0
        lines.append(
            f"### digits on {device_name}: {'PASS' if code == 0 else 'FAIL'}\n\n```\n{output}\n```\n"
        )
    sections.append("## Digits on both devices (same seed)\n\n" + "\n".join(lines))

    rows = []
    for kernels in ("generic", "fused"):
        code, output = _run(
            [sys.executable, __file__, "--child", kernels, "--steps", str(args.steps)], env=_env()
        )
        step = json.loads(output.strip().splitlines()[-1])["median_ms"] if code == 0 else float("nan")
        failed |= code != 0
        rows.append(f"| {kernels} | {step:.3f} | {count_launches(kernels)} |")
    sections.append(
        "## MNIST-shaped MLP step (784-256-128-10, batch 128, Adam, float32)\n\n"
        "Median of the timed steps after 20 warm-up steps, synchronised.\n\n"
        "| kernels | step ms | launches |\n|---|---|---|\n" + "\n".join(rows) + "\n"
    )

    out_dir = ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"gpu_check-{now:%Y%m%d-%H%M}.md"
    target.write_text("\n".join(sections), encoding="utf-8")
    print(f"wrote {target.relative_to(ROOT)}; {'some checks FAILED' if failed else 'all checks passed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
