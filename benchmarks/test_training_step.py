"""A full training step (forward, cross-entropy, backward, Adam) of three MLPs, on every device.

bpcore (fused and generic kernels), the step's matrix products alone (its
floor), and the baselines that are installed: tutorial-style NumPy,
PyTorch with fused and default Adam, scikit-learn's MLPClassifier.  One
benchmark group per device, model and batch size.

The timed call is one pass over the synthetic data set (its N batches, N in
the group name; at least 4 batches and 8192 rows), index slicing one batch
after another, like an epoch: scikit-learn's ``partial_fit`` then trains on
all N batches in one call, as its ``fit`` would.  ``extra_info`` holds
ms per step, samples/s and GFLOP/s.  Ratios between libraries are best read
from ``bpcore bench``, which runs each library in its own process.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import estimate, iterations_for, run_timed, synchronizer

from bpcore.bench import baselines
from bpcore.bench.models import get_model, synthetic_data
from bpcore.bench.worker import build_member

CASES = [
    pytest.param("tiny", 32, id="tiny-b32"),
    pytest.param("mnist", 64, id="mnist-b64"),
    pytest.param("mnist", 128, id="mnist-b128"),
    pytest.param("mnist", 1024, id="mnist-b1024"),
    pytest.param("wide", 1024, id="wide-b1024", marks=pytest.mark.slow),
]
IMPLEMENTATIONS = ["bpcore", "bpcore-generic", "matmuls", *baselines.BASELINES]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize(("model", "batch"), CASES)
def test_training_step(benchmark: Any, device: str, model: str, batch: int, implementation: str) -> None:
    reason = baselines.availability().get(implementation)
    if reason is not None:
        pytest.skip(reason)
    if implementation in baselines.BASELINES and not baselines.runs_on(implementation, device):
        pytest.skip(f"{implementation} runs on the CPU only")
    spec = get_model(model)
    data = synthetic_data(spec, batch, "float32")
    contender = build_member(implementation, spec, data, device, "float32")
    synchronize = synchronizer(device)
    steps = data.batches

    def one_pass() -> None:
        contender.run(steps)

    seconds = estimate(one_pass, synchronize)
    benchmark.group = f"step {device} {model} batch {batch} (time per pass of {steps} steps)"
    run_timed(benchmark, one_pass, synchronize, rounds=3 if seconds > 1 else 10,
              iterations=iterations_for(seconds), warmup_rounds=1)
    per_step = benchmark.stats.stats.median / steps
    benchmark.extra_info.update(
        implementation=contender.label, dtype=contender.dtype, sizes=list(spec.sizes), batch=batch,
        steps_per_pass=steps, ms_per_step=per_step * 1e3, samples_per_s=batch / per_step,
        gflops=spec.flops_per_step(batch) / per_step / 1e9,
    )
