"""``bpcore bench``: training speed on each device, beside its ceilings and against baselines.

Everything is measured in one run: the device's GEMM rate and copy
bandwidth, bpcore's training step, the step's matrix products alone, and
the installed baselines (tutorial-style NumPy, PyTorch, scikit-learn), so
that every ratio compares numbers taken under the same conditions.
:func:`add_parser` registers the ``bench`` sub-command of the ``bpcore``
command line.
"""

from .cli import add_parser
from .models import MODELS, ModelSpec, get_model
from .runner import BenchConfig, run_benchmark
from .timing import Budget, Measurement, measure

__all__ = [
    "MODELS", "BenchConfig", "Budget", "Measurement", "ModelSpec", "add_parser", "get_model", "measure",
    "run_benchmark",
]
