"""One family of contenders measured in its own process: ``python -m bpcore.bench.worker``.

Libraries keep thread pools that stay busy for a while after each call
(OpenBLAS, OpenMP, Numba's): timed in one process, PyTorch next to NumPy
measured 1.5-3x slower than alone on a 2-core machine.  Each family (bpcore
with its ceilings, the NumPy tutorial network, PyTorch, scikit-learn)
therefore runs in a process of its own, one family at a time, as it would
in a user's program.

The job arrives as one JSON object on stdin; the answer is JSON lines on
stdout: ``{"progress": text}``, ``{"ceilings": {...}}``, ``{"row": {...}}``,
``{"skipped": {...}}`` and finally ``{"done": true}`` or ``{"error": text}``.
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any

from .timing import Budget, Timed, measure_interleaved


def _send(stream: Any, **message: Any) -> None:
    stream.write(json.dumps(message) + "\n")
    stream.flush()


def build_member(member: str, spec: Any, data: Any, device: str, dtype: str) -> Any:
    """The contender called ``member`` (bpcore, bpcore-generic, matmuls or a baseline)."""
    from . import baselines
    from .contenders import bpcore_step, matmuls_only

    if member == "bpcore":
        return bpcore_step(spec, data, device, dtype, kernels="fused")
    if member == "bpcore-generic":
        return bpcore_step(spec, data, device, dtype, kernels="generic")
    if member == "matmuls":
        return matmuls_only(spec, data, device, dtype)
    return baselines.build(member, spec, data, device, dtype)


def run_job(job: dict[str, Any], out: Any) -> None:
    """Measure ``job`` and report on ``out`` (see the module docstring)."""
    from ..backends import device_scope, get_backend

    budget = Budget(**job["budget"])
    dtype = job["dtype"]
    for device in job["devices"]:
        with device_scope(get_backend(device)):  # cuda:N current for every array call
            _run_device(job, device, budget, dtype, out)


def _run_device(job: dict[str, Any], device: str, budget: Budget, dtype: str, out: Any) -> None:
    """Ceilings (if asked for) and every case of ``job`` on one device."""
    from ..backends import get_backend
    from .ceilings import measure_ceilings
    from .models import get_model, synthetic_data

    if job.get("ceilings"):
        _send(out, progress=f"{device}: measuring the GEMM rate and copy bandwidth ({dtype})")
        ceilings = measure_ceilings(get_backend(device), dtype, budget)
        _send(out, ceilings={"device": device, **ceilings.as_dict()})
        _send(out, progress=f"{device}: GEMM {ceilings.gemm_gflops:.0f} GFLOP/s, "
              f"copy {ceilings.copy_gbps:.1f} GB/s")
    for model, batch, members in job["cases"]:
        members = [m for m in members if device == "cpu" or m not in job.get("cpu_only", ())]
        if not members:
            continue
        spec = get_model(model)
        data = synthetic_data(spec, batch, dtype)
        contenders = []
        for member in members:
            try:
                contenders.append(build_member(member, spec, data, device, dtype))
            except Exception as exc:  # a baseline that cannot run here is reported, not fatal
                if member.startswith("bpcore") or member == "matmuls":
                    raise
                _send(out, skipped={"implementation": member, "device": device,
                                    "reason": f"{type(exc).__name__}: {exc}"})
        if not contenders:
            continue
        timed = [Timed(c.key, c.run, c.clock, c.min_steps) for c in contenders]
        measured = measure_interleaved(timed, budget)
        for contender in contenders:
            m = measured[contender.key]
            row = {
                "implementation": contender.key, "label": contender.label, "role": contender.role,
                "device": contender.device, "dtype": contender.dtype, "model": model,
                "sizes": list(spec.sizes), "batch": batch, "ms_per_step": m.median * 1e3,
                "ms_min": m.minimum * 1e3, "ms_max": m.maximum * 1e3, "samples": m.samples,
                "steps_per_sample": m.steps_per_sample, "notes": contender.notes,
            }
            _send(out, row=row)
            _send(out, progress=f"  {device} {model} batch {batch}: {contender.key} "
                  f"{row['ms_per_step']:.3f} ms/step")


def main() -> int:
    out = sys.stdout
    sys.stdout = sys.stderr  # anything else printed must not corrupt the answer
    try:
        run_job(json.loads(sys.stdin.read()), out)
    except Exception:
        _send(out, error=traceback.format_exc())
        return 1
    _send(out, done=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
