"""Hot operations, each declared once with its generic, CPU and CUDA versions.

Every module of this package is imported here, so that its declarations
register themselves: a new topic (``backends/ops/<topic>.py``) needs no line
added anywhere else.
"""

import importlib
import pkgutil

for _module in sorted(info.name for info in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")

from .activations import ACTIVATIONS, ActivationSpec  # noqa: E402
from .registry import OPERATIONS, Cuda, Numba, Operation, declare, register  # noqa: E402

__all__ = ["ACTIVATIONS", "OPERATIONS", "ActivationSpec", "Cuda", "Numba", "Operation", "declare", "register"]
