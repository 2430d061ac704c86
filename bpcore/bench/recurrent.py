"""``bpcore bench --models rnn``: recurrent training steps against PyTorch, side by side in one run.

The models (float32, Adam with lr 1e-3, one training step = forward, loss,
backward, optimiser step):

* ``series``: a cell (LSTM, GRU or plain tanh RNN) over a series of T=50
  steps with 1 feature, hidden size 64, its last state into Dense(64, 1),
  mean squared error; batch 32 and 128;
* ``char``: a character model, vocabulary 65, Embedding(65, 32), the cell
  with hidden size 128 over T=64 steps returning every step, Dense(128, 65)
  and cross-entropy at every step; batch 32.

bpcore and PyTorch (``Adam(fused=True)``; with its default thread count and
with one thread, the ratio taken against the faster) are sampled in turn,
round after round, so that a change of load on the machine hits both.
PyTorch runs in a process of its own (``python -m bpcore.bench.recurrent_worker``,
driven over a pipe), and each library's samples of a round start only once
the other library's idle threads have gone to sleep
(:func:`~bpcore.bench.timing.let_idle_threads_sleep`): OpenBLAS's workers
spin for about 0.1 s after a product, and PyTorch on two threads, sampled in
that window, ran on one core and a half.  bpcore runs as a user gets it, in the same two
settings as PyTorch: the process's default BLAS thread count, which its
large products use (the input projection, the weight gradients, the output
layer) while the library runs the time loop's small ones on one BLAS thread
(:mod:`bpcore.backends.blas_threads`); and the whole process on one BLAS
thread (``OPENBLAS_NUM_THREADS=1`` for a user), which a machine whose other
core is busy favours.  Each result is the median seconds per step; the ratio
is PyTorch's median time over bpcore's, the faster setting of each (above 1:
bpcore is faster), with its spread over the per-round ratios.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .timing import Budget, let_idle_threads_sleep

CELLS = ("lstm", "gru", "rnn")
LEARNING_RATE = 1e-3


@dataclasses.dataclass(frozen=True)
class RecurrentSpec:
    """One benchmarked recurrent model."""

    name: str
    cell: str  # "lstm", "gru" or "rnn"
    task: str  # "series" (last state -> 1 output, MSE) or "char" (every step -> vocabulary, cross-entropy)
    steps: int
    hidden: int
    batch_sizes: tuple[int, ...]
    features: int = 1
    vocabulary: int = 65
    embedding: int = 32

    @property
    def label(self) -> str:
        if self.task == "series":
            return f"{self.cell.upper()} series T={self.steps}, 1 input, hidden {self.hidden}, last step -> 1"
        return (f"{self.cell.upper()} characters T={self.steps}, vocabulary {self.vocabulary}, embedding "
                f"{self.embedding}, hidden {self.hidden}, loss at every step")


RECURRENT_MODELS: dict[str, RecurrentSpec] = {
    spec.name: spec
    for cell in CELLS
    for spec in (
        RecurrentSpec(f"{cell}-series", cell, "series", 50, 64, (32, 128)),
        RecurrentSpec(f"{cell}-char", cell, "char", 64, 128, (32,)),
    )
}
#: The name ``--models`` takes for all of them.
GROUP = "rnn"


def _data(spec: RecurrentSpec, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if spec.task == "series":
        x = rng.standard_normal((batch, spec.steps, spec.features)).astype(np.float32)
        return x, rng.standard_normal((batch, 1)).astype(np.float32)
    tokens = rng.integers(0, spec.vocabulary, size=(batch, spec.steps + 1))
    return tokens[:, :-1], tokens[:, 1:]


def bpcore_step(spec: RecurrentSpec, batch: int, device: str, seed: int = 0) -> Callable[[], Any]:
    """One bpcore training step of ``spec`` (the custom-loop fast path: inputs already on the device)."""
    from ..layers import GRU, LSTM, RNN, Dense, Embedding
    from ..losses import MSE, CrossEntropy
    from ..network import Network
    from ..optim import Adam

    cell = {"lstm": LSTM, "gru": GRU, "rnn": RNN}[spec.cell]
    if spec.task == "series":
        layers = [cell(spec.features, spec.hidden), Dense(spec.hidden, 1)]
        criterion: Any = MSE()
    else:
        layers = [Embedding(spec.vocabulary, spec.embedding),
                  cell(spec.embedding, spec.hidden, return_sequences=True),
                  Dense(spec.hidden, spec.vocabulary)]
        criterion = CrossEntropy()
    network = Network(layers, seed=seed, device=device)
    optimizer = Adam(network.parameters(), lr=LEARNING_RATE)
    x, y = _data(spec, batch, np.random.default_rng(seed))
    xb = network.as_input(x)
    yb = network.backend.asarray(y)

    def step() -> None:
        out = network.forward(xb, training=True, check=False)
        criterion(out, yb, check=False)
        network.zero_grad()
        network.backward(criterion.backward(), check=False, input_grad=False)
        optimizer.step()

    return step


def torch_step(spec: RecurrentSpec, batch: int, device: str, seed: int = 0) -> Callable[[], Any]:
    """PyTorch eager doing the same step (``torch.optim.Adam(fused=True)``)."""
    import torch

    torch.manual_seed(seed)
    cell = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[spec.cell]
    target_device = torch.device("cuda" if device.startswith("cuda") else "cpu")
    x, y = _data(spec, batch, np.random.default_rng(seed))
    modules: list[Any]
    if spec.task == "series":
        modules = [cell(spec.features, spec.hidden, batch_first=True), torch.nn.Linear(spec.hidden, 1)]
    else:
        modules = [torch.nn.Embedding(spec.vocabulary, spec.embedding),
                   cell(spec.embedding, spec.hidden, batch_first=True),
                   torch.nn.Linear(spec.hidden, spec.vocabulary)]
    modules = [module.to(target_device) for module in modules]
    parameters = [p for module in modules for p in module.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=LEARNING_RATE, fused=True)
    xt = torch.from_numpy(x).to(target_device)
    yt = torch.from_numpy(y).to(target_device)

    def step() -> None:
        optimizer.zero_grad()
        if spec.task == "series":
            out, _ = modules[0](xt)
            loss = torch.nn.functional.mse_loss(modules[1](out[:, -1]), yt)
        else:
            out, _ = modules[1](modules[0](xt))
            logits = modules[2](out)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, spec.vocabulary), yt.reshape(-1))
        loss.backward()
        optimizer.step()

    return step


def _timed(step: Callable[[], Any], seconds: float, synchronize: Callable[[], Any]) -> Callable[[], float]:
    """A sampler: runs whole steps for about ``seconds``, returns seconds per step."""
    steps = 1

    def sample() -> float:
        nonlocal steps
        started = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize()
        elapsed = time.perf_counter() - started
        per_step = elapsed / steps
        steps = max(1, round(seconds / per_step)) if per_step > 0 else steps
        return per_step

    return sample


def _synchronizer(device: str) -> Callable[[], Any]:
    # The benchmarked GPU itself, not the thread's current one (cupy.cuda.get_current_stream()
    # is the current device's stream, GPU 0 for a step on cuda:1).
    if device.startswith("cuda"):
        from ..backends import get_backend

        return get_backend(device).synchronize
    return lambda: None


class TorchWorker:
    """PyTorch's steps, measured in a process of its own and driven over a pipe (see the module docstring)."""

    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([root, env["PYTHONPATH"]]) if env.get("PYTHONPATH") else root
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bpcore.bench.recurrent_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )
        self.default_threads = int(self.ask(op="threads")["threads"])

    def ask(self, **command: Any) -> dict[str, Any]:
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps(command) + "\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"the PyTorch benchmark process ended (exit status {self._process.wait()})")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"the PyTorch benchmark process failed:\n{answer['error']}")
        return dict(answer)

    def close(self) -> None:
        if self._process.poll() is None:
            with contextlib.suppress(OSError, RuntimeError):
                self.ask(op="quit")
        self._process.wait()


