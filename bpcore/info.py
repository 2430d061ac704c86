"""``bpcore info``: versions, devices, and which implementation runs each hot operation.

This is the one place where bpcore probes for a GPU on request; importing
bpcore never does.
"""

from __future__ import annotations

import argparse
import importlib
import platform
from typing import Any

import numpy as np


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``info`` on the ``bpcore`` command line."""
    parser = subparsers.add_parser(
        "info",
        help="show versions, devices and the kernel dispatch table",
        description="Show bpcore's version, the devices it can use, whether Numba and CuPy are "
        "installed, and for every hot operation the implementation each backend runs "
        "(numba / cuda: a compiled fused kernel; generic: the reference xp code).",
    )
    parser.set_defaults(handler=run)
    return parser


def _module_version(name: str) -> str:
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        return f"not installed ({exc})"
    return str(getattr(module, "__version__", "installed"))


_MODE_TEXT = {
    "auto": "on the CPU, fit, predict and evaluate run the generic versions when their work is too small "
            "to pay for Numba's start-up; everything else runs the table below",
    "fused": "compiled kernels wherever the table below names one",
    "generic": "the generic versions everywhere",
}


def collect() -> dict[str, Any]:
    """What ``bpcore info`` reports, as plain data."""
    from . import __version__
    from .backends import KERNELS_ENV_VAR, get_backend, kernel_mode_from_env, probe_cuda

    probe = probe_cuda()
    mode = kernel_mode_from_env()
    tables = {"cpu": get_backend("cpu").dispatch_table()}
    if probe.count > 0:
        tables["cuda:0"] = get_backend("cuda:0").dispatch_table()
    return {
        "bpcore": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": _module_version("numba"),
        "cupy": _module_version("cupy"),
        "devices": ["cpu"] + [f"cuda:{i}" for i in range(probe.count)],
        "cuda": probe.reason,
        "kernels": f"{mode} (environment variable {KERNELS_ENV_VAR}; {_MODE_TEXT[mode]})",
        "dispatch": tables,
    }


def format_info(info: dict[str, Any]) -> str:
    """``collect()``'s result as the text ``bpcore info`` prints."""
    lines = [f"{key:<8} {info[key]}" for key in ("bpcore", "python", "numpy", "numba", "cupy")]
    lines.append(f"{'devices':<8} {', '.join(info['devices'])}   (CUDA: {info['cuda']})")
    lines.append(f"{'kernels':<8} {info['kernels']}")
    tables = info["dispatch"]
    names = sorted(next(iter(tables.values())))
    width = max(len(name) for name in names)
    lines += ["", f"{'operation':<{width}}  " + "  ".join(f"{device:<8}" for device in tables)]
    for name in names:
        lines.append(f"{name:<{width}}  " + "  ".join(f"{tables[d][name]:<8}" for d in tables))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Print the report; returns the exit status."""
    print(format_info(collect()))
    return 0
