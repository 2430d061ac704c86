"""``bpcore bench``: how fast is my network on each device, against PyTorch and scikit-learn."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .baselines import BASELINES
from .models import MODEL_GROUPS, MODELS, STANDARD_MODELS
from .recurrent import GROUP as RECURRENT_GROUP
from .timing import Budget

DESCRIPTION = """\
Time a full training step (forward, cross-entropy, backward, Adam) of standard
MLPs (or, with --models cnn, of two CNNs) on every usable device, beside the device's own GEMM rate and copy
bandwidth and against the installed baselines (tutorial NumPy, PyTorch,
scikit-learn), all measured in the same run.  Prints a table; progress goes to
stderr.
"""


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _positive_ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in _names(text))
    except ValueError:
        values = ()
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def _positive_int(text: str) -> int:
    values = _positive_ints(text)
    if len(values) != 1:
        raise argparse.ArgumentTypeError(f"expected one positive integer, got {text!r}")
    return values[0]


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``bench`` on the ``bpcore`` command line."""
    parser = subparsers.add_parser(
        "bench", help="benchmark training speed on each device against baselines",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--models", type=_names, default=STANDARD_MODELS,
                        help=f"comma-separated models from {', '.join(MODELS)} or the groups "
                        f"{', '.join(MODEL_GROUPS)} (default: {','.join(STANDARD_MODELS)}); "
                        + "; ".join(f"{m.name} = {m.label} at batch {'/'.join(map(str, m.batch_sizes))}"
                                    for m in MODELS.values())
                        + f"; {RECURRENT_GROUP} = the recurrent models (LSTM, GRU and RNN on a series and on "
                        "characters) against PyTorch")
    parser.add_argument("--batch-sizes", type=_positive_ints, default=None,
                        help="comma-separated batch sizes for every model (default: each model's own)")
    parser.add_argument("--devices", type=_names, default=None,
                        help="comma-separated devices such as cpu,cuda:0 (default: every usable device)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--kernels", choices=("fused", "generic", "both"), default="fused",
                        help="bpcore's kernels: the compiled fused ones, the generic xp code, or both "
                        "(default: fused)")
    parser.add_argument("--baselines", type=_names, default=None,
                        help=f"comma-separated baselines from {', '.join(BASELINES)} (default: every "
                        "installed one, only the strongest for the wide model); 'none' for none")
    parser.add_argument("--repeats", type=_positive_int, default=Budget.repeats,
                        help="timed samples per measurement; their median is reported "
                        f"(default: {Budget.repeats})")
    parser.add_argument("--max-seconds", type=_seconds, default=Budget.max_seconds,
                        help="time allowed per model, batch size and family of implementations; fewer "
                        f"repeats (at least {Budget.min_repeats}, or --repeats if smaller) when exceeded "
                        f"(default: {Budget.max_seconds})")
    parser.add_argument("--json", metavar="FILE", help="also write the full report as JSON")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="draw each model's throughput (against batch size, or bars for one batch "
                             "size), every value labelled, with the GEMM ceiling (needs matplotlib)")
    parser.add_argument("--quiet", action="store_true", help="no progress messages")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the benchmark that ``args`` describe; returns the exit status."""
    from .report import format_report, plot_report, require_matplotlib, write_json
    from .runner import BenchConfig, run_benchmark

    if args.plot:
        try:
            require_matplotlib()  # fail before measuring, not after
        except ImportError as exc:
            print(f"bpcore bench: error: {exc}", file=sys.stderr)
            return 2
    baselines = () if args.baselines == ("none",) else args.baselines
    models = tuple(name for name in args.models if name != RECURRENT_GROUP)
    if RECURRENT_GROUP in args.models:
        return _run_recurrent(args, models, baselines)
    config = BenchConfig(
        models=models,
        batch_sizes=args.batch_sizes,
        devices=args.devices,
        dtype=args.dtype,
        kernels=("fused", "generic") if args.kernels == "both" else (args.kernels,),
        baselines=baselines,
        budget=Budget(repeats=args.repeats, min_repeats=min(Budget.min_repeats, args.repeats),
                      max_seconds=args.max_seconds),
    )

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    report = run_benchmark(config, None if args.quiet else progress)
    print(format_report(report))
    if args.json:
        write_json(report, args.json)
        print(f"wrote the JSON report to {args.json}")
    if args.plot:
        plot_report(report, args.plot)
        print(f"wrote the plot to {args.plot}")
    return 0


def _run_recurrent(args: argparse.Namespace, models: tuple[str, ...], baselines: Any) -> int:
    """``--models rnn``: the recurrent models against PyTorch (alone: other models are refused)."""
    from ..backends import available_devices, resolve_device
    from .recurrent import format_recurrent, run_recurrent
    from .report import write_json

    if models or args.plot:
        given = ", ".join(models) if models else "--plot"
        print(f"bpcore bench: error: --models {RECURRENT_GROUP} runs on its own (without {given}); "
              "run the other models in a second call", file=sys.stderr)
        return 2
    devices = ([str(resolve_device(name, origin="devices")) for name in args.devices] if args.devices
               else available_devices())
    budget = Budget(repeats=args.repeats, min_repeats=min(Budget.min_repeats, args.repeats),
                    max_seconds=args.max_seconds)

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    report = run_recurrent(batch_sizes=args.batch_sizes, devices=devices, budget=budget,
                           torch_baseline=baselines is None or "torch-adam-fused" in baselines,
                           progress=None if args.quiet else progress)
    print(format_recurrent(report))
    if args.json:
        write_json(report, args.json)
        print(f"wrote the JSON report to {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``bpcore bench`` on its own (used where the main ``bpcore`` command is not installed)."""
    parser = argparse.ArgumentParser(prog="bpcore")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args))