def serve_torch(stdin: Any = None, stdout: Any = None) -> None:
    """The PyTorch process: answer ``threads``, ``build``, ``sample`` and ``quit`` commands (JSON lines)."""
    import torch

    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    default = torch.get_num_threads()
    samplers: dict[int, Callable[[], float]] = {}
    for line in stdin:
        command = json.loads(line)
        try:
            if command["op"] == "quit":
                answer: dict[str, Any] = {"ok": True}
            elif command["op"] == "threads":
                answer = {"threads": default}
            elif command["op"] == "build":
                step = torch_step(RECURRENT_MODELS[command["model"]], command["batch"], command["device"])
                sync = torch.cuda.synchronize if command["device"].startswith("cuda") else (lambda: None)
                samplers = {count: _timed(step, command["seconds"], sync) for count in command["threads"]}
                answer = {"ok": True}
            else:
                torch.set_num_threads(command["threads"])
                answer = {"seconds": samplers[command["threads"]]()}
        except Exception as exc:  # reported to the parent, which raises it
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        stdout.write(json.dumps(answer) + "\n")
        stdout.flush()
        if command.get("op") == "quit":
            return


def _remote_sampler(worker: TorchWorker, threads: int) -> Callable[[], float]:
    def sample() -> float:
        return float(worker.ask(op="sample", threads=threads)["seconds"])

    return sample


