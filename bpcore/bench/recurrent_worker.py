"""PyTorch's side of the recurrent benchmark in a process of its own.

Run as ``python -m bpcore.bench.recurrent_worker``.

A module apart from :mod:`bpcore.bench.recurrent`, which the package imports
(its command line needs the model group): run as ``-m`` itself, that module
would be imported twice and Python warns so on stderr.
"""

from .recurrent import serve_torch

if __name__ == "__main__":
    serve_torch()
