"""One command that makes a short GPU window count: every GPU check, results written as they come.

    python benchmarks/gpu_check.py --out gpu-check --seconds 480

Sections run one after another, cheapest and most informative first, each in
a child process of its own (a crash, a hang or a CUDA error in one never stops
the next):

1. ``versions``: CuPy, CUDA runtime and driver, NVRTC, every device's name and
   compute capability, ``nvidia-smi`` if present, bpcore's dispatch table;
2. ``bugs``: direct probes of three GPU-only bugs: CuPy input to a network
   (``cupy.ndarray`` has no ``__array_namespace__``), dropout mask statistics
   on the GPU (one random value broadcast over the mask drops all units or
   none), F-ordered input to the softmax cross-entropy and batch-norm fused
   wrappers against the generic versions;
3. ``codegen``: the source CuPy really generates on the GPU for every
   operation must equal what the test suite's no-GPU emulation of CuPy's
   call path generates (and compiles in CI);
4. ``fused-ops``: every fused operation against its generic version on the
   GPU: worst error, first-call time (compilation included), steady time;
4b. ``torch-parity``: ``benchmarks/torch_parity.py`` on the GPU (bpcore on
   CuPy against PyTorch on CUDA, a few random cases of every layer kind,
   loss, optimiser and schedule), where PyTorch is installed;
5. ``mnist-step``: the 784-256-128-10 training step (Adam, float32, batch 128
   and 1024) through the code path ``fit`` runs, fused against generic, timed
   with CUDA events, next to PyTorch eager CUDA when it is installed;
6. ``lenet-step``: the same for the LeNet-shaped CNN of ``bpcore bench
   --models cnn`` at batch 64 and 128 (the convolution and pooling kernels);
7. ``rnn-step``: the character LSTM, GRU and RNN of ``bpcore bench --models
   rnn`` at batch 128 against PyTorch, and bpcore's fused calls per time step;
8. ``launches``: kernel launches per step (Nsight Systems when ``nsys`` is
   installed, otherwise bpcore's own count of fused-operation calls);
9. ``digits``: ``examples/digits.py`` on the GPU must reach 97 % test accuracy;
10. ``pytest-gpu``: ``pytest -m gpu`` in whatever time remains, with a per-test
   timeout; junit XML and the full log go to the output folder.

``--seconds`` is one deadline for the whole run: a section gets at most its own
cap and never more than what remains; a section still running at the
deadline is stopped, and sections that cannot start are reported as not run.
Each section's outcome is appended to ``report.md`` (markdown) and
``results.jsonl`` (one JSON object per result) the moment it ends, and every
child's complete output is kept in ``<section>.log``.  The exit status is 0
only if every section passed; the last line printed says where the report is.
Timing follows benchmarks/results/METHOD.md (bpcore.bench's warm-up, medians
and CUDA event clocks).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import datetime
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "tests"):  # bpcore from this checkout; the kernel cases of the test suite
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

DEFAULT_SECONDS = 480
START_MARGIN = 5.0  # a section that would get less than this is not started
PER_TEST_TIMEOUT = 120


# --- the runner (no GPU needed) ---------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Section:
    """One check, run as a child process.

    ``argv`` may contain ``{result}`` (the JSON file the child writes its
    verdict to), ``{lines}`` (a file it appends one JSON result per line to
    as it goes), ``{out}`` (the output folder) and ``{seconds}`` (the time the
    child is given).  A child that writes no verdict is judged by its exit
    status alone.
    """

    name: str
    title: str
    argv: tuple[str, ...]
    max_seconds: float


@dataclasses.dataclass
class Outcome:
    """What one section gave: ``status`` is passed, failed, timed out or not run."""

    name: str
    title: str
    status: str
    seconds: float
    summary: str
    markdown: str = ""
    results: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    log: str | None = None
    returncode: int | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"


class Report:
    """``report.md`` and ``results.jsonl`` in ``folder``, appended to and flushed to disk per section."""

    def __init__(self, folder: Path, header: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.markdown = folder / "report.md"
        self.jsonl = folder / "results.jsonl"
        self._write(self.markdown, header.rstrip() + "\n", mode="w")
        self._write(self.jsonl, "", mode="w")

    @staticmethod
    def _write(path: Path, text: str, *, mode: str = "a") -> None:
        with open(path, mode, encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    def add(self, index: int, outcome: Outcome) -> None:
        lines = [json.dumps({"section": outcome.name, **result}, default=str) for result in outcome.results]
        verdict = {
            "section": outcome.name,
            "verdict": outcome.status,
            "seconds": round(outcome.seconds, 2),
            "summary": outcome.summary,
            "log": outcome.log,
            "returncode": outcome.returncode,
        }
        lines.append(json.dumps(verdict, default=str))
        self._write(self.jsonl, "".join(line + "\n" for line in lines))
        body = [
            f"\n## {index}. {outcome.title}: {outcome.status.upper()} ({outcome.seconds:.1f} s)\n",
            f"\n{outcome.summary}\n",
        ]
        if outcome.markdown:
            body.append(f"\n{outcome.markdown.rstrip()}\n")
        if outcome.log:
            body.append(f"\nFull output: `{outcome.log}`\n")
        self._write(self.markdown, "".join(body))


def _read_lines(path: Path) -> list[dict[str, Any]]:
    results = []
    if path.exists():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            with contextlib.suppress(json.JSONDecodeError):  # a line cut off by a kill
                results.append(json.loads(line))
    return results


def _tail(path: Path, lines: int = 25) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End the child we started and everything it started (its own process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def run_section(section: Section, folder: Path, seconds: float) -> Outcome:
    """Run one section's child for at most ``seconds``; never raises for the child's sake."""
    result, lines, log = (folder / f"{section.name}{suffix}" for suffix in (".json", ".lines.jsonl", ".log"))
    for stale in (result, lines):
        stale.unlink(missing_ok=True)
    fields = {"result": str(result), "lines": str(lines), "out": str(folder), "seconds": f"{seconds:.0f}"}
    argv = []
    for part in section.argv:  # plain replacement: a -c program may hold braces of its own
        for key, value in fields.items():
            part = part.replace("{" + key + "}", value)
        argv.append(part)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    started = time.monotonic()
    status = None
    with open(log, "wb") as output:
        try:
            process = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
        except OSError as exc:
            return Outcome(section.name, section.title, "failed", 0.0, f"could not start: {exc}")
        try:
            process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            _stop(process)
            status = "timed out"
    elapsed = time.monotonic() - started
    results = _read_lines(lines)
    verdict: dict[str, Any] = {}
    if result.exists():
        with contextlib.suppress(json.JSONDecodeError):
            verdict = json.loads(result.read_text(encoding="utf-8"))
    if status is None:
        passed = process.returncode == 0 and verdict.get("passed", True) is True
        status = "passed" if passed else "failed"
    summary = str(verdict.get("summary") or "")
    if status == "timed out":
        summary = (
            f"stopped after {seconds:.0f} s (the deadline); {len(results)} results were written. {summary}"
        )
    elif not verdict:
        summary = summary or f"exit status {process.returncode}"
    result.unlink(missing_ok=True)  # folded into report.md and results.jsonl
    lines.unlink(missing_ok=True)
    if status != "passed" and not verdict.get("markdown"):
        verdict["markdown"] = f"Last lines of the output:\n\n```\n{_tail(log)}\n```"
    return Outcome(
        section.name,
        section.title,
        status,
        elapsed,
        summary.strip(),
        str(verdict.get("markdown") or ""),
        results,
        log.name,
        process.returncode,
    )


def run_sections(
    sections: Sequence[Section],
    folder: Path,
    seconds: float,
    *,
    header: str = "# GPU check\n",
    echo: Callable[[str], None] = print,
    start_margin: float = START_MARGIN,
) -> list[Outcome]:
    """Run ``sections`` in order under one deadline, writing each outcome as soon as it is known."""
    deadline = time.monotonic() + seconds
    report = Report(folder, header)
    outcomes = []
    for index, section in enumerate(sections, 1):
        remaining = deadline - time.monotonic()
        if remaining < start_margin:
            outcome = Outcome(
                section.name,
                section.title,
                "not run",
                0.0,
                f"not started: the deadline of {seconds:.0f} s was reached",
            )
        else:
            given = min(section.max_seconds, remaining)
            echo(f"[{index}/{len(sections)}] {section.title} (at most {given:.0f} s)")
            outcome = run_section(section, folder, given)
        report.add(index, outcome)
        outcomes.append(outcome)
        echo(f"    {outcome.status}: {outcome.summary.splitlines()[0] if outcome.summary else ''}")
    return outcomes


# --- the child side -----------------------------------------------------------------------------------
class Context:
    """What a section function gets in its child process."""

    def __init__(self, out: Path, lines: Path, seconds: float, device: str = "cuda:0") -> None:
        self.out = out
        self.lines = lines
        self.device = device
        self.deadline = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def emit(self, **result: Any) -> dict[str, Any]:
        """Record one result now (it survives the child being stopped)."""
        with open(self.lines, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(result, default=str) + "\n")
            handle.flush()
        return result


@dataclasses.dataclass
class Verdict:
    passed: bool
    summary: str
    markdown: str = ""


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def _backend(device: str, kernels: str = "fused") -> Any:
    from bpcore.backends import get_backend

    return get_backend(device, kernels=kernels)


def section_versions(ctx: Context) -> Verdict:
    import numpy as np

    import bpcore
    from bpcore.bench.machine import source_commit

    info: dict[str, Any] = {
        "bpcore": bpcore.__version__,
        "commit": source_commit(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
    }
    problems = []
    try:
        import cupy
        from cupy_backends.cuda.libs import nvrtc

        info["cupy"] = cupy.__version__
        runtime = cupy.cuda.runtime
        info["cuda_runtime"] = runtime.runtimeGetVersion()
        info["nvrtc"] = ".".join(map(str, nvrtc.getVersion()))
        info["cuda_driver"] = runtime.driverGetVersion()
        count = runtime.getDeviceCount()
        info["devices"] = []
        for index in range(count):
            properties = runtime.getDeviceProperties(index)
            name = properties["name"]
            info["devices"].append(
                {
                    "index": index,
                    "name": name.decode() if isinstance(name, bytes) else str(name),
                    "compute_capability": cupy.cuda.Device(index).compute_capability,
                    "memory_gib": round(properties["totalGlobalMem"] / 2**30, 1),
                    "multiprocessors": properties["multiProcessorCount"],
                }
            )
        if count == 0:
            problems.append("no CUDA device")
    except Exception as exc:
        problems.append(f"CUDA is not usable: {type(exc).__name__}: {exc}")
    ctx.emit(kind="versions", **info)
    smi = shutil.which("nvidia-smi")
    smi_text = "nvidia-smi is not installed"
    if smi:
        done = subprocess.run([smi], capture_output=True, text=True, timeout=30)
        smi_text = done.stdout + done.stderr
        ctx.emit(kind="nvidia-smi", output=smi_text)
    table: dict[str, str] = {}
    if not problems:
        try:
            from bpcore.backends.ops import OPERATIONS

            table = _backend(ctx.device).dispatch_table()
            missing = sorted(n for n, op in OPERATIONS.items() if op.cuda is not None and table[n] != "cuda")
            if missing:
                problems.append(f"operations with a CUDA kernel that do not run it: {missing}")
        except Exception as exc:
            problems.append(f"the CUDA backend fails: {type(exc).__name__}: {exc}")
        ctx.emit(kind="dispatch_table", table=table)
    markdown = "```json\n" + json.dumps(info, indent=1) + "\n```\n\n```\n" + smi_text.strip() + "\n```\n"
    if table:
        markdown += "\n" + _table(
            [{"operation": k, "runs": v} for k, v in table.items()], ["operation", "runs"]
        )
    devices = ", ".join(f"{d['name']} (sm_{d['compute_capability']})" for d in info.get("devices", []))
    summary = "; ".join(problems) if problems else f"CuPy {info['cupy']}, NVRTC {info['nvrtc']}, {devices}"
    return Verdict(not problems, summary, markdown)


def _compare(got: Any, expected: Any, dtype: Any) -> tuple[bool, float, float]:
    """(within tolerance, worst absolute error, worst error relative to the array's scale)."""
    import numpy as np
    from kernel_cases import TOLERANCE

    rtol, atol = TOLERANCE[np.dtype(dtype)]
    rtol, atol = rtol * 50, atol * 50
    finite = np.abs(expected[np.isfinite(expected)])
    magnitude = max(1.0, float(finite.max(initial=0.0)))
    with np.errstate(all="ignore"):
        difference = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    both_nan = np.isnan(got) & np.isnan(expected)
    difference = np.where(both_nan, 0.0, difference)
    difference = np.where(np.isnan(difference), np.inf, difference)
    worst = float(difference.max(initial=0.0))
    ok = bool(
        np.all(difference <= atol * magnitude + rtol * np.abs(np.nan_to_num(expected.astype(np.float64))))
    )
    return ok, worst, worst / magnitude


def _probe_cupy_input(device: str) -> dict[str, Any]:
    import numpy as np

    import bpcore
    from bpcore.layers import Dense, ReLU
    from bpcore.losses import CrossEntropy
    from bpcore.optim import Adam

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 20)).astype(np.float32)
    y = rng.integers(0, 3, size=64)
    backend = _backend(device)
    xp, asnumpy = backend.xp, backend.to_numpy
    network = bpcore.Network([Dense(20, 16), ReLU(), Dense(16, 3)], seed=0, device=device)
    reference = asnumpy(network.predict(x))
    got = asnumpy(network.predict(xp.asarray(x)))
    forward = asnumpy(network.forward(xp.asarray(x)))
    evaluated = network.evaluate(xp.asarray(x), xp.asarray(y), loss=CrossEntropy(), metrics=["accuracy"])
    network.fit(
        xp.asarray(x),
        xp.asarray(y),
        loss=CrossEntropy(),
        optimizer=Adam(network.parameters()),
        epochs=1,
        batch_size=16,
        verbose=False,
    )
    worst = float(max(np.abs(got - reference).max(), np.abs(forward - reference).max()))
    return {
        "passed": worst <= 1e-6,
        "worst_difference": worst,
        "evaluate": evaluated,
        "detail": "predict/forward/evaluate/fit with cupy.ndarray input, against NumPy input",
    }


