"""Saving and loading networks in a portable, pickle-free file format.

The format (version 1)
----------------------
A model file is a ZIP archive (the layout of NumPy's ``np.savez``, so
``np.load(path, allow_pickle=False)`` opens it too) holding:

``architecture.json``
    A JSON object: ``format`` (``"bpcore-model"``), ``format_version``
    (``1``), ``bpcore_version``, and

    * ``network``: ``dtype`` (``"float32"``/``"float64"``), ``seed``,
      ``layers`` (a list of ``{"type": class name, "config": constructor
      arguments}``; containers such as ``Residual`` add their own
      ``"layers"`` list), ``parameters`` (``{"array": member, "size": n,
      "entries": [{"layer": path, "name", "shape", "offset"}, ...]}``: every
      parameter is a slice of one flat array, in network order) and
      ``buffers`` (``[{"layer": path, "name", "array": member}]``: non-trainable
      state such as BatchNorm's running statistics).  A layer path is its index,
      ``"2"``, or for a nested layer ``"2.0"``.
    * ``loss`` and ``optimizer``: ``null`` or ``{"type", "config"}``; the
      optimiser adds ``"state"``, its ``state_dict()``.
    * ``extra``: the caller's own data, or ``null``; ``training``: resume
      state written by the checkpoint callback, or ``null``.

    Inside ``config``, ``state``, ``extra`` and ``training`` an array is
    written as ``{"$array": member}`` and a non-finite float as
    ``{"$float": "nan" | "inf" | "-inf"}``, so the JSON stays standard.

``<name>.npy``
    The arrays, in NumPy's ``.npy`` format, always converted to NumPy first:
    ``parameters.npy``, ``buffers/<path>/<name>.npy``,
    ``optimizer/state/...npy`` and so on.  Nothing is pickled, and nothing
    is read with pickling allowed.

Loading creates only layer classes of :mod:`bpcore.layers` (and classes the
caller passes as ``custom_layers``), and only losses and optimisers of
:mod:`bpcore.losses` and :mod:`bpcore.optim`; a type name is never imported.
Files are written to a temporary file in the same directory, fsync'ed and
renamed over the target, so a crash never leaves a truncated file behind.
"""

from .archive import ModelFileError
from .model_file import FORMAT_NAME, FORMAT_VERSION, Checkpoint, load, load_checkpoint, save, write_model

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "Checkpoint",
    "ModelFileError",
    "load",
    "load_checkpoint",
    "save",
    "write_model",
]
