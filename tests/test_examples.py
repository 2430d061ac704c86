"""The examples run as a user runs them (a fresh process, on the CPU) and reach their targets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run_example(name: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ, BPCORE_DEVICE="cpu")
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *arguments],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120,
    )


def test_xor_learns() -> None:
    result = run_example("xor.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "learned XOR" in result.stdout and "1 XOR 1 = 0" in result.stdout


def test_xor_reports_failure_with_a_nonzero_status() -> None:
    result = run_example("xor.py", "--epochs", "2")
    assert result.returncode == 1 and "did not learn XOR" in result.stderr


def test_regression_reaches_the_noise_floor() -> None:
    result = run_example("regression.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "linear" in result.stdout and "nonlinear" in result.stdout and "TOO HIGH" not in result.stdout


def test_digits_reaches_97_percent() -> None:
    result = run_example("digits.py")
    assert result.returncode == 0, result.stdout + result.stderr
    accuracy = float(result.stdout.split("test:")[1].split("accuracy")[1].split()[0])
    assert accuracy >= 0.97


def test_digits_fails_loudly_below_the_target() -> None:
    result = run_example("digits.py", "--epochs", "1", "--lr", "1e-5")
    assert result.returncode == 1 and "below 97%" in result.stderr


@pytest.mark.slow
def test_cnn_digits_reaches_98_5_percent() -> None:
    result = run_example("cnn_digits.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(N, 32, 4, 4)" in result.stdout  # the summary
    accuracy = float(result.stdout.split("test:")[1].split("accuracy")[1].split()[0])
    assert accuracy >= 0.985


def test_cnn_digits_fails_loudly_below_the_target() -> None:
    result = run_example("cnn_digits.py", "--epochs", "1", "--lr", "1e-5")
    assert result.returncode == 1 and "below 98.5%" in result.stderr


def test_an_unusable_device_is_a_clear_error() -> None:
    result = run_example("xor.py", "--device", "tpu")
    assert result.returncode != 0 and "tpu" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    ["xor.py", "regression.py", "digits.py", "cnn_digits.py", "dqn_cartpole.py", "gan.py", "pipeline.py"],
)
def test_a_device_error_is_one_line_on_stderr_and_status_2(name: str) -> None:
    result = run_example(name, "--device", "cuda:99")  # no machine has 100 GPUs: a DeviceError everywhere
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'cuda:99' was asked for" in lines[0] and "Traceback" not in result.stderr
