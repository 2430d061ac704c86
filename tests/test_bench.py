"""``bpcore bench``: a tiny matrix end to end, the JSON report's schema, the plot, and bad input."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from bpcore.bench import baselines
from bpcore.bench.models import MODELS, get_model, synthetic_data
from bpcore.bench.runner import BenchConfig
from bpcore.bench.timing import Budget, Timed, measure_interleaved
from bpcore.cli import build_parser, main

TINY_RUN = ["bench", "--models", "tiny", "--batch-sizes", "8", "--repeats", "2", "--max-seconds", "0.2",
            "--baselines", "numpy-naive", "--devices", "cpu"]

ROW_TYPES = {
    "implementation": str, "label": str, "role": str, "device": str, "dtype": str, "model": str,
    "sizes": list, "batch": int, "ms_per_step": float, "ms_min": float, "ms_max": float, "samples": int,
    "steps_per_sample": int, "samples_per_s": float, "flops_per_step": int, "gflops": float,
    "pct_gemm": float, "notes": str,
}


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    folder = tmp_path_factory.mktemp("bench")
    out, png = folder / "report.json", folder / "plot.png"
    capture = pytest.MonkeyPatch()
    stdout, stderr = io.StringIO(), io.StringIO()
    capture.setattr(sys, "stdout", stdout)
    capture.setattr(sys, "stderr", stderr)
    try:
        status = main([*TINY_RUN, "--json", str(out), "--plot", str(png)])
    finally:
        capture.undo()
    assert status == 0
    return json.loads(out.read_text()), stdout.getvalue() + "\n--stderr--\n" + stderr.getvalue(), png


def test_bench_is_a_subcommand() -> None:
    args = build_parser().parse_args(["bench", "--models", "tiny,mnist", "--batch-sizes", "16,32"])
    assert args.models == ("tiny", "mnist")
    assert args.batch_sizes == (16, 32)


def test_report_schema(tiny_report: tuple[dict, str, Path]) -> None:
    report, _, _ = tiny_report
    assert report["schema"] == "bpcore-bench/1"
    assert {"created", "machine", "settings", "devices", "results", "skipped"} <= set(report)
    assert report["machine"]["cores"] >= 1 and report["machine"]["numpy"]
    during = report["machine"]["during_run"]
    assert during["wall_seconds"] > 0 and set(during) == {"wall_seconds", "other_processes_cpu_seconds"}
    (device,) = report["devices"]
    assert device["device"] == "cpu" and device["gemm_gflops"] > 0 and device["copy_gbps"] > 0
    assert {r["implementation"] for r in report["results"]} == {"bpcore", "matmuls", "numpy-naive"}
    for row in report["results"]:
        for key, kind in ROW_TYPES.items():
            assert isinstance(row[key], kind), (key, row[key])
        assert row["model"] == "tiny" and row["batch"] == 8 and row["sizes"] == [32, 64, 64, 2]
        assert row["ms_min"] <= row["ms_per_step"] <= row["ms_max"]
        assert row["samples_per_s"] == pytest.approx(8 / (row["ms_per_step"] / 1e3))
        assert row["flops_per_step"] == get_model("tiny").flops_per_step(8)
    bpcore_row = next(r for r in report["results"] if r["implementation"] == "bpcore")
    naive = next(r for r in report["results"] if r["implementation"] == "numpy-naive")
    assert naive["dtype"] == "float64" and bpcore_row["dtype"] == "float32"
    expected = bpcore_row["samples_per_s"] / naive["samples_per_s"]
    assert bpcore_row["ratios"]["numpy-naive"] == pytest.approx(expected)
    matmuls = next(r for r in report["results"] if r["implementation"] == "matmuls")
    assert bpcore_row["over_matmuls"] == pytest.approx(bpcore_row["ms_per_step"] / matmuls["ms_per_step"])


def test_table_and_progress(tiny_report: tuple[dict, str, Path]) -> None:
    _, output, _ = tiny_report
    table, _, progress = output.partition("--stderr--")
    for header in ("device", "samples/s", "ms/step", "GFLOP/s", "% GEMM", "x matmuls", "x numpy-naive"):
        assert header in table
    assert "cpu: GEMM" in progress and "tiny batch 8: bpcore" in progress


def test_plot_is_a_png(tiny_report: tuple[dict, str, Path]) -> None:
    _, _, png = tiny_report
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _row(model: str, batch: int, implementation: str, role: str, samples_per_s: float,
         device: str = "cpu") -> dict:
    return {"model": model, "batch": batch, "implementation": implementation, "role": role, "device": device,
            "samples_per_s": samples_per_s, "sizes": [4, 8, 2]}


def _texts(ax: object) -> list[str]:
    return [t.get_text() for t in ax.texts]  # type: ignore[attr-defined]


def _legend(ax: object) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]  # type: ignore[attr-defined]


def test_plot_of_one_batch_size_labels_every_bar_and_draws_the_gemm_ceiling(
        tiny_report: tuple[dict, str, Path]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    from bpcore.bench.report import build_figure

    report, _, _ = tiny_report  # a real run at one batch size: bpcore, numpy-naive and the matmuls ceiling
    (ax,) = [a for a in build_figure(report).axes if a.get_title()]
    measured = [r for r in report["results"] if r["role"] != "ceiling"]
    bars = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_width() > 0]
    assert sorted(b.get_width() for b in bars) == pytest.approx(sorted(r["samples_per_s"] for r in measured))
    labels = _texts(ax)
    assert len(labels) == len(measured) and all(label.endswith("/s") for label in labels)
    for bar, label in zip(sorted(bars, key=lambda b: b.get_width()), sorted(labels, key=_value), strict=True):
        assert _value(label) == pytest.approx(bar.get_width(), rel=5e-3)  # three significant digits
    ceiling = next(r for r in report["results"] if r["role"] == "ceiling")
    (line,) = [a for a in ax.lines if isinstance(a, Line2D) and a.get_label().startswith("GEMM ceiling")]
    assert line.get_xdata()[0] == pytest.approx(ceiling["samples_per_s"])  # a vertical line at its samples/s
    legend = _legend(ax)
    assert "bpcore (cpu)" in legend and "numpy-naive (cpu)" in legend
    assert any(text.startswith("GEMM ceiling (cpu): the step's matrix products alone") for text in legend)
    assert ax.get_title() == "tiny: 32-64-64-2, batch 8"


def _value(label: str) -> float:
    number = label.removesuffix("/s")
    scale = {"k": 1e3, "M": 1e6}.get(number[-1], 1.0)
    return float(number.rstrip("kM")) * scale


def test_plot_of_several_batch_sizes_and_devices(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from bpcore.bench.report import build_figure, plot_report

    results = [
        _row("m", 32, "bpcore", "bpcore", 1500.0), _row("m", 64, "bpcore", "bpcore", 2_500_000.0),
        _row("m", 32, "matmuls", "ceiling", 3000.0), _row("m", 64, "matmuls", "ceiling", 4_000_000.0),
        _row("m", 32, "bpcore", "bpcore", 900.0, "cuda:0"),
        _row("m", 64, "bpcore", "bpcore", 1800.0, "cuda:0"),
        _row("m", 32, "matmuls", "ceiling", 5000.0, "cuda:0"),
        _row("m", 64, "matmuls", "ceiling", 6000.0, "cuda:0"),
        _row("one", 16, "bpcore", "bpcore", 42.0), _row("one", 16, "matmuls", "ceiling", 99.0),
    ]
    report = {"results": results, "devices": [], "settings": {"dtype": "float32", "optimizer": "Adam"}}
    lines_axis, bars_axis = [a for a in build_figure(report).axes if a.get_title()]
    assert lines_axis.get_title() == "m: 4-8-2" and bars_axis.get_title() == "one: 4-8-2, batch 16"
    ceilings = {line.get_label(): list(line.get_ydata()) for line in lines_axis.lines
                if line.get_label().startswith("GEMM ceiling")}
    assert ceilings == {"GEMM ceiling (cpu): the step's matrix products alone": [3000.0, 4_000_000.0],
                        "GEMM ceiling (cuda:0): the step's matrix products alone": [5000.0, 6000.0]}
    texts = _texts(lines_axis)
    for value in ("1.5k/s", "2.5M/s", "900/s", "1.8k/s", "3k/s", "4M/s", "5k/s", "6k/s"):
        assert value in texts
    assert {"bpcore (cpu)", "bpcore (cuda:0)", *ceilings} <= set(_legend(lines_axis))
    assert _texts(bars_axis) == ["42/s"]
    assert "GEMM ceiling (cpu): the step's matrix products alone, 99/s" in _legend(bars_axis)
    plot_report(report, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_without_matplotlib_fails_before_measuring(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main([*TINY_RUN, "--plot", str(tmp_path / "x.png")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing was measured
    (line,) = captured.err.strip().splitlines()
    assert "--plot needs matplotlib" in line and "pip install" in line
    assert not (tmp_path / "x.png").exists()


def test_json_and_plot_say_what_they_wrote(tiny_report: tuple[dict, str, Path]) -> None:
    _, output, png = tiny_report
    table = output.partition("--stderr--")[0]
    assert f"wrote the plot to {png}" in table and "wrote the JSON report to " in table


def test_missing_baseline_is_reported_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    from bpcore.bench import runner

    missing = {name: "not installed here" for name in baselines.BASELINES}
    monkeypatch.setattr(baselines, "availability", lambda: missing)
    budget = Budget(repeats=1, min_repeats=1, max_seconds=0.05)
    config = BenchConfig(models=("tiny",), batch_sizes=(4,), devices=("cpu",), baselines=("sklearn",),
                         budget=budget)
    report = runner.run_benchmark(config)
    assert report["skipped"] == [{"implementation": "sklearn", "device": "*", "reason": "not installed here"}]
    assert {r["implementation"] for r in report["results"]} == {"bpcore", "matmuls"}


@pytest.mark.parametrize(("config", "message"), [
    ({"models": ("huge",)}, r"models: expected names from .*'huge'"),
    ({"models": ()}, r"models: expected at least one"),
    ({"batch_sizes": (0,)}, r"batch_sizes: expected a positive integer, got 0"),
    ({"dtype": "float16"}, r"dtype: expected 'float32' or 'float64'"),
    ({"kernels": ("fast",)}, r"kernels: expected 'fused' and/or 'generic', got 'fast'"),
    ({"baselines": ("jax",)}, r"baselines: expected names from .*'jax'"),
])
def test_bad_config(config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BenchConfig(**config)


def test_unusable_device_is_one_clear_error() -> None:
    from bpcore.backends import DeviceError

    with pytest.raises(DeviceError, match=r"devices: 'cuda:99' was asked for"):
        BenchConfig(models=("tiny",), devices=("cuda:99",)).resolved_devices()


@pytest.mark.parametrize("argv", [["--batch-sizes", "0"], ["--batch-sizes", "x"], ["--repeats", "1,2"],
                                  ["--max-seconds", "-1"], ["--dtype", "float16"]])
def test_bad_command_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["bench", *argv])
    assert exit_info.value.code == 2
    assert "bench: error: argument" in capsys.readouterr().err


def test_bad_budget() -> None:
    with pytest.raises(ValueError, match="repeats: expected a positive integer, got 0"):
        Budget(repeats=0)
    with pytest.raises(ValueError, match="max_seconds: expected a non-negative number of seconds"):
        Budget(max_seconds=-1.0)


def test_flops_per_step() -> None:
    mnist = MODELS["mnist"]
    assert mnist.flops_per_step(128) == 3 * 2 * 128 * (784 * 256 + 256 * 128 + 128 * 10)
    assert mnist.parameter_count == 235_146
    assert MODELS["wide"].sizes == (784, 4096, 4096, 10) and MODELS["tiny"].sizes == (32, 64, 64, 2)


def test_synthetic_data_shapes_and_errors() -> None:
    data = synthetic_data(MODELS["tiny"], 1000, "float32")
    assert data.x.shape == (9000, 32) and data.x.dtype.name == "float32" and data.batches == 9
    assert data.labels.min() >= 0 and data.labels.max() == 1
    with pytest.raises(ValueError, match="batch: expected a positive integer, got 0"):
        synthetic_data(MODELS["tiny"], 0, "float32")


class FakeClock:
    """A clock advanced by the measured function: each step costs ``cost`` seconds, the first call more."""

    def __init__(self) -> None:
        self.now = 0.0
        self.started = 0.0

    def start(self) -> None:
        self.started = self.now

    def stop(self) -> float:
        return self.now - self.started


def test_warm_up_is_excluded_and_median_taken() -> None:
    clock = FakeClock()
    costs = iter([1.0] + [0.001] * 10_000)  # the first step pays a compilation

    def run(steps: int) -> None:
        for _ in range(steps):
            clock.now += next(costs)

    budget = Budget(repeats=5, min_repeats=3, sample_seconds=0.01, warmup_seconds=0.004, max_seconds=10.0)
    result = measure_interleaved([Timed("x", run, clock)], budget)["x"]
    assert result.median == pytest.approx(0.001)
    assert result.samples == 5 and result.steps_per_sample == 10


def test_repeats_shrink_to_the_time_budget_but_not_below_the_minimum() -> None:
    clock = FakeClock()

    def run(steps: int) -> None:
        clock.now += 0.5 * steps

    budget = Budget(repeats=7, min_repeats=3, sample_seconds=0.01, warmup_seconds=0.0, max_seconds=1.0)
    result = measure_interleaved([Timed("slow", run, clock)], budget)["slow"]
    assert result.samples == 3 and result.steps_per_sample == 1
    with pytest.raises(ValueError, match="names must be unique"):
        measure_interleaved([Timed("a", run, clock), Timed("a", run, clock)], budget)


def test_samples_run_whole_multiples_of_min_steps() -> None:
    clock = FakeClock()
    calls: list[int] = []

    def run(steps: int) -> None:
        calls.append(steps)
        clock.now += 0.001 * steps

    budget = Budget(repeats=3, min_repeats=3, sample_seconds=0.05, warmup_seconds=0.0, max_seconds=10.0)
    result = measure_interleaved([Timed("pass", run, clock, min_steps=8)], budget)["pass"]
    assert all(steps % 8 == 0 for steps in calls)
    assert result.steps_per_sample == 48 and result.median == pytest.approx(0.001)


@pytest.mark.slow
def test_cnn_models_run_with_their_gemm_floor_and_are_not_in_the_standard_matrix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "lenet" not in BenchConfig().models and "digits-cnn" not in BenchConfig().models
    assert BenchConfig(models=("cnn", "lenet", "tiny")).models == ("lenet", "digits-cnn", "tiny")
    out = tmp_path / "cnn.json"
    status = main(["bench", "--models", "cnn", "--batch-sizes", "2", "--repeats", "1",
                   "--max-seconds", "0.05", "--baselines", "sklearn", "--devices", "cpu", "--quiet",
                   "--json", str(out)])
    assert status == 0
    table = capsys.readouterr().out
    assert "digits-cnn" in table and "convolutions as im2col products" in table and "x matmuls" in table
    report = json.loads(out.read_text())
    rows = {(r["model"], r["implementation"]): r for r in report["results"]}
    assert set(rows) == {(m, i) for m in ("lenet", "digits-cnn") for i in ("bpcore", "matmuls")}
    lenet = rows["lenet", "bpcore"]
    # conv 1->32 on 28x28 and 32->64 on 14x14 (im2col widths 9 and 288), Dense 3136->128->10
    forward = 32 * 9 * 2 * 784 + 64 * 288 * 2 * 196 + 2 * (3136 * 128 + 128 * 10)
    assert lenet["flops_per_step"] == 3 * 2 * forward and lenet["sizes"] == [1, 32, 64, 128, 10]
    floor = rows["lenet", "matmuls"]
    assert floor["role"] == "ceiling" and lenet["over_matmuls"] == pytest.approx(
        lenet["ms_per_step"] / floor["ms_per_step"]
    )
    assert [s["implementation"] for s in report["skipped"]] == ["sklearn", "sklearn"]
    assert all("no convolutional network" in s["reason"] for s in report["skipped"])


def test_recurrent_models_run_and_print_their_table(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "rnn.json"
    status = main(["bench", "--models", "rnn", "--batch-sizes", "2", "--repeats", "1", "--max-seconds",
                   "0.05", "--baselines", "none", "--devices", "cpu", "--quiet", "--json", str(out)])
    assert status == 0
    table = capsys.readouterr().out
    from bpcore.bench.recurrent import RECURRENT_MODELS

    report = json.loads(out.read_text())
    assert [row["model"] for row in report["results"]] == list(RECURRENT_MODELS)
    assert all(row["batch"] == 2 and row["ms"]["bpcore"] > 0 for row in report["results"])
    assert "lstm-char" in table and "PyTorch not measured: not asked for" in table


def test_recurrent_models_refuse_company(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--models", "rnn,tiny"]) == 2
    assert "--models rnn runs on its own (without tiny)" in capsys.readouterr().err


@pytest.mark.slow
def test_the_pytorch_process_answers_its_commands() -> None:
    pytest.importorskip("torch", reason="PyTorch is not installed (comparison only)")
    from bpcore.bench.recurrent import serve_torch

    commands = [{"op": "threads"}, {"op": "build", "model": "gru-series", "batch": 2, "device": "cpu",
                                    "seconds": 0.001, "threads": [1]},
                {"op": "sample", "threads": 1}, {"op": "sample", "threads": 3}, {"op": "quit"}]
    stdout = io.StringIO()
    serve_torch(io.StringIO("".join(json.dumps(c) + "\n" for c in commands)), stdout)
    answers = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert answers[0]["threads"] >= 1 and answers[1] == {"ok": True} and answers[2]["seconds"] > 0
    assert "KeyError" in answers[3]["error"] and answers[4] == {"ok": True}


def test_the_pytorch_process_starts_without_a_double_import_warning() -> None:
    # The recurrent bench starts PyTorch's process as ``-m bpcore.bench.recurrent_worker``; a module that
    # the package imports, run as ``-m`` itself, is imported twice and Python warns so on stderr.
    import subprocess

    done = subprocess.run([sys.executable, "-m", "bpcore.bench.recurrent_worker"], input='{"op": "quit"}\n',
                          capture_output=True, text=True, timeout=120)
    assert "found in sys.modules" not in done.stderr
    if done.returncode == 0:  # PyTorch installed: it answered the quit
        assert json.loads(done.stdout) == {"ok": True}
    else:
        assert "No module named 'torch'" in done.stderr


def test_recurrent_samples_wait_for_idle_threads_at_each_change_of_library(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each round samples bpcore (its settings in turn), then PyTorch (its settings in turn): one wait
    # before each library's first sample, none between the settings of one library, and the waits
    # not counted against the budget's max_seconds.
    from bpcore.bench import recurrent
    from bpcore.bench.timing import Budget

    order: list[str] = []
    import time

    def wait() -> None:
        order.append("wait")
        time.sleep(0.02)  # longer than max_seconds below: counted, it would end the rounds after one

    monkeypatch.setattr(recurrent, "let_idle_threads_sleep", wait)
    monkeypatch.setattr(recurrent, "_timed",
                        lambda step, seconds, sync: lambda: order.append("bpcore") or 1e-3)
    monkeypatch.setattr(recurrent, "_blas_threads", lambda: 2)
    monkeypatch.setattr(recurrent, "_on_one_blas_thread",
                        lambda sample: lambda: order.append("bpcore-1t") or 1e-3)

    class Worker:
        default_threads = 2

        def ask(self, **command: object) -> dict[str, object]:
            if command["op"] == "sample":
                order.append(f"torch-{command['threads']}t")
                return {"seconds": 1e-3}
            return {"ok": True}

    budget = Budget(repeats=3, min_repeats=1, sample_seconds=0.0, warmup_seconds=0.0, max_seconds=0.01)
    row = recurrent.measure_case(recurrent.RECURRENT_MODELS["rnn-series"], 2, "cpu", budget, Worker())
    assert row["rounds"] == 3
    measured = order[order.index("wait"):]  # after the warm-up's one call of each
    assert measured == ["wait", "bpcore", "bpcore-1t", "wait", "torch-2t", "torch-1t"] * 3
