"""The ``bpcore`` command line: one sub-command per module.

Each sub-command lives in its own module exposing ``add_parser(subparsers)``,
which registers the sub-command and sets ``handler`` (a function of the
parsed arguments returning the exit status).  Adding a sub-command is one
line in :data:`SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

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


def device_errors_as_one_line(program: str, run: Callable[[], object]) -> int:
    """``run()``'s exit status (0 unless it returns an int), a DeviceError as one line and status 2.

    A device the user asked for and cannot have is their choice, not a bug:
    it gets the error's own sentence, not a traceback.  The ``bpcore``
    command and the examples share this.
    """
    from .backends import DeviceError

    try:
        status = run()
        return status if isinstance(status, int) else 0
    except DeviceError as exc:
        print(f"{program}: error: {exc}", file=sys.stderr)
        return 2


def run_script(main: Callable[[], object]) -> NoReturn:
    """Exit with ``main()``'s status, a device error as one line (the examples' ``__main__``)."""
    sys.exit(device_errors_as_one_line(os.path.basename(sys.argv[0]), main))


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``bpcore`` with ``argv`` (default: the process's arguments)."""
    args = build_parser().parse_args(argv)
    try:
        return device_errors_as_one_line("bpcore", lambda: args.handler(args))
    except BrokenPipeError:  # ``bpcore info | head``: the reader left; stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