def _probe_dropout(device: str) -> dict[str, Any]:
    import numpy as np

    import bpcore
    from bpcore.layers import Dense, Dropout

    p, rows, units = 0.3, 4096, 256
    backend = _backend(device)
    xp = backend.xp
    network = bpcore.Network([Dense(units, units), Dropout(p)], seed=0, device=device)
    dense = network.layers[0]
    dense.weight.data[...] = xp.eye(units, dtype=np.float32)  # the Dense layer passes ones through
    dense.bias.data[...] = 0
    x = xp.ones((rows, units), dtype=np.float32)
    first = backend.to_numpy(network.forward(x, training=True))
    second = backend.to_numpy(network.forward(x, training=True))
    kept = first != 0
    fraction = float(kept.mean())
    per_unit = kept.mean(axis=0)
    sigma = float(np.sqrt(p * (1 - p) / rows))
    centred = kept - kept.mean(axis=0)
    correlation = float(
        np.abs(
            (centred[:, :-1] * centred[:, 1:]).mean(axis=0)
            / (centred[:, :-1].std(axis=0) * centred[:, 1:].std(axis=0) + 1e-12)
        ).max()
    )
    scale_ok = bool(np.allclose(first[kept], 1.0 / (1.0 - p), rtol=1e-6))
    checks = {
        "fraction kept within 5 sigma of 1 - p": abs(fraction - (1 - p))
        <= 5 * float(np.sqrt(p * (1 - p) / kept.size)),
        "every unit's fraction within 6 sigma": bool(np.all(np.abs(per_unit - (1 - p)) <= 6 * sigma)),
        "neighbouring units uncorrelated (|r| < 0.1)": correlation < 0.1,
        "kept values scaled by 1/(1-p)": scale_ok,
        "two training passes draw different masks": bool((first != second).any()),
    }
    return {
        "passed": all(checks.values()),
        "fraction_kept": fraction,
        "per_unit_min": float(per_unit.min()),
        "per_unit_max": float(per_unit.max()),
        "max_neighbour_correlation": correlation,
        "checks": checks,
    }


