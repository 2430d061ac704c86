"""bpcore: small, transparent, fast backpropagation on NumPy or CuPy.

Network, loss and optimiser code is written once against an ``xp`` array
module; ``BPCORE_DEVICE`` (``cpu``, ``cuda``, ``cuda:N``, ``auto``) or
:func:`set_device` / :func:`use_device` pick where it runs.  Importing bpcore
never touches a GPU.
"""

import logging

from . import init, layers
from .backends import (
    Device,
    DeviceError,
    available_devices,
    current_device,
    get_backend,
    set_device,
    use_device,
)
from .network import Network
from .parameters import Parameter

logging.getLogger("bpcore").addHandler(logging.NullHandler())

__version__ = "0.1.0"

__all__ = [
    "Device",
    "DeviceError",
    "Network",
    "Parameter",
    "available_devices",
    "current_device",
    "get_backend",
    "init",
    "layers",
    "set_device",
    "use_device",
]
