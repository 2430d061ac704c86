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


def _per_second(value: float) -> str:
    """A throughput as a bar or point label: three significant digits, thousands as k, millions as M."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g}{suffix}/s"
    return f"{value:.3g}/s"


def gemm_ceiling(report: dict[str, Any], model: str, device: str) -> dict[int, float]:
    """Samples/s by batch size if a step of ``model`` on ``device`` did nothing but its matrix products.

    These are the ``matmuls`` rows (role ``"ceiling"``): the step's own
    matrix products at its exact shapes, timed alone in the same run; the
    floor behind the table's "x matmuls".
    """
    return {r["batch"]: r["samples_per_s"] for r in report["results"]
            if r["role"] == "ceiling" and r["model"] == model and r["device"] == device}


def build_figure(report: dict[str, Any]) -> Any:
    """The plot of :func:`plot_report` as a matplotlib ``Figure`` (drawn with the Agg canvas when saved).

    One panel per model.  A model measured at one batch size gets one
    horizontal bar per implementation and device; several batch sizes give
    throughput against batch size.  Every bar and point is labelled with its
    samples/s, the GEMM ceiling of :func:`gemm_ceiling` is drawn per device as
    a dotted line, and the legend (below each panel) names every bar, line and
    ceiling.
    """
    require_matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter, NullFormatter

    results = report["results"]
    models = list(dict.fromkeys(r["model"] for r in results if r["role"] != "ceiling"))
    figure = Figure(figsize=(6 * max(1, len(models)), 6), layout="constrained")
    axes = figure.subplots(1, max(1, len(models)), squeeze=False)[0]
    for ax, model in zip(axes, models, strict=False):
        rows = [r for r in results if r["model"] == model and r["role"] != "ceiling"]
        devices = list(dict.fromkeys(r["device"] for r in rows))
        batches = sorted({r["batch"] for r in rows})
        sizes = "-".join(map(str, rows[0]["sizes"]))
        colours = iter(f"C{i % 10}" for i in range(1000))
        if len(batches) == 1:
            names = [f"{r['implementation']} ({r['device']})" for r in rows]
            for position, (r, name) in enumerate(zip(rows, names, strict=True)):
                bars = ax.barh([position], [r["samples_per_s"]], color=next(colours), label=name)
                ax.bar_label(bars, labels=[_per_second(r["samples_per_s"])], padding=3, fontsize="small")
            ax.set_yticks(range(len(rows)), names, fontsize="small")
            ax.invert_yaxis()  # in the order measured: bpcore on top
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))
            ax.set_xlabel("samples per second")
            ax.set_title(f"{model}: {sizes}, batch {batches[0]}")
        else:
            series: dict[tuple[str, str], list[tuple[int, float]]] = {}
            for r in rows:
                key = (r["device"], r["implementation"])
                series.setdefault(key, []).append((r["batch"], r["samples_per_s"]))
            for (device, implementation), points in series.items():
                points.sort()
                style = "-" if implementation.startswith("bpcore") else "--"
                ax.plot([p[0] for p in points], [p[1] for p in points], style, marker="o",
                        color=next(colours), label=f"{implementation} ({device})")
                for batch, value in points:
                    ax.annotate(_per_second(value), (batch, value), textcoords="offset points", xytext=(4, 3),
                                fontsize="x-small")
            ax.set_xscale("log", base=2)
            ax.set_xticks(batches, [str(b) for b in batches])
            ax.set_xlabel("batch size")
            ax.set_ylabel("samples per second")
            ax.set_yscale("log")
            ax.yaxis.set_minor_formatter(NullFormatter())  # a narrow range would crowd the axis with labels
            ax.set_title(f"{model}: {sizes}")
        for device in devices:
            ceiling = gemm_ceiling(report, model, device)
            if not ceiling:
                continue
            label = f"GEMM ceiling ({device}): the step's matrix products alone"
            if len(batches) == 1:
                value = ceiling[batches[0]]
                ax.axvline(value, linestyle=":", linewidth=2, color="black",
                           label=f"{label}, {_per_second(value)}")
            else:
                shown = sorted(ceiling.items())
                ax.plot([b for b, _ in shown], [v for _, v in shown], ":", linewidth=2, color="black",
                        marker="_", markersize=12, label=label)
                for batch, value in shown:
                    ax.annotate(_per_second(value), (batch, value), textcoords="offset points", xytext=(4, 3),
                                fontsize="x-small")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=1)
    figure.suptitle(f"training throughput, {report['settings']['dtype']}, {report['settings']['optimizer']}")
    return figure


def plot_report(report: dict[str, Any], path: str | Path) -> None:
    """Draw :func:`build_figure` into ``path`` (the format follows its suffix, e.g. PNG)."""
    build_figure(report).savefig(path, dpi=120)
