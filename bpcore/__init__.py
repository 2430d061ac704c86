"""bpcore: small, transparent, fast backpropagation on NumPy or CuPy.

Network, loss and optimiser code is written once against an ``xp`` array
module; ``BPCORE_DEVICE`` (``cpu``, ``cuda``, ``cuda:N``, ``auto``) or
:func:`set_device` / :func:`use_device` pick where it runs.  Importing bpcore
never touches a GPU.

The layers of the library, bottom up: :mod:`bpcore.backends` (devices, array
modules, hot operations and their kernels); :mod:`bpcore.layers`,
:mod:`bpcore.losses` and :mod:`bpcore.optim` on top of them; then
:class:`Network`, :mod:`bpcore.training`, :mod:`bpcore.serialization`, the
scikit-learn estimators (:mod:`bpcore.sklearn`) and the command line.
"""

import importlib
import logging
from typing import Any

from . import init, layers, losses, optim
from .backends import (
    Device,
    DeviceError,
    available_devices,
    current_device,
    get_backend,
    set_device,
    use_device,
)
from .checkpoint import ModelCheckpoint, latest_checkpoint
from .gather import Gather
from .gradcheck import gradcheck
from .interop import asarray
from .network import Network
from .parameters import Parameter
from .serialization import Checkpoint, ModelFileError, load, load_checkpoint, save
from .training import Callback, EarlyStopping, History, TrainingDivergedError

logging.getLogger("bpcore").addHandler(logging.NullHandler())

__version__ = "0.1.0"

__all__ = [
    "Callback",
    "Checkpoint",
    "Device",
    "DeviceError",
    "EarlyStopping",
    "Gather",
    "History",
    "ModelCheckpoint",
    "ModelFileError",
    "Network",
    "Parameter",
    "TrainingDivergedError",
    "__version__",
    "asarray",
    "available_devices",
    "current_device",
    "get_backend",
    "gradcheck",
    "init",
    "latest_checkpoint",
    "layers",
    "load",
    "load_checkpoint",
    "losses",
    "optim",
    "save",
    "set_device",
    "use_device",
]

#: Subpackages loaded on first access (``bpcore.rl.ReplayBuffer`` after a plain ``import bpcore``), so
#: that importing bpcore pays neither for them nor for what they need (scikit-learn for
#: :mod:`bpcore.sklearn`).
_ON_ACCESS = frozenset({"distributed", "rl", "sklearn"})


def __getattr__(name: str) -> Any:
    if name in _ON_ACCESS:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'bpcore' has no attribute {name!r}")