def measure_case(
    spec: RecurrentSpec, batch: int, device: str, budget: Budget, torch: TorchWorker | None
) -> dict[str, Any]:
    """bpcore's and PyTorch's step for one model and batch size, interleaved; one report row.

    Each library runs at its default thread count and on one thread, and
    the ratio is taken between the faster of each (``bpcore`` is the
    default, ``bpcore-1t`` the process's BLAS limited to one thread, what
    ``OPENBLAS_NUM_THREADS=1`` gives a user; only on the CPU, where
    threadpoolctl is installed and the default is more than one thread).
    """
    step = _timed(bpcore_step(spec, batch, device), budget.sample_seconds, _synchronizer(device))
    samplers: dict[str, Callable[[], float]] = {"bpcore": step}
    if not device.startswith("cuda") and _blas_threads() not in ("default", 1):
        samplers["bpcore-1t"] = _on_one_blas_thread(step)
    if torch is not None:
        counts = sorted({torch.default_threads, 1}, reverse=True)
        torch.ask(op="build", model=spec.name, batch=batch, device=device, seconds=budget.sample_seconds,
                  threads=counts)
        for count in counts:
            samplers[f"torch-{count}t"] = _remote_sampler(torch, count)
    samples: dict[str, list[float]] = {name: [] for name in samplers}
    warm_until = time.perf_counter() + budget.warmup_seconds
    while True:  # warm-up: compilation, allocation, caches; at least one call each
        for sample in samplers.values():
            sample()
        if time.perf_counter() >= warm_until:
            break
    measured = 0.0  # seconds of sampling, the waits between the libraries not counted
    for done in range(1, budget.repeats + 1):
        previous = ""
        for name, sample in samplers.items():
            library = name.split("-")[0]  # "bpcore" or "torch"
            if library != previous:
                let_idle_threads_sleep()
                previous = library
            started = time.perf_counter()
            samples[name].append(sample())
            measured += time.perf_counter() - started
        if done >= budget.min_repeats and measured > budget.max_seconds:
            break
    row: dict[str, Any] = {
        "model": spec.name, "label": spec.label, "batch": batch, "device": device,
        "ms": {name: 1e3 * statistics.median(values) for name, values in samples.items()},
        "rounds": len(samples["bpcore"]),
    }
    ours = min((name for name in samples if name.startswith("bpcore")),
               key=lambda name: statistics.median(samples[name]))
    row["bpcore"] = ours
    torch_names = [name for name in samples if name.startswith("torch")]
    if torch_names:
        best = min(torch_names, key=lambda name: statistics.median(samples[name]))
        per_round = [t / b for t, b in zip(samples[best], samples[ours], strict=True)]
        row.update(torch=best, ratio=statistics.median(per_round), ratio_min=min(per_round),
                   ratio_max=max(per_round))
    return row


