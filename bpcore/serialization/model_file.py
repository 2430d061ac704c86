"""``save`` and ``load``: a network (with optimiser state, if given) as one portable file.

The file format is described in :mod:`bpcore.serialization`.  Arrays are
converted to NumPy before writing, so a file never records which device it
came from: a model saved from a GPU loads on a CPU and the reverse.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import os
import stat
from collections.abc import Mapping
from typing import IO, Any, Union

import numpy as np

from ..backends import DeviceLike, get_backend
from ..layers.base import Layer
from ..network import Network
from ..validation import FLOAT_DTYPES
from .archive import Archive, ArrayTable, ModelFileError, encode_tree, write_archive
from .atomic import atomic_write
from .registry import build, describe, layer_types, walk_with_paths

FORMAT_NAME = "bpcore-model"
FORMAT_VERSION = 2  # 2: the network records its per-sample input shape; 1 still loads
PARAMETERS = "parameters"

PathOrFile = Union[str, "os.PathLike[str]", IO[bytes]]


@dataclasses.dataclass
class Checkpoint:
    """Everything :func:`load_checkpoint` read from a model file.

    ``optimizer`` and ``loss`` are rebuilt bpcore objects when the file holds
    them (the optimiser bound to ``network``'s parameters, its state
    restored), else None.  ``extra`` is what the caller passed to ``save``;
    ``training`` is the resume state written by :class:`bpcore.checkpoint.ModelCheckpoint`;
    ``metadata`` holds the format name and version and the bpcore version
    that wrote the file.
    """

    network: Network
    optimizer: Any = None
    loss: Any = None
    extra: Any = None
    training: dict[str, Any] | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)


# --- writing -----------------------------------------------------------------
def _component(kind: str, obj: Any, table: ArrayTable, *, with_state: bool) -> dict[str, Any] | None:
    """The JSON description of a loss or optimiser: type name, config and (optimiser) state."""
    if obj is None:
        return None
    config = obj.config() if callable(getattr(obj, "config", None)) else {}
    spec: dict[str, Any] = {
        "type": type(obj).__name__,
        "config": encode_tree(config, f"{kind}/config", table),
    }
    if with_state:
        if not callable(getattr(obj, "state_dict", None)):
            raise TypeError(
                f"optimizer: expected a bpcore optimiser with state_dict(), got {type(obj).__name__}"
            )
        spec["state"] = encode_tree(obj.state_dict(), f"{kind}/state", table)
    return spec


def _document(
    network: Network, optimizer: Any, loss: Any, extra: Any, training: Any, table: ArrayTable
) -> dict[str, Any]:
    from .. import __version__

    store = network.store
    owners = {id(p): path for path, layer in walk_with_paths(network.layers) for p in layer.parameters()}
    entries = [
        {"layer": owners.get(id(p), "?"), "name": p.name, "shape": list(p.shape), "offset": p.offset}
        for p in store.parameters
    ]
    buffers = []
    for path, layer in walk_with_paths(network.layers):
        for name, value in layer.buffers().items():
            buffers.append({"layer": path, "name": name, "array": table.add(f"buffers/{path}/{name}", value)})
    network_spec = {
        "dtype": network.dtype.name,
        "seed": network.seed,
        "layers": [describe(layer, str(index)) for index, layer in enumerate(network.layers)],
        "input_shape": None if network.input_shape is None else list(network.input_shape),
        "parameters": {
            "array": table.add(PARAMETERS, store.backend.to_numpy(store.data)),
            "size": store.size,
            "entries": entries,
        },
        "buffers": buffers,
    }
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "bpcore_version": __version__,
        "network": network_spec,
        "loss": _component("loss", loss, table, with_state=False),
        "optimizer": _component("optimizer", optimizer, table, with_state=True),
        "extra": encode_tree(extra, "extra", table),
        "training": encode_tree(training, "training", table),
    }


def write_model(
    target: PathOrFile,
    network: Network,
    *,
    optimizer: Any = None,
    loss: Any = None,
    extra: Any = None,
    training: Any = None,
) -> None:
    """Write a model file; the engine behind :func:`save` and the checkpoint callback."""
    if not isinstance(network, Network):
        raise TypeError(f"network: expected a bpcore Network, got {type(network).__name__}")
    if not (hasattr(target, "write") or isinstance(target, (str, os.PathLike))):
        raise TypeError(f"path: expected a file path or a binary file object, got {type(target).__name__}")
    table = ArrayTable()
    with network._lock:
        document = _document(network, optimizer, loss, extra, training, table)
    if hasattr(target, "write"):
        write_archive(target, document, table)  # type: ignore[arg-type]
        return
    with atomic_write(target) as handle:  # type: ignore[arg-type]
        write_archive(handle, document, table)


def save(
    network: Network,
    path: PathOrFile,
    *,
    optimizer: Any = None,
    loss: Any = None,
    extra: Any = None,
) -> None:
    """Save ``network`` (architecture, parameters, buffers) to ``path``, atomically.

    ``optimizer`` adds the optimiser's configuration and state, for resuming
    training; ``loss`` adds the loss's configuration; ``extra`` is any
    JSON-like value of your own (dicts, lists, numbers, strings, arrays),
    returned by :func:`load_checkpoint`.  ``path`` is replaced only once the
    new file is complete: a crash mid-save leaves the old file intact.  A
    binary file object is accepted too (written in place, not atomically).
    The file holds no pickled objects.
    """
    write_model(path, network, optimizer=optimizer, loss=loss, extra=extra)


# --- reading -----------------------------------------------------------------
def _label(source: PathOrFile) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return str(getattr(source, "name", f"<{type(source).__name__}>"))


def _open_regular_file(path: str) -> IO[bytes]:
    """``path`` opened for reading, refused unless it is a regular file.

    The file is opened without blocking and checked with ``fstat`` on the
    open descriptor, so a FIFO (which would block forever) or a device such
    as ``/dev/zero`` (which never ends) is refused, and the check cannot be
    raced by swapping the file between a check and the open.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"path: no such file {path!r}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"path: {path!r} is a directory, expected a model file")
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise ModelFileError(path, f"cannot be opened ({exc.strerror or exc})") from None
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(
            mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
        raise ModelFileError(path, f"not a bpcore model file: {kind}, expected a regular file")
    return os.fdopen(descriptor, "rb")


def _open(source: PathOrFile) -> Archive:
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        return Archive(_open_regular_file(path), _label(source), close_source=True)
    if not hasattr(source, "read"):
        raise TypeError(f"path: expected a file path or a binary file object, got {type(source).__name__}")
    return Archive(source, _label(source))


def _check_header(archive: Archive) -> dict[str, Any]:
    document = archive.document
    if document.get("format") != FORMAT_NAME:
        raise ModelFileError(
            archive.label,
            f"not a bpcore model file (format is {document.get('format')!r}, expected {FORMAT_NAME!r})",
        )
    version = document.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(archive.label, f"invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            archive.label,
            f"format version {version} was written by bpcore {document.get('bpcore_version', '?')} and is "
            f"newer than this bpcore reads (version {FORMAT_VERSION}); upgrade bpcore to load it",
        )
    spec = document.get("network")
    if not isinstance(spec, dict) or not isinstance(spec.get("layers"), list):
        raise ModelFileError(archive.label, "the 'network' section is missing or has no layer list")
    return spec


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _parameter_table(label: str, spec: dict[str, Any]) -> tuple[Any, int, list[list[Any]]]:
    """The parameter table's array member, size and ``[name, shape, offset]`` entries, type-checked."""
    table = spec.get("parameters")
    if not isinstance(table, dict):
        raise ModelFileError(label, "the network has no 'parameters' table")
    size, entries = table.get("size"), table.get("entries")
    if not _is_count(size):
        raise ModelFileError(label, f"parameters: 'size' must be a non-negative integer, got {size!r:.40}")
    if not isinstance(entries, list):
        raise ModelFileError(label, f"parameters: 'entries' must be a list, got {type(entries).__name__}")
    found, offset = [], 0
    for index, entry in enumerate(entries):
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not (
            isinstance(entry, dict) and isinstance(entry.get("name"), str) and isinstance(shape, list)
            and all(_is_count(n) for n in shape) and entry.get("offset") == offset
        ):
            raise ModelFileError(
                label, f"parameters: entry {index} must be {{'layer', 'name', 'shape', 'offset'}} with "
                f"non-negative integer sizes following the previous entry, got {entry!r:.120}"
            )
        found.append([entry["name"], shape, offset])
        offset += math.prod(shape)
    if offset != size:
        raise ModelFileError(
            label, f"parameters: the entries hold {offset} values, the table's size is {size}"
        )
    return table.get("array"), size, found


def _build_network(
    archive: Archive,
    spec: dict[str, Any],
    device: DeviceLike | None,
    custom_layers: Mapping[str, type[Layer]] | None,
) -> Network:
    """The network described by ``spec``, checked against the file before anything large is allocated.

    Order matters for memory: the parameter table is checked against the
    ``.npy`` member that holds the values (whose size the archive has already
    bounded by the file's own size), and the architecture's parameters
    against the table, before the network allocates its buffers.
    """
    label = archive.label
    dtype = spec.get("dtype")
    if dtype not in [d.name for d in FLOAT_DTYPES]:
        raise ModelFileError(label, f"network dtype must be 'float32' or 'float64', got {dtype!r:.40}")
    seed = spec.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ModelFileError(label, f"network seed must be an integer or null, got {seed!r:.40}")
    types = layer_types(custom_layers)
    backend = get_backend(device)  # a bad device is the caller's error, not the file's: raised as is
    member, size, found = _parameter_table(label, spec)
    # the table's size caps what is read: a larger array is refused from its header, unallocated
    flat = archive.array(member, "parameters", shape=(size,), dtype=dtype)
    if not np.isfinite(flat).all():
        raise ModelFileError(label, "parameters contain NaN or Inf values")
    try:
        layers = [build(layer, str(index), types) for index, layer in enumerate(spec["layers"])]
    except (TypeError, ValueError) as exc:
        raise ModelFileError(label, f"invalid architecture: {exc}") from None
    declared = [p for layer in layers for p in layer.parameters()]
    _match_table(label, found, declared)  # before Network() allocates anything
    try:
        network = Network(layers, dtype=str(dtype), seed=seed, device=backend.device)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(label, f"invalid architecture: {exc}") from None
    if "input_shape" in spec:  # format version 2
        recorded = spec["input_shape"]
        rebuilt = None if network.input_shape is None else list(network.input_shape)
        if recorded != rebuilt:
            raise ModelFileError(
                label,
                f"the layers take per-sample input of shape {rebuilt}, but the file records {recorded!r}",
            )
    _match_table(label, found, network.store.parameters)  # layers that create parameters when built
    network.store.load(flat)

    layers_by_path = dict(walk_with_paths(network.layers))
    buffers = spec.get("buffers", [])
    if not isinstance(buffers, list):
        raise ModelFileError(label, f"network: 'buffers' must be a list, got {type(buffers).__name__}")
    for entry in buffers:
        path, name = (entry.get("layer"), entry.get("name")) if isinstance(entry, dict) else (None, None)
        layer = layers_by_path.get(path) if isinstance(path, str) else None
        current = layer.buffers() if layer is not None else {}
        if not isinstance(name, str) or name not in current:
            raise ModelFileError(
                label, f"buffer {name!r:.40} of layer {path!r:.40} does not exist in this architecture"
            )
        what = f"buffer {name!r} of layer {path}"
        value = archive.array(entry.get("array"), what, shape=tuple(current[name].shape), floating=True)
        if not np.isfinite(value).all() or (name == "running_var" and bool((value < 0).any())):
            kind = "non-negative finite" if name == "running_var" else "finite"
            raise ModelFileError(label, f"{what}: expected {kind} values, got NaN, Inf or negative values")
        layer.set_buffer(name, network.backend.asarray(value, dtype=current[name].dtype))  # type: ignore[union-attr]
    return network


def _match_table(label: str, found: list[list[Any]], parameters: Any) -> None:
    expected, offset = [], 0
    for parameter in parameters:
        expected.append([parameter.name, list(parameter.shape), offset])
        offset += parameter.size
    if found != expected:
        raise ModelFileError(
            label,
            "the parameter table does not match the architecture "
            f"(file lists {len(found)} parameters, the layers define {len(expected)})",
        )


def load(
    path: PathOrFile,
    device: DeviceLike | None = None,
    *,
    custom_layers: Mapping[str, type[Layer]] | None = None,
) -> Network:
    """The network saved in ``path``, placed on ``device`` (default: the current device).

    Raises :class:`ModelFileError` (a ValueError) naming the file and the
    problem when it is corrupt, truncated, not a bpcore model file, written
    by a newer format version or names a layer type that is not known.
    ``custom_layers`` maps type names to your own Layer subclasses; no other
    class can be created from a file.
    """
    with _open(path) as archive:
        return _build_network(archive, _check_header(archive), device, custom_layers)


# The only modules whose classes a file may name for its loss and optimiser.
_COMPONENT_MODULES = {"loss": "bpcore.losses", "optimizer": "bpcore.optim"}


def _rebuild(kind: str, spec: Any, archive: Archive, *args: Any) -> Any:
    """A bpcore loss or optimiser from its description; only classes of its bpcore module qualify."""
    if spec is None:
        return None
    module = importlib.import_module(_COMPONENT_MODULES[kind])
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise ModelFileError(
            archive.label, f"{kind}: expected an object with a 'type' name, got {spec!r:.80}"
        )
    cls = getattr(module, spec["type"], None)
    if not inspect.isclass(cls) or not cls.__module__.startswith(module.__name__):
        raise ModelFileError(
            archive.label, f"{kind}: unknown {kind} type {spec['type']!r} in {module.__name__}"
        )
    config = archive.decode_tree(spec.get("config", {}), f"{kind}/config")
    try:
        return cls(*args, **config)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(
            archive.label, f"{kind}: cannot create {spec['type']} from {config} ({exc})"
        ) from None


def load_checkpoint(
    path: PathOrFile,
    device: DeviceLike | None = None,
    *,
    custom_layers: Mapping[str, type[Layer]] | None = None,
) -> Checkpoint:
    """The network and everything saved with it: optimiser (state restored), loss, extra data.

    Errors as for :func:`load`.
    """
    with _open(path) as archive:
        document = archive.document
        network = _build_network(archive, _check_header(archive), device, custom_layers)
        loss = _rebuild("loss", document.get("loss"), archive)
        optimizer_spec: Any = document.get("optimizer")
        optimizer = _rebuild("optimizer", optimizer_spec, archive, network.parameters())
        if optimizer is not None:
            state = archive.decode_tree(optimizer_spec.get("state", {}), "optimizer/state")
            try:
                optimizer.load_state_dict(state)
            except (KeyError, TypeError, ValueError) as exc:
                raise ModelFileError(
                    archive.label, f"optimizer state does not fit {type(optimizer).__name__} ({exc})"
                ) from None
        return Checkpoint(
            network=network,
            optimizer=optimizer,
            loss=loss,
            extra=archive.decode_tree(document.get("extra"), "extra"),
            training=archive.decode_tree(document.get("training"), "training"),
            metadata={key: document.get(key) for key in ("format", "format_version", "bpcore_version")},
        )


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
