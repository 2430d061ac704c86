"""A description of the machine and software a benchmark ran on."""

from __future__ import annotations

import importlib
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np


def cpu_model() -> str:
    """The CPU's model name, where the operating system tells it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _version(module: str) -> str | None:
    try:
        return str(importlib.import_module(module).__version__)
    except Exception:
        return None


def blas() -> list[dict[str, Any]]:
    """The BLAS and OpenMP libraries loaded in this process and their thread counts."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [
        {k: info.get(k) for k in ("internal_api", "version", "num_threads", "threading_layer")}
        for info in threadpool_info()
    ]


def source_commit() -> str | None:
    """The git commit of the bpcore source in use, with ``+dirty`` for local changes, if known."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if dirty else commit


def gpu_names(devices: list[str]) -> dict[str, str]:
    names: dict[str, str] = {}
    for device in devices:
        if not device.startswith("cuda"):
            continue
        import cupy

        properties = cupy.cuda.runtime.getDeviceProperties(int(device.split(":")[1]))
        name = properties["name"]
        names[device] = name.decode() if isinstance(name, bytes) else str(name)
    return names


def busy_cpu_seconds() -> float | None:
    """CPU seconds all processes of the machine have spent so far (Linux), or None where unknown."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    if fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
    return (user + nice + system + irq + softirq) / ticks


class OtherLoad:
    """How much CPU time other processes took while a benchmark ran: a measure of how disturbed it was."""

    def __init__(self) -> None:
        self._busy = busy_cpu_seconds()
        self._own = self._own_seconds()
        self._wall = time.perf_counter()

    @staticmethod
    def _own_seconds() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def result(self) -> dict[str, float | None]:
        wall = time.perf_counter() - self._wall
        busy = busy_cpu_seconds()
        other = None
        if busy is not None and self._busy is not None:
            other = max(0.0, (busy - self._busy) - (self._own_seconds() - self._own))
        return {"wall_seconds": wall, "other_processes_cpu_seconds": other}


def describe_machine(devices: list[str], baselines: list[str]) -> dict[str, Any]:
    from .. import __version__

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "bpcore": __version__,
        "commit": source_commit(),
        "numpy": np.__version__,
        "numba": _version("numba"),
        "gpus": gpu_names(devices),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if any(name.startswith("torch") for name in baselines):
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    if "sklearn" in baselines:
        info["sklearn"] = _version("sklearn")
    info["blas"] = blas()
    return info