# Arguments given F-ordered to the row/column kernels: the 2-D inputs.
F_ORDERED = {
    "softmax_cross_entropy_forward": (0, 1),
    "softmax_cross_entropy_index_forward": (0,),
    "batchnorm_forward_train": (0,),
    "batchnorm_backward": (0, 1),
}


def _probe_f_order(device: str) -> list[dict[str, Any]]:
    import numpy as np
    from kernel_cases import CASES

    from bpcore.backends.ops import OPERATIONS

    backend = _backend(device)
    xp = backend.xp
    found = []
    for name, positions in F_ORDERED.items():
        for dtype in (np.float32, np.float64):
            args = CASES[name][0][1](np.random.default_rng(1), dtype, 300, False)
            expected = copy.deepcopy(args)
            with np.errstate(all="ignore"):
                OPERATIONS[name].generic(np, *expected)
            on_device = [
                (xp.asfortranarray(xp.asarray(a)) if i in positions else xp.asarray(a))
                if isinstance(a, np.ndarray)
                else a
                for i, a in enumerate(args)
            ]
            getattr(backend.ops, name)(*on_device)
            backend.synchronize()
            worst, ok = 0.0, True
            for e, g in zip(expected, on_device, strict=True):
                if isinstance(e, np.ndarray) and e.dtype.kind == "f":
                    good, error, _ = _compare(backend.to_numpy(g), e, dtype)
                    ok, worst = ok and good, max(worst, error)
            found.append(
                {"operation": name, "dtype": np.dtype(dtype).name, "passed": ok, "worst_error": worst}
            )
    return found


