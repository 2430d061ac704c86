"""examples/pipeline.py runs as a user runs it: tune, save, reload on the CPU, identical predictions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bpcore

pytest.importorskip("sklearn", reason="scikit-learn is an optional extra")

ROOT = Path(__file__).resolve().parent.parent


def test_pipeline_example_serves_the_tuned_model_on_the_cpu(tmp_path):
    environment = dict(os.environ, BPCORE_DEVICE="cpu")
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")]))
    model = tmp_path / "model.bpcore"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "pipeline.py"), "--output", str(model)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "identical to the pipeline's predictions: True" in result.stdout
    accuracy = float(result.stdout.split("test accuracy ")[1].split(";")[0])
    assert accuracy > 0.9
    checkpoint = bpcore.load_checkpoint(model, device="cpu")
    assert checkpoint.network.in_features == 30 and list(checkpoint.extra["classes"]) == [0, 1]
    assert checkpoint.extra["scaler_mean"].shape == (30,) and np.all(checkpoint.extra["scaler_scale"] > 0)
