"""The benchmark report as a table, as JSON, and as a plot."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .baselines import BASELINES

RATIO_HEADERS = {
    "numpy-naive": "x numpy-naive",
    "torch-adam-fused": "x torch fused",
    "torch-adam-default": "x torch default",
    "sklearn": "x sklearn",
}
PLOT_HINT = "pip install 'bpcore[plot]' (or pip install matplotlib)"


def _format_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def _number(value: float | None, digits: int = 0) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:,.{digits}f}"


def bpcore_table(report: dict[str, Any]) -> str:
    """One line per bpcore measurement, with its ceilings and its ratio to each baseline."""
    present = [b for b in BASELINES if any(r["implementation"] == b for r in report["results"])]
    headers = ["device", "model", "batch", "kernels", "samples/s", "ms/step", "GFLOP/s", "% GEMM",
               "x matmuls"] + [RATIO_HEADERS[b] for b in present]
    rows = []
    for r in report["results"]:
        if r["role"] != "bpcore":
            continue
        kernels = r["implementation"].partition("-")[2] or "fused"
        ratios = r.get("ratios", {})
        rows.append([
            r["device"], r["model"], str(r["batch"]), kernels, _number(r["samples_per_s"]),
            _number(r["ms_per_step"], 3), _number(r["gflops"], 1), _number(r["pct_gemm"], 1),
            _number(r.get("over_matmuls"), 2),
        ] + [f"{ratios[b]:.2f}x" if b in ratios else "-" for b in present])
    return _format_table(headers, rows)


def all_rows_table(report: dict[str, Any]) -> str:
    """Every implementation measured, bpcore, ceilings and baselines alike."""
    headers = ["device", "model", "batch", "implementation", "dtype", "samples/s", "ms/step", "min-max ms",
               "GFLOP/s", "% GEMM"]
    rows = [
        [r["device"], r["model"], str(r["batch"]), r["implementation"], r["dtype"],
         _number(r["samples_per_s"]), _number(r["ms_per_step"], 3), f"{r['ms_min']:.3f}-{r['ms_max']:.3f}",
         _number(r["gflops"], 1), _number(r["pct_gemm"], 1)]
        for r in report["results"]
    ]
    return _format_table(headers, rows)


def format_report(report: dict[str, Any]) -> str:
    """The whole report as text: machine, ceilings, bpcore's table, every measurement, legend."""
    machine = report["machine"]
    lines = [
        f"bpcore {machine['bpcore']} (commit {machine.get('commit') or 'unknown'}), {report['created']}",
        f"{machine['cpu']}, {machine['cores']} cores; {machine['platform']}; "
        f"dtype {report['settings']['dtype']}, {report['settings']['optimizer']}",
    ]
    for device in report["devices"]:
        gpu = machine.get("gpus", {}).get(device["device"])
        lines.append(
            f"{device['device']}{f' ({gpu})' if gpu else ''}: GEMM {device['gemm_gflops']:.0f} GFLOP/s "
            f"(n={device['gemm_size']}), copy {device['copy_gbps']:.1f} GB/s"
        )
    during = machine.get("during_run", {})
    other = during.get("other_processes_cpu_seconds")
    if other is not None:
        share = other / max(during["wall_seconds"] * machine["cores"], 1e-9)
        warning = ": figures disturbed, run again" if share > 0.05 else ""
        lines.append(f"other processes used {other:.1f} CPU s during the {during['wall_seconds']:.0f} s run "
                     f"({100 * share:.0f}% of the cores){warning}")
    lines += ["", bpcore_table(report), "", all_rows_table(report), ""]
    labels: dict[str, str] = {}
    for r in report["results"]:
        labels.setdefault(r["implementation"], r["label"])
    lines += [f"{key}: {label}" for key, label in labels.items()]
    lines.append("x matmuls: step time over the time of the step's matrix products alone (1.00 is the floor)")
    lines.append("x <baseline>: bpcore's samples/s over the baseline's, same model, batch and device "
                 "(CPU-only baselines: their CPU figure)")
    for skip in report["skipped"]:
        lines.append(f"skipped {skip['implementation']} on {skip['device']}: {skip['reason']}")
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")


def require_matplotlib() -> None:
    """Raise one clear error when plotting is asked for but matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"--plot needs matplotlib, which is not installed ({exc}); {PLOT_HINT}") from None


def plot_report(report: dict[str, Any], path: str | Path) -> None:
    """Throughput against batch size: one panel per model, one line per device and implementation."""
    require_matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    models = list(dict.fromkeys(r["model"] for r in report["results"] if r["role"] != "ceiling"))
    figure = Figure(figsize=(5 * max(1, len(models)), 4), layout="constrained")
    axes = figure.subplots(1, max(1, len(models)), squeeze=False)[0]
    for ax, model in zip(axes, models, strict=True):
        rows = [r for r in report["results"] if r["model"] == model and r["role"] != "ceiling"]
        series: dict[tuple[str, str], list[tuple[int, float]]] = {}
        for r in rows:
            series.setdefault((r["device"], r["implementation"]), []).append((r["batch"], r["samples_per_s"]))
        for (device, implementation), points in series.items():
            points.sort()
            style = "-" if implementation.startswith("bpcore") else "--"
            ax.plot([p[0] for p in points], [p[1] for p in points], style, marker="o",
                    label=f"{implementation} ({device})")
        sizes = next(r["sizes"] for r in rows)
        ax.set_title(f"{model}: {'-'.join(map(str, sizes))}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(NullFormatter())  # a narrow range would crowd the axis with labels
        ax.set_xlabel("batch size")
        ax.set_ylabel("samples per second")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    figure.suptitle(f"training throughput, {report['settings']['dtype']}, {report['settings']['optimizer']}")
    figure.savefig(path, dpi=120)
