"""Median of bpcore's ratios over several ``bpcore bench --json`` reports of the same matrix.

One run on a shared machine can be hit by other processes; the issue's reference numbers are medians of
runs too.  Prints a Markdown table: per device, model and batch size, bpcore's samples/s and each ratio
(x matmuls, x baseline) as the median over the runs, with the individual runs' values beside it.

    python benchmarks/summarize_runs.py run1.json run2.json run3.json
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def summarize(paths: list[str]) -> str:
    reports = [json.loads(Path(p).read_text()) for p in paths]
    cells: dict[tuple[str, str, int], dict[str, list[float]]] = {}
    for report in reports:
        for row in report["results"]:
            if row["implementation"] != "bpcore":
                continue
            key = (row["device"], row["model"], row["batch"])
            cell = cells.setdefault(key, {})
            cell.setdefault("samples/s", []).append(row["samples_per_s"])
            cell.setdefault("ms/step", []).append(row["ms_per_step"])
            if row.get("over_matmuls"):
                cell.setdefault("x matmuls (time)", []).append(row["over_matmuls"])
            for baseline, ratio in row.get("ratios", {}).items():
                cell.setdefault(f"x {baseline}", []).append(ratio)
    columns = list(dict.fromkeys(name for cell in cells.values() for name in cell))
    lines = ["| device | model | batch | " + " | ".join(columns) + " |",
             "|---|---|---:|" + "---:|" * len(columns)]
    for (device, model, batch), cell in cells.items():
        values = []
        for name in columns:
            runs = cell.get(name)
            if not runs:
                values.append("-")
                continue
            digits = 0 if name == "samples/s" else 3 if name == "ms/step" else 2
            runs_text = "/".join(f"{v:,.{digits}f}" for v in runs)
            values.append(f"**{statistics.median(runs):,.{digits}f}** ({runs_text})")
        lines.append(f"| {device} | {model} | {batch} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    print(summarize(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