def _on_one_blas_thread(sample: Callable[[], float]) -> Callable[[], float]:
    """``sample`` with the process's BLAS limited to one thread while it runs."""
    from threadpoolctl import threadpool_limits

    def limited() -> float:
        with threadpool_limits(1, user_api="blas"):
            return sample()

    return limited


def run_recurrent(
    models: tuple[str, ...] | None = None,
    *,
    batch_sizes: tuple[int, ...] | None = None,
    devices: list[str],
    budget: Budget,
    torch_baseline: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure the recurrent models (all by default) on ``devices``; returns a JSON-compatible report."""
    from . import baselines

    names = tuple(RECURRENT_MODELS) if models is None else models
    for name in names:
        if name not in RECURRENT_MODELS:
            raise ValueError(f"models: expected names from {sorted(RECURRENT_MODELS)}, got {name!r}")
    reason = baselines.availability().get("torch-adam-fused") if torch_baseline else "not asked for"
    rows = []
    torch = TorchWorker() if reason is None else None
    try:
        for device in devices:
            for name in names:
                spec = RECURRENT_MODELS[name]
                for batch in batch_sizes or spec.batch_sizes:
                    if progress is not None:
                        progress(f"{spec.name} at batch {batch} on {device}")
                    rows.append(measure_case(spec, batch, device, budget, torch))
    finally:
        if torch is not None:
            torch.close()
    return {"models": {name: RECURRENT_MODELS[name].label for name in names}, "results": rows,
            "torch": None if reason is None else str(reason),
            "bpcore_blas_threads": _blas_threads()}


def _blas_threads() -> Any:
    """The process's BLAS thread count (bpcore's large products; its time loops take one), or "default"."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "default"
    counts = [info["num_threads"] for info in threadpool_info() if info.get("user_api") == "blas"]
    return max(counts) if counts else "default"


def format_recurrent(report: dict[str, Any]) -> str:
    """The recurrent report as a table: bpcore and PyTorch ms per step, and the ratio with its spread."""
    lines = ["Recurrent training steps (forward, loss, backward, Adam), float32; ratio = PyTorch time / "
             "bpcore time (> 1: bpcore faster), median and range over interleaved rounds; each library at "
             "the faster of its default thread count and one thread (in brackets)"]
    header = (f"{'model':<12} {'batch':>5} {'device':<7} {'bpcore ms':>14} {'torch ms':>14} {'ratio':>6}"
              "  range")
    lines += [header, "-" * len(header)]
    threads = report.get("bpcore_blas_threads", "default")
    default = f"{threads}t" if isinstance(threads, int) else "default"
    for row in report["results"]:
        ours = row.get("bpcore", "bpcore")
        ours_text = f"{row['ms'][ours]:.2f} ({'1t' if ours == 'bpcore-1t' else default})"
        torch_text, ratio_text, spread = "-", "-", ""
        if "ratio" in row:
            torch_text = f"{row['ms'][row['torch']]:.2f} ({row['torch'].removeprefix('torch-')})"
            ratio_text = f"{row['ratio']:.2f}"
            spread = f"{row['ratio_min']:.2f}-{row['ratio_max']:.2f}"
        lines.append(f"{row['model']:<12} {row['batch']:>5} {row['device']:<7} {ours_text:>14} "
                     f"{torch_text:>14} {ratio_text:>6}  {spread}")
    if report.get("torch"):
        lines.append(f"PyTorch not measured: {report['torch']}")
    for name, label in report["models"].items():
        lines.append(f"  {name}: {label}")
    return "\n".join(lines)

