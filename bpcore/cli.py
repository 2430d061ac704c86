"""The ``bpcore`` command line: one sub-command per module.

Each sub-command lives in its own module exposing ``add_parser(subparsers)``,
which registers the sub-command and sets ``handler`` (a function of the
parsed arguments returning the exit status).  Adding a sub-command is one
line in :data:`SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

SUBCOMMANDS: tuple[str, ...] = ("bpcore.info", "bpcore.bench")


def build_parser() -> argparse.ArgumentParser:
    """The ``bpcore`` argument parser with every sub-command registered."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="bpcore", description="bpcore: backpropagation on NumPy or CuPy.")
    parser.add_argument("--version", action="version", version=f"bpcore {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in SUBCOMMANDS:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``bpcore`` with ``argv`` (default: the process's arguments)."""
    import os
    import sys

    from .backends import DeviceError

    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except DeviceError as exc:  # a user's choice of device, not a bug: one line, no traceback
        print(f"bpcore: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # ``bpcore info | head``: the reader left; stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