def section_bugs(ctx: Context) -> Verdict:
    rows = []
    probes: list[tuple[str, Callable[[], Any]]] = [
        ("cupy input to a network", lambda: _probe_cupy_input(ctx.device)),
        ("dropout mask statistics", lambda: _probe_dropout(ctx.device)),
        ("F-ordered input to the fused row/column kernels", lambda: _probe_f_order(ctx.device)),
    ]
    for probe, run in probes:
        try:
            found = run()
        except Exception as exc:
            found = {
                "passed": False,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
            }
            print(found["traceback"])
        for item in found if isinstance(found, list) else [found]:
            rows.append(ctx.emit(kind="bug-probe", probe=probe, **item))
    failed = [r for r in rows if not r["passed"]]
    markdown = _table(
        rows, ["probe", "passed", "operation", "dtype", "worst_error", "fraction_kept", "error"]
    )
    summary = (
        "all three probes passed" if not failed else f"{len(failed)} of {len(rows)} probe results failed"
    )
    return Verdict(not failed, summary, markdown)


def section_codegen(ctx: Context) -> Verdict:
    """CuPy's real generated source on the GPU against what the no-GPU test suite generates.

    ``tests/test_cuda_codegen.py`` compiles source that ``tests/cupy_codegen``
    generates by driving CuPy's private generators without a device; here the
    same operations run for real, and every source CuPy generated and cached
    (``_cached_codes`` of each ElementwiseKernel and ReductionKernel) must be
    one that the emulation produced.
    """
    import cupy_codegen
    import numpy as np
    from kernel_cases import CASES

    from bpcore.backends.kernels import cuda as cuda_kernels
    from bpcore.backends.ops import OPERATIONS

    reason = cupy_codegen.unavailable()
    if reason:
        return Verdict(False, f"not comparable: {reason}")
    backend = _backend(ctx.device)
    recorder = cupy_codegen.Recorder()
    provider = cupy_codegen.provider(recorder)
    failed = []
    for name in sorted(n for n, op in OPERATIONS.items() if op.cuda_wrapper is not None):
        emulated = OPERATIONS[name].cuda_wrapper(provider)
        try:  # one operation failing on the GPU is a finding; the others are still compared
            for dtype in (np.float32, np.float64):
                for _label, make in CASES[name]:
                    for rows in (41, 2):
                        args = make(np.random.default_rng(0), dtype, rows, False)
                        emulated(*copy.deepcopy(args))
                        getattr(backend.ops, name)(
                            *[backend.xp.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
                        )
            backend.synchronize()
        except Exception as exc:  # recorded, and the section fails
            failed.append(name)
            ctx.emit(kind="codegen-error", operation=name, error=f"{type(exc).__name__}: {exc}"[:500])
    generated = [program.source for program in recorder.programs.values()]
    rows_out = []
    for kernel_name, kernel in sorted(cuda_kernels._kernels.items()):
        for code in (getattr(kernel, "_cached_codes", None) or {}).values():
            matched = any(source.endswith(code) for source in generated)
            rows_out.append(ctx.emit(kind="codegen", kernel=kernel_name, matched=matched))
    missing = sorted({r["kernel"] for r in rows_out if not r["matched"]})
    summary = (
        f"{len(rows_out) - len(missing)} of {len(rows_out)} sources CuPy generated on the GPU were generated "
        "identically without a GPU" + (f"; different: {missing}" if missing else "")
        + (f"; failed on the GPU: {failed}" if failed else "")
    )
    return Verdict(bool(rows_out) and not missing and not failed, summary)


def section_fused_ops(ctx: Context) -> Verdict:
    import numpy as np
    from kernel_cases import CASES

    from bpcore.backends import device_scope
    from bpcore.backends.ops import OPERATIONS
    from bpcore.bench.ceilings import device_clock
    from bpcore.bench.timing import Budget, measure

    fused, generic = _backend(ctx.device, "fused"), _backend(ctx.device, "generic")
    xp = fused.xp
    clock = device_clock(fused)
    budget = Budget(repeats=5, min_repeats=3, sample_seconds=0.005, warmup_seconds=0.01, max_seconds=0.3)
    names = sorted(name for name, op in OPERATIONS.items() if op.cuda is not None)
    rows, not_run = [], []
    with device_scope(fused):
        for name in names:
            for dtype in (np.float32, np.float64):
                if ctx.remaining() < 5:
                    not_run.append(f"{name}/{np.dtype(dtype).name}")
                    continue
                row: dict[str, Any] = {"operation": name, "dtype": np.dtype(dtype).name, "rows": 5000}
                try:
                    args = CASES[name][0][1](np.random.default_rng(2), dtype, 5000, False)
                    device = {
                        kind: [xp.asarray(a) if isinstance(a, np.ndarray) else a for a in copy.deepcopy(args)]
                        for kind in ("fused", "generic")
                    }
                    implementation = getattr(fused.ops, name)
                    reference = getattr(generic.ops, name)
                    clock.start()
                    implementation(*device["fused"])
                    row["first_call_ms"] = clock.stop() * 1e3
                    clock.start()
                    reference(*device["generic"])
                    row["generic_first_call_ms"] = clock.stop() * 1e3
                    ok, worst, relative = True, 0.0, 0.0
                    for g, e in zip(device["fused"], device["generic"], strict=True):
                        if hasattr(g, "dtype") and g.dtype.kind == "f":
                            good, error, scaled = _compare(fused.to_numpy(g), fused.to_numpy(e), dtype)
                            ok, worst, relative = ok and good, max(worst, error), max(relative, scaled)
                    row.update(passed=ok, worst_error=worst, worst_relative_error=relative)
                    steady = device["fused"]

                    def fused_run(
                        steps: int, steady: Any = steady, implementation: Any = implementation
                    ) -> None:
                        for _ in range(steps):
                            implementation(*steady)

                    def generic_run(
                        steps: int, steady: Any = device["generic"], reference: Any = reference
                    ) -> None:
                        for _ in range(steps):
                            reference(*steady)

                    with np.errstate(all="ignore"):
                        row["steady_us"] = measure(name, fused_run, clock, budget).median * 1e6
                        row["generic_steady_us"] = measure(name, generic_run, clock, budget).median * 1e6
                    row["speedup"] = row["generic_steady_us"] / row["steady_us"]
                except Exception as exc:
                    row.update(passed=False, error=f"{type(exc).__name__}: {exc}")
                    traceback.print_exc()
                rows.append(ctx.emit(kind="fused-op", **row))
    failed = [r for r in rows if not r["passed"]]
    columns = [
        "operation",
        "dtype",
        "passed",
        "worst_error",
        "worst_relative_error",
        "first_call_ms",
        "steady_us",
        "generic_steady_us",
        "speedup",
        "error",
    ]
    summary = f"{len(rows) - len(failed)} of {len(rows)} fused operations agree with their generic version"
    if not_run:
        summary += f"; {len(not_run)} not run before the deadline"
    return Verdict(not failed and not not_run, summary, _table(rows, columns))


def section_torch_parity(ctx: Context) -> Verdict:
    """bpcore on the device against PyTorch on the same kind of device (``benchmarks/torch_parity.py``)."""
    import importlib.util

    try:
        import torch  # noqa: F401
    except ImportError:
        return Verdict(True, "PyTorch is not installed: nothing to compare with (not a failure)")
    spec = importlib.util.spec_from_file_location("torch_parity", Path(__file__).with_name("torch_parity.py"))
    assert spec is not None and spec.loader is not None
    parity = importlib.util.module_from_spec(spec)
    sys.modules["torch_parity"] = parity  # its dataclasses look their module up
    spec.loader.exec_module(parity)
    tallies = []
    for kind in parity.CHECKS:
        for dtype in ("float32", "float64"):
            if ctx.remaining() < 10:
                break
            tally = parity.run([kind], [dtype], 4, 0, ctx.device)[0]
            ctx.emit(kind="torch-parity", check=kind, dtype=dtype, cases=tally.cases, worst=tally.worst,
                     failures=tally.failures[:5])
            tallies.append(tally)
    failed = [t for t in tallies if t.failures]
    summary = (f"{len(tallies)} kind/dtype pairs of {2 * len(parity.CHECKS)} run, "
               f"{sum(t.cases for t in tallies)} cases; {len(failed)} with differences")
    return Verdict(not failed and len(tallies) == 2 * len(parity.CHECKS), summary,
                   parity.report(tallies, ctx.device))


def _step_section(ctx: Context, model: str, batches: tuple[int, ...]) -> Verdict:
    """One model's training step, fused against generic and PyTorch (fused and default Adam)."""
    import numpy as np

    from bpcore.backends import device_scope
    from bpcore.bench import baselines
    from bpcore.bench.contenders import bpcore_step
    from bpcore.bench.models import MODELS, synthetic_data
    from bpcore.bench.timing import Budget, HostClock, Timed, measure_interleaved

    spec = MODELS[model]
    budget = Budget(repeats=7, max_seconds=4.0)
    torch_reason = baselines.availability()["torch-adam-fused"]
    if torch_reason is None:
        import torch

        if ctx.device != "cpu" and not torch.cuda.is_available():
            torch_reason = f"PyTorch {torch.__version__} has no CUDA here"
    rows = []
    with device_scope(_backend(ctx.device)):
        for batch in batches:
            data = synthetic_data(spec, batch, np.float32)
            contenders = [
                bpcore_step(spec, data, ctx.device, "float32", kernels=k) for k in ("fused", "generic")
            ]
            if torch_reason is None:
                contenders += [
                    baselines.torch_step(spec, data, ctx.device, "float32", fused=f) for f in (True, False)
                ]
            first = {}
            for contender in contenders:
                host = HostClock()
                contender.clock.start()
                host.start()
                contender.run(1)
                contender.clock.stop()
                first[contender.key] = host.stop() * 1e3
            measured = measure_interleaved(
                [Timed(c.key, c.run, c.clock, c.min_steps) for c in contenders], budget
            )
            for contender in contenders:
                m = measured[contender.key]
                rows.append(
                    ctx.emit(
                        kind=f"{model}-step",
                        implementation=contender.key,
                        label=contender.label,
                        batch=batch,
                        ms_per_step=m.median * 1e3,
                        ms_min=m.minimum * 1e3,
                        ms_max=m.maximum * 1e3,
                        samples=m.samples,
                        first_call_ms=first[contender.key],
                        samples_per_second=batch / m.median,
                    )
                )
    by = {(r["implementation"], r["batch"]): r["ms_per_step"] for r in rows}
    notes = []
    for batch in batches:
        notes.append(
            f"batch {batch}: fused {by['bpcore', batch]:.3f} ms, generic "
            f"{by['bpcore-generic', batch]:.3f} ms ({by['bpcore-generic', batch] / by['bpcore', batch]:.2f}x)"
            + (
                f", PyTorch fused Adam {by['torch-adam-fused', batch]:.3f} ms"
                if ("torch-adam-fused", batch) in by
                else ""
            )
        )
    markdown = _table(
        rows,
        [
            "implementation",
            "batch",
            "ms_per_step",
            "ms_min",
            "ms_max",
            "samples",
            "first_call_ms",
            "samples_per_second",
        ],
    )
    if torch_reason:
        markdown += f"\n\nPyTorch not compared: {torch_reason}."
    return Verdict(True, "; ".join(notes), markdown)


def section_mnist_step(ctx: Context) -> Verdict:
    return _step_section(ctx, "mnist", (128, 1024))


def section_lenet_step(ctx: Context) -> Verdict:
    return _step_section(ctx, "lenet", (64, 128))


def _count_with_nsys(ctx: Context, nsys: str, kernels: str, steps: int) -> float:
    report = ctx.out / f"launches-{kernels}"
    command = [
        nsys,
        "profile",
        "--trace=cuda",
        "--force-overwrite=true",
        "-o",
        str(report),
        sys.executable,
        __file__,
        "--device",
        ctx.device,
        "--steps",
        kernels,
        str(steps),
    ]
    subprocess.run(command, check=True, timeout=max(10.0, ctx.remaining() / 2))
    done = subprocess.run(
        [nsys, "stats", "--report", "cuda_gpu_kern_sum", "--format", "csv", str(report) + ".nsys-rep"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    total = 0
    for line in done.stdout.splitlines():
        parts = [p.strip('"') for p in line.split(",")]
        if len(parts) > 3 and parts[2].isdigit():
            total += int(parts[2])  # the Instances column
    return total / (steps + 1)  # one warm-up step, then the counted ones


def _mnist_network(device: str, kernels: str) -> tuple[Any, Callable[[], None]]:
    import numpy as np

    from bpcore.bench.contenders import bpcore_step
    from bpcore.bench.models import MODELS, synthetic_data

    spec = MODELS["mnist"]
    contender = bpcore_step(spec, synthetic_data(spec, 128, np.float32), device, "float32", kernels=kernels)
    return contender, lambda: contender.run(1)


def _count_fused_calls(
    device: str, kernels: str, steps: int, make_step: Callable[[str, str], Callable[[], Any]] | None = None
) -> float:
    """Calls into bpcore's hot operations per step (each fused one is one launch).

    ``make_step(device, kernels)`` builds the step (default: the MNIST-shaped
    one).  The counting wrappers are installed before the network is built,
    since layers keep the implementations they resolve.
    """
    from bpcore.backends.ops import OPERATIONS

    backend = _backend(device, kernels)
    calls = [0]
    for name in OPERATIONS:
        implementation = getattr(backend.ops, name)

        def counted(*args: Any, _implementation: Any = implementation) -> Any:
            calls[0] += 1
            return _implementation(*args)

        setattr(backend.ops, name, counted)
    try:
        if make_step is None:
            _contender, step = _mnist_network(device, kernels)
        else:
            step = make_step(device, kernels)
        step()
        calls[0] = 0
        for _ in range(steps):
            step()
    finally:
        for name in OPERATIONS:
            delattr(backend.ops, name)
    return calls[0] / steps


def section_launches(ctx: Context) -> Verdict:
    nsys = shutil.which("nsys")
    rows = []
    for kernels in ("fused", "generic"):
        if nsys:
            per_step = _count_with_nsys(ctx, nsys, kernels, 50)
            method = "Nsight Systems: every kernel launch in the trace / steps"
        else:
            per_step = _count_fused_calls(ctx.device, kernels, 20)
            method = (
                "bpcore's count of calls into its hot operations per step (nsys is not installed: "
                "matrix products and other CuPy expressions are not counted)"
            )
        rows.append(ctx.emit(kind="launches", kernels=kernels, per_step=per_step, method=method))
    summary = (
        ", ".join(f"{r['kernels']}: {r['per_step']:.1f} per step" for r in rows) + f" ({rows[0]['method']})"
    )
    return Verdict(True, summary, _table(rows, ["kernels", "per_step", "method"]))


CHAR_MODELS = ("lstm-char", "gru-char", "rnn-char")
CHAR_BATCH = 128


def _char_step(name: str) -> Callable[[str, str], Callable[[], Any]]:
    def make(device: str, kernels: str) -> Callable[[], Any]:
        from bpcore.bench.contenders import kernel_mode
        from bpcore.bench.recurrent import RECURRENT_MODELS, bpcore_step

        with kernel_mode(kernels):  # the network resolves its operations on the counted backend
            return bpcore_step(RECURRENT_MODELS[name], CHAR_BATCH, device)

    return make


def section_rnn_step(ctx: Context) -> Verdict:
    """The character models of ``bpcore bench --models rnn`` at batch 128 vs PyTorch; calls per time step.

    Issue targets on a GPU: at least PyTorch eager's speed on the character
    model at batch 128, and two launches forward and two backward per time
    step (one recurrent product and one fused cell kernel each way).
    """
    from bpcore.bench.recurrent import RECURRENT_MODELS, run_recurrent
    from bpcore.bench.timing import Budget

    rows = []
    for name in CHAR_MODELS:
        steps = RECURRENT_MODELS[name].steps
        per_step = _count_fused_calls(ctx.device, "fused", 5, _char_step(name))
        rows.append(ctx.emit(kind="rnn-calls", model=name, batch=CHAR_BATCH, fused_calls_per_step=per_step,
                             fused_calls_per_time_step=per_step / steps))
    report = run_recurrent(CHAR_MODELS, batch_sizes=(CHAR_BATCH,), devices=[ctx.device],
                           budget=Budget(repeats=5, max_seconds=3.0))
    timed = [ctx.emit(kind="rnn-step", **row) for row in report["results"]]
    notes = [
        f"{row['model']}: bpcore {row['ms'][row['bpcore']]:.2f} ms"
        + (f", PyTorch {row['ms'][row['torch']]:.2f} ms, ratio {row['ratio']:.2f}" if "torch" in row else "")
        for row in timed
    ]
    notes += [f"{r['model']}: {r['fused_calls_per_time_step']:.2f} fused calls per time step" for r in rows]
    markdown = _table(rows, ["model", "batch", "fused_calls_per_step", "fused_calls_per_time_step"])
    markdown += ("\n\nFused calls are bpcore's own count of calls into its hot operations, forward and "
                 "backward together (matrix products are not counted: add one per time step each way).")
    if report["torch"]:
        markdown += f"\n\nPyTorch not compared: {report['torch']}."
    return Verdict(True, "; ".join(notes), markdown)


def section_digits(ctx: Context) -> Verdict:
    command = [sys.executable, str(ROOT / "examples" / "digits.py"), "--device", ctx.device, "--seed", "0"]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=max(5.0, ctx.remaining() - 2)
    )
    print(done.stdout + done.stderr)
    found = re.search(r"test:.*accuracy ([0-9.]+)", done.stdout)
    accuracy = float(found.group(1)) if found else None
    ctx.emit(kind="digits", device=ctx.device, test_accuracy=accuracy, returncode=done.returncode)
    passed = done.returncode == 0 and accuracy is not None and accuracy >= 0.97
    return Verdict(
        passed,
        f"test accuracy {accuracy} on {ctx.device} (target 0.97)",
        f"```\n{(done.stdout + done.stderr).strip()}\n```",
    )


def section_pytest_gpu(ctx: Context) -> Verdict:
    import importlib.util

    junit, log = ctx.out / "pytest-gpu.xml", ctx.out / "pytest-gpu.log"
    per_test = max(10, min(PER_TEST_TIMEOUT, int(ctx.remaining() - 10)))
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "gpu",
        "-rA",
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
    ]
    if importlib.util.find_spec("pytest_timeout"):
        command.append(f"--timeout={per_test}")
    else:  # without pytest-timeout: a traceback of a stuck test, and the section's deadline
        command += ["-o", f"faulthandler_timeout={per_test}"]
    with open(log, "w", encoding="utf-8") as output:
        try:
            done = subprocess.run(
                command,
                cwd=ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=max(5.0, ctx.remaining() - 3),
            )
            returncode: int | None = done.returncode
        except subprocess.TimeoutExpired:
            returncode = None
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if junit.exists():
        root = ElementTree.parse(junit).getroot()
        suites = [root] if root.tag == "testsuite" else list(root)
        for suite in suites:
            for key in counts:
                counts[key] += int(suite.get(key, 0))
    ran = counts["tests"] - counts["skipped"]
    ctx.emit(kind="pytest-gpu", returncode=returncode, per_test_timeout=per_test, **counts)
    passed = returncode == 0 and ran > 0 and counts["failures"] == counts["errors"] == 0
    summary = (
        f"{ran} GPU tests ran: {counts['failures']} failed, {counts['errors']} errors, "
        f"{counts['skipped']} skipped (exit status {returncode}; per-test timeout {per_test} s)"
    )
    return Verdict(
        passed, summary, f"junit XML: `{junit.name}`, full log: `{log.name}`\n\n```\n{_tail(log)}\n```"
    )


SECTIONS: dict[str, tuple[str, Callable[[Context], Verdict], float]] = {
    "versions": ("Versions and devices", section_versions, 60),
    "bugs": ("The three GPU-only bugs, probed directly", section_bugs, 120),
    "codegen": ("CuPy's generated source on the GPU against the no-GPU emulation", section_codegen, 90),
    "fused-ops": ("Every fused operation against its generic version", section_fused_ops, 180),
    "torch-parity": ("bpcore against PyTorch on the device, random cases", section_torch_parity, 90),
    "mnist-step": (
        "MNIST-shaped training step, fused against generic (and PyTorch)",
        section_mnist_step,
        150,
    ),
    "lenet-step": (
        "LeNet-shaped CNN training step, fused against generic (and PyTorch)",
        section_lenet_step,
        150,
    ),
    "rnn-step": (
        "Character LSTM/GRU/RNN training steps at batch 128 (and PyTorch), calls per time step",
        section_rnn_step,
        150,
    ),
    "launches": ("Kernel launches per training step", section_launches, 120),
    "digits": ("Digits on the GPU (>= 97 % test accuracy)", section_digits, 150),
    "pytest-gpu": ("pytest -m gpu", section_pytest_gpu, 10_000),
}


def builtin_sections(names: Sequence[str] | None = None, *, device: str = "cuda:0") -> list[Section]:
    chosen = list(SECTIONS) if names is None else list(names)
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"--sections: unknown {unknown}; expected names from {list(SECTIONS)}")
    return [
        Section(
            name,
            SECTIONS[name][0],
            (
                sys.executable,
                __file__,
                "--section",
                name,
                "--result",
                "{result}",
                "--lines",
                "{lines}",
                "--out",
                "{out}",
                "--seconds",
                "{seconds}",
                "--device",
                device,
            ),
            SECTIONS[name][2],
        )
        for name in chosen
    ]


