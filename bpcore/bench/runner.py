"""Runs the benchmark matrix: every device, model and batch size, with baselines and ceilings."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .. import checks
from ..backends import available_devices, resolve_device
from ..validation import check_dtype
from . import baselines
from .contenders import LEARNING_RATE
from .machine import OtherLoad, describe_machine
from .models import STANDARD_MODELS, expand_models, get_model
from .timing import Budget

logger = logging.getLogger("bpcore")

SCHEMA = "bpcore-bench/1"
Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """What to measure.  ``None`` means the standard choice (see each field)."""

    models: tuple[str, ...] = STANDARD_MODELS  # the MLPs; groups such as "cnn" stand for their models
    batch_sizes: tuple[int, ...] | None = None  # None: each model's own batch sizes
    devices: tuple[str, ...] | None = None  # None: every usable device
    dtype: str = "float32"
    kernels: tuple[str, ...] = ("fused",)
    baselines: tuple[str, ...] | None = None  # None: every installed baseline
    budget: Budget = dataclasses.field(default_factory=Budget)

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("models: expected at least one model name, got none")
        object.__setattr__(self, "models", expand_models(tuple(self.models)))
        for name in self.models:
            get_model(name)
        if self.batch_sizes is not None:
            if not self.batch_sizes:
                raise ValueError("batch_sizes: expected at least one batch size, got none")
            for size in self.batch_sizes:
                checks.positive_int(size, "batch_sizes")
        check_dtype(self.dtype)
        for mode in self.kernels:
            if mode not in ("fused", "generic"):
                raise ValueError(f"kernels: expected 'fused' and/or 'generic', got {mode!r}")
        if not self.kernels:
            raise ValueError("kernels: expected 'fused' and/or 'generic', got none")
        for name in self.baselines or ():
            if name not in baselines.BASELINES:
                raise ValueError(f"baselines: expected names from {list(baselines.BASELINES)}, got {name!r}")

    def resolved_devices(self) -> list[str]:
        if self.devices is None:
            return available_devices()
        if not self.devices:
            raise ValueError("devices: expected at least one device name, got none")
        return [str(resolve_device(name, origin="devices")) for name in self.devices]


FAMILIES: dict[str, tuple[str, ...]] = {
    "bpcore": ("bpcore", "bpcore-generic", "matmuls"),
    "numpy-naive": ("numpy-naive",),
    "torch": ("torch-adam-fused", "torch-adam-default"),
    "sklearn": ("sklearn",),
}


def run_benchmark(config: BenchConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Measure everything ``config`` asks for; returns the report (JSON-compatible).

    Each family of contenders runs in its own process, one after another
    (see :mod:`bpcore.bench.worker`); bpcore's family also measures the
    devices' ceilings.
    """
    say = progress or (lambda message: logger.info("%s", message))
    other_load = OtherLoad()
    devices = config.resolved_devices()
    dtype = str(check_dtype(config.dtype))
    installed = baselines.availability()
    skipped: list[dict[str, str]] = []
    requested = baselines.BASELINES if config.baselines is None else config.baselines
    for name in requested:
        if installed[name] is not None:
            skipped.append({"implementation": name, "device": "*", "reason": str(installed[name])})
            say(f"skipping baseline {name}: {installed[name]}")
    bpcore_members = [("bpcore" if mode == "fused" else f"bpcore-{mode}") for mode in config.kernels]
    bpcore_members.append("matmuls")
    cases: list[tuple[str, int, list[str]]] = []
    for model in config.models:
        spec = get_model(model)
        wanted = spec.default_baselines if config.baselines is None else config.baselines
        members = bpcore_members + [b for b in wanted if installed[b] is None]
        cases += [(model, batch, members) for batch in (config.batch_sizes or spec.batch_sizes)]
    used = sorted({m for _, _, members in cases for m in members})
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": describe_machine(devices, [m for m in used if m in baselines.BASELINES]),
        "settings": {
            "dtype": dtype,
            "optimizer": f"Adam(lr={LEARNING_RATE})",
            "loss": "softmax cross-entropy",
            "kernels": list(config.kernels),
            "budget": dataclasses.asdict(config.budget),
            "flops": "3 * 2 * batch * sum(in * out) per step (forward products, then twice that backward)",
            "method": "warm-up, then the median of repeated samples; each family of implementations in its "
                      "own process; samples of one family interleaved; CUDA events on a GPU",
        },
        "devices": [],
        "results": [],
        "skipped": skipped,
    }
    for family, family_members in FAMILIES.items():
        jobs = [(model, batch, [m for m in members if m in family_members])
                for model, batch, members in cases]
        jobs = [job for job in jobs if job[2]]
        if not jobs:
            continue
        say(f"{family}: {len(jobs)} model/batch cases on {', '.join(devices)}")
        job = {
            "family": family, "devices": devices, "dtype": dtype, "cases": jobs,
            "budget": dataclasses.asdict(config.budget), "ceilings": family == "bpcore",
            "cpu_only": list(baselines.CPU_ONLY),
        }
        for message in _run_worker(job):
            if "progress" in message:
                say(message["progress"])
            elif "ceilings" in message:
                report["devices"].append(message["ceilings"])
            elif "row" in message:
                report["results"].append(message["row"])
            elif "skipped" in message:
                skipped.append(message["skipped"])
                say(f"skipping {message['skipped']['implementation']} on {message['skipped']['device']}: "
                    f"{message['skipped']['reason']}")
    _derive(report)
    report["machine"]["during_run"] = other_load.result()
    return report


