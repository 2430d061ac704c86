"""The container of a model file: a ZIP archive of one JSON document and ``.npy`` arrays.

It is the layout of NumPy's ``np.savez`` (so ``np.load(path)`` can open it),
written with fixed timestamps so that saving the same state twice gives the
same bytes, and read with ``allow_pickle=False`` so that no file, however
crafted, can make the reader run code.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Mapping
from typing import IO, Any

import numpy as np

ARCHITECTURE = "architecture.json"
ARRAY_KEY = "$array"
FLOAT_KEY = "$float"
_EPOCH = (1980, 1, 1, 0, 0, 0)


class ModelFileError(ValueError):
    """A file is not a readable bpcore model file: corrupt, truncated, foreign or too new.

    ``path`` names the file and ``problem`` says what is wrong with it.
    """

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def to_host(value: Any) -> np.ndarray:
    """A NumPy copy or view of a NumPy or CuPy array (or anything ``np.asarray`` takes)."""
    getter = getattr(value, "get", None)
    if type(value).__module__.split(".")[0] == "cupy" and callable(getter):
        return getter()
    return np.asarray(value)


class ArrayTable:
    """The arrays of a file being written, each under a unique member name."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def add(self, name: str, value: Any) -> str:
        member = f"{name}.npy"
        if member in self.arrays:
            raise ValueError(f"two arrays would be stored as {member!r}")
        array = to_host(value)
        if array.dtype.hasobject:
            raise TypeError(f"{name}: arrays of Python objects cannot be saved (no pickle), got dtype object")
        self.arrays[member] = np.ascontiguousarray(array)
        return member


def encode_tree(value: Any, where: str, table: ArrayTable) -> Any:
    """``value`` (dicts, lists, scalars, strings, arrays) as JSON, its arrays moved to ``table``.

    An array becomes ``{"$array": member}``; a non-finite float becomes
    ``{"$float": "nan" | "inf" | "-inf"}`` so that the JSON stays standard.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, np.bool_):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else {FLOAT_KEY: repr(number)}
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Mapping):
        encoded = {}
        for key, item in value.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise TypeError(
                    f"{where}: keys must be strings or integers, got {type(key).__name__} {key!r}"
                )
            if str(key).startswith("$"):
                raise TypeError(f"{where}: keys may not start with '$' (reserved), got {key!r}")
            encoded[str(key)] = encode_tree(item, f"{where}/{key}", table)
        return encoded
    if isinstance(value, (list, tuple)):
        return [encode_tree(item, f"{where}/{index}", table) for index, item in enumerate(value)]
    if hasattr(value, "__array__") or hasattr(value, "__cuda_array_interface__"):
        return {ARRAY_KEY: table.add(where, value)}
    raise TypeError(
        f"{where}: cannot save a {type(value).__name__}; "
        "expected dicts, lists, numbers, strings, None or arrays"
    )


class Archive:
    """An opened model file: its JSON document and lazy access to its arrays."""

    def __init__(self, source: str | IO[bytes], label: str) -> None:
        self.label = label
        try:
            self._zip = zipfile.ZipFile(source)
        except zipfile.BadZipFile as exc:
            raise ModelFileError(
                label, f"not a bpcore model file: not a ZIP archive, or truncated ({exc})"
            ) from None
        except (EOFError, OSError) as exc:
            raise ModelFileError(label, f"unreadable ({exc})") from None
        names = set(self._zip.namelist())
        if ARCHITECTURE not in names:
            shown = ", ".join(sorted(names)[:5]) or "none"
            self.close()
            raise ModelFileError(
                label, f"not a bpcore model file: the ZIP archive has no {ARCHITECTURE} (members: {shown})"
            )
        try:
            text = self._zip.read(ARCHITECTURE).decode("utf-8")
            self.document = json.loads(text)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            self.close()
            raise ModelFileError(label, f"corrupt or truncated {ARCHITECTURE} ({exc})") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.close()
            raise ModelFileError(label, f"{ARCHITECTURE} is not valid JSON ({exc})") from None
        if not isinstance(self.document, dict):
            self.close()
            raise ModelFileError(
                label, f"{ARCHITECTURE} must hold a JSON object, got {type(self.document).__name__}"
            )

    def array(self, member: Any, what: str) -> np.ndarray:
        """The array stored as ``member``, read without unpickling; ``what`` names it in errors."""
        if not isinstance(member, str):
            raise ModelFileError(self.label, f"{what}: expected an array member name, got {member!r}")
        try:
            with self._zip.open(member) as handle:
                return np.lib.format.read_array(handle, allow_pickle=False)
        except KeyError:
            raise ModelFileError(self.label, f"{what}: the array {member!r} is missing") from None
        except ValueError as exc:  # object arrays (allow_pickle=False), malformed .npy headers
            raise ModelFileError(
                self.label, f"{what}: {member!r} is not a plain numeric array ({exc})"
            ) from None
        except (zipfile.BadZipFile, OSError, EOFError) as exc:  # CRC mismatch, truncated member
            raise ModelFileError(self.label, f"{what}: {member!r} is corrupt or truncated ({exc})") from None

    def decode_tree(self, value: Any, where: str) -> Any:
        """The inverse of :func:`encode_tree`."""
        if isinstance(value, dict):
            if set(value) == {ARRAY_KEY}:
                return self.array(value[ARRAY_KEY], where)
            if set(value) == {FLOAT_KEY}:
                if value[FLOAT_KEY] not in ("nan", "inf", "-inf"):
                    raise ModelFileError(self.label, f"{where}: unknown special float {value[FLOAT_KEY]!r}")
                return float(value[FLOAT_KEY])
            return {key: self.decode_tree(item, f"{where}/{key}") for key, item in value.items()}
        if isinstance(value, list):
            return [self.decode_tree(item, f"{where}/{index}") for index, item in enumerate(value)]
        return value

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_archive(handle: IO[bytes], document: dict[str, Any], table: ArrayTable) -> None:
    """Write the JSON document and then every array of ``table`` into ``handle`` as a ZIP archive."""
    text = json.dumps(document, indent=1, sort_keys=False, allow_nan=False).encode("utf-8")
    with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        archive.writestr(zipfile.ZipInfo(ARCHITECTURE, date_time=_EPOCH), text)
        for member, array in table.arrays.items():
            with archive.open(zipfile.ZipInfo(member, date_time=_EPOCH), "w", force_zip64=True) as out:
                np.lib.format.write_array(out, array, allow_pickle=False)


def to_bytes(document: dict[str, Any], table: ArrayTable) -> bytes:
    """The archive as bytes (used for pickling estimators through this format)."""
    buffer = io.BytesIO()
    write_archive(buffer, document, table)
    return buffer.getvalue()
