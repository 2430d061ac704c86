"""benchmarks/gpu_check.py without a GPU: its deadline, its incremental report and section isolation.

The runner is given sections of our own (small Python children that pass,
fail, hang or read the report while it is being written); the real sections'
code is dry-run on the CPU (``--device cpu``) so that it is known to run
before it meets a GPU.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_check() -> Any:
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["gpu_check"]
        raise
    return module


def child(code: str) -> tuple[str, ...]:
    """A section child: ``code`` runs with ``result``, ``lines`` and ``out`` (paths) defined."""
    prelude = "import json, sys, time, pathlib; result, lines, out = map(pathlib.Path, sys.argv[1:4])\n"
    return (sys.executable, "-c", prelude + code, "{result}", "{lines}", "{out}")


PASS = child(
    "lines.open('a').write(json.dumps({'kind': 'probe', 'value': 1}) + '\\n')\n"
    "result.write_text(json.dumps({'passed': True, 'summary': 'fine', 'markdown': '| a |'}))"
)
FAIL = child("print('boom: the CUDA driver said no', flush=True); sys.exit(3)")
# Passes only if the two earlier sections are already in the report while it runs.
READS_REPORT = child(
    "text = (out / 'report.md').read_text()\n"
    "seen = ('1. first: PASSED' in text, '2. second: FAILED' in text)\n"
    "jsonl = [json.loads(l) for l in (out / 'results.jsonl').read_text().splitlines()]\n"
    "ok = all(seen) and [j.get('verdict') for j in jsonl if 'verdict' in j] == ['passed', 'failed']\n"
    "result.write_text(json.dumps({'passed': ok, 'summary': f'seen {seen}'}))"
)
HANGS = child(
    "lines.open('a').write(json.dumps({'kind': 'partial', 'value': 7}) + '\\n')\n"
    "print('started', flush=True); time.sleep(60)"
)


def _sections(gpu_check: Any, *specs: tuple[str, tuple[str, ...], float]) -> list[Any]:
    return [gpu_check.Section(name, name, argv, cap) for name, argv, cap in specs]


def test_a_failing_section_never_stops_the_next_and_each_is_written_when_it_ends(
    gpu_check: Any, tmp_path: Path
) -> None:
    sections = _sections(gpu_check, ("first", PASS, 30), ("second", FAIL, 30), ("third", READS_REPORT, 30))
    outcomes = gpu_check.run_sections(sections, tmp_path, 60, echo=lambda _: None)
    assert [o.status for o in outcomes] == ["passed", "failed", "passed"], [o.summary for o in outcomes]
    assert outcomes[1].returncode == 3
    # The failing child's whole output is kept, and its tail is in the report.
    assert "boom: the CUDA driver said no" in (tmp_path / "second.log").read_text()
    report = (tmp_path / "report.md").read_text()
    assert "boom: the CUDA driver said no" in report and "| a |" in report
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert {"section": "first", "kind": "probe", "value": 1} in records
    assert [r["verdict"] for r in records if "verdict" in r] == ["passed", "failed", "passed"]


def test_the_deadline_stops_a_hanging_section_and_keeps_its_partial_results(
    gpu_check: Any, tmp_path: Path
) -> None:
    sections = _sections(gpu_check, ("hangs", HANGS, 600), ("after", PASS, 600))
    started = time.monotonic()
    outcomes = gpu_check.run_sections(sections, tmp_path, 3, echo=lambda _: None, start_margin=1)
    assert time.monotonic() - started < 15  # 3 s, then the child is stopped
    assert [o.status for o in outcomes] == ["timed out", "not run"]
    assert "deadline" in outcomes[1].summary
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert {"section": "hangs", "kind": "partial", "value": 7} in records
    assert "started" in (tmp_path / "hangs.log").read_text()
    assert "stopped after 3 s" in outcomes[0].summary


def test_a_section_gets_its_cap_not_more(gpu_check: Any, tmp_path: Path) -> None:
    outcomes = gpu_check.run_sections(
        _sections(gpu_check, ("hangs", HANGS, 2), ("after", PASS, 30)), tmp_path, 60, echo=lambda _: None
    )
    assert [o.status for o in outcomes] == ["timed out", "passed"]
    assert outcomes[0].seconds < 10


def test_the_exit_status_is_zero_only_if_every_section_passed(
    gpu_check: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = gpu_check.main(["--out", str(tmp_path), "--seconds", "60", "--sections", "versions"])
    report = (tmp_path / "report.md").read_text()
    assert ("1. Versions and devices: PASSED" in report) == (code == 0)
    assert f"report: {tmp_path / 'report.md'}" in capsys.readouterr().out.splitlines()[-1]


def test_unknown_sections_are_refused(gpu_check: Any, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no-such-section"):
        gpu_check.main(["--out", str(tmp_path), "--sections", "versions,no-such-section"])


def test_the_real_probes_run_as_a_cpu_dry_run(gpu_check: Any, tmp_path: Path) -> None:
    # --device cpu runs the sections' own code on the CPU: the script is known to run before a GPU sees it.
    code = gpu_check.main(
        ["--out", str(tmp_path), "--seconds", "120", "--device", "cpu", "--sections", "bugs"]
    )
    report = (tmp_path / "report.md").read_text()
    assert code == 0, report
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    probes = [r for r in records if r.get("kind") == "bug-probe"]
    assert len(probes) == 2 + 8 and all(r["passed"] for r in probes)