def _run_worker(job: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Run one job in a fresh Python process and yield its messages."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root, env["PYTHONPATH"]]) if env.get("PYTHONPATH") else root
    process = subprocess.Popen(
        [sys.executable, "-m", "bpcore.bench.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, env=env,
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(json.dumps(job))
    process.stdin.close()
    finished = False
    try:
        for line in process.stdout:
            message = json.loads(line)
            if "error" in message:
                raise RuntimeError(f"benchmark of {job['family']} failed:\n{message['error']}")
            if message.get("done"):
                finished = True
                continue
            yield message
    finally:
        process.stdout.close()
        status = process.wait()
    if not finished:
        raise RuntimeError(f"benchmark of {job['family']} ended without an answer (exit status {status})")


def _derive(report: dict[str, Any]) -> None:
    """Samples/s, GFLOP/s and % of the GEMM rate of every row, then bpcore's ratios."""
    gemm = {d["device"]: d["gemm_gflops"] for d in report["devices"]}
    for row in report["results"]:
        spec = get_model(row["model"])
        seconds = row["ms_per_step"] / 1e3
        row["samples_per_s"] = row["batch"] / seconds
        row["flops_per_step"] = spec.flops_per_step(row["batch"])
        row["gflops"] = row["flops_per_step"] / seconds / 1e9
        row["pct_gemm"] = 100.0 * row["gflops"] / gemm[row["device"]] if row["device"] in gemm else None
    _add_comparisons(report["results"])


def _add_comparisons(rows: Sequence[dict[str, Any]]) -> None:
    """Give every bpcore row its ratios: to each baseline, and its time over its matrix products alone.

    A ratio is bpcore's samples per second over the baseline's, measured at the
    same model and batch size on the same device; CPU-only baselines are
    compared with every device.
    """
    for row in rows:
        if row["role"] != "bpcore":
            continue
        ratios: dict[str, float] = {}
        for other in rows:
            same_case = (other["model"], other["batch"]) == (row["model"], row["batch"])
            if other["role"] != "baseline" or not same_case:
                continue
            same_device = other["device"] == row["device"]
            if same_device or (other["implementation"] in baselines.CPU_ONLY and other["device"] == "cpu"):
                ratios[other["implementation"]] = row["samples_per_s"] / other["samples_per_s"]
        row["ratios"] = ratios
        floor = next((o for o in rows if o["role"] == "ceiling" and o["device"] == row["device"]
                      and (o["model"], o["batch"]) == (row["model"], row["batch"])), None)
        row["over_matmuls"] = row["ms_per_step"] / floor["ms_per_step"] if floor else None