def run_child(name: str, result: Path, lines: Path, out: Path, seconds: float, device: str) -> int:
    """Run section ``name`` in this (child) process and write its verdict."""
    context = Context(out, lines, seconds, device)
    try:
        verdict = SECTIONS[name][1](context)
    except Exception as exc:
        traceback.print_exc()
        verdict = Verdict(False, f"{type(exc).__name__}: {exc}", f"```\n{traceback.format_exc()}\n```")
    temporary = result.with_suffix(".tmp")
    temporary.write_text(json.dumps(dataclasses.asdict(verdict), default=str), encoding="utf-8")
    temporary.replace(result)
    return 0 if verdict.passed else 1


def _header(argv: Sequence[str], seconds: float) -> str:
    from bpcore.bench.machine import source_commit

    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        "# GPU check\n\n"
        f"- date: {now:%Y-%m-%d %H:%M:%S} UTC\n- commit: {source_commit()}\n- host: {platform.node()}\n"
        f"- python: {platform.python_version()}\n- command: `{' '.join(['gpu_check.py', *argv])}`\n"
        f"- deadline: {seconds:.0f} s for the whole run\n"
    )


@contextlib.contextmanager
def _quiet_numpy() -> Iterator[None]:
    import numpy as np

    with np.errstate(all="ignore"):
        yield


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, help="folder for the report (default: gpu-check-<UTC date and time>)"
    )
    parser.add_argument(
        "--seconds", type=float, default=DEFAULT_SECONDS, help="one deadline for the whole run"
    )
    parser.add_argument("--sections", help=f"comma-separated, in order (default all: {','.join(SECTIONS)})")
    parser.add_argument(
        "--device",
        default="cuda:0",
        help="the GPU to check (default cuda:0; 'cpu' is a dry run of the script itself)",
    )
    parser.add_argument("--section", choices=list(SECTIONS), help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--lines", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--steps", nargs=2, metavar=("KERNELS", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.seconds > 0:
        parser.error(f"--seconds: expected a positive number, got {args.seconds}")
    if args.steps:  # the process nsys traces: one warm-up step and N steps
        _contender, step = _mnist_network(args.device, args.steps[0])
        with _quiet_numpy():
            for _ in range(int(args.steps[1]) + 1):
                step()
        _backend(args.device).synchronize()
        return 0
    if args.section:
        with _quiet_numpy():
            return run_child(args.section, args.result, args.lines, args.out, args.seconds, args.device)
    out = args.out or Path(f"gpu-check-{datetime.datetime.now(datetime.timezone.utc):%Y%m%d-%H%M%S}")
    out = out.resolve()
    sections = builtin_sections(args.sections.split(",") if args.sections else None, device=args.device)
    outcomes = run_sections(sections, out, args.seconds, header=_header(argv, args.seconds))
    failed = [o.name for o in outcomes if not o.passed]
    print(
        f"{len(outcomes) - len(failed)} of {len(outcomes)} sections passed"
        + (f"; not passed: {', '.join(failed)}" if failed else "")
    )
    print(f"report: {out / 'report.md'} (one JSON line per result: {out / 'results.jsonl'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
