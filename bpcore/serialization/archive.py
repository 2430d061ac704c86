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
import os
import zipfile
from collections.abc import Mapping
from typing import IO, Any, cast

import numpy as np

from ..interop import host_array

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


class ArrayTable:
    """The arrays of a file being written, each under a unique member name."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def add(self, name: str, value: Any) -> str:
        member = f"{name}.npy"
        if member in self.arrays:
            raise ValueError(f"two arrays would be stored as {member!r}")
        array = host_array(value)
        if array.dtype.hasobject or array.dtype.kind not in ARRAY_KINDS:
            raise TypeError(
                f"{name}: only boolean, integer and float arrays can be saved (no pickle, no strings, "
                f"complex or structured values), got dtype {array.dtype}"
            )
        # A copy, taken now: the file is written after the network's lock is released, while
        # training may go on changing the live buffers.
        self.arrays[member] = np.array(array, copy=True, order="C")
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


# Limits that keep a hostile file from exhausting memory or the stack before it is refused.
MAX_DEPTH = 200  # nesting of architecture.json (a Residual level takes three)
MAX_DOCUMENT_BYTES = 64 << 20  # architecture.json itself
MAX_INFLATION = 100  # a compressed member may inflate at most this much (beyond 1 MiB)
_SMALL = 1 << 20
ARRAY_KINDS = "biuf"  # booleans, integers, floats: no strings, void, complex or objects
_COMPRESSIONS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text[:40]} is out of range")
    return number


def _no_constant(text: str) -> float:
    raise ValueError(f"{text} is not standard JSON (bpcore writes {{'$float': ...}})")


def _depth(document: Any) -> int:
    """How deeply ``document`` nests (iteratively: a deep file must not exhaust the stack)."""
    deepest, pending = 0, [(document, 1)]
    while pending:
        value, level = pending.pop()
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            break
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        pending.extend((child, level + 1) for child in children)
    return deepest


class Archive:
    """An opened model file: its JSON document and bounded access to its arrays.

    Before anything is allocated, every ZIP member is checked: no duplicate
    names, no encryption, only stored or deflated data, and a declared size
    that the file can hold (stored data must physically be there; deflated
    data may inflate at most :data:`MAX_INFLATION`-fold).  Each array's
    ``.npy`` header is read first and its shape and dtype checked against the
    member's size (and against what the caller expects) before the array is
    allocated, and data is read only up to the declared size.
    """

    def __init__(self, source: str | IO[bytes], label: str, *, close_source: bool = False) -> None:
        self.label = label
        self._source = source if close_source and not isinstance(source, str) else None
        try:
            self._zip = zipfile.ZipFile(source)
        except zipfile.BadZipFile as exc:
            self._close_source()
            raise ModelFileError(
                label, f"not a bpcore model file: not a ZIP archive, or truncated ({exc})"
            ) from None
        except (EOFError, OSError, ValueError, NotImplementedError) as exc:
            self._close_source()
            raise ModelFileError(label, f"unreadable ({exc})") from None
        try:
            self._members = self._check_members(source)
            self.document = self._read_document()
        except BaseException:
            self.close()
            raise

    def _check_members(self, source: str | IO[bytes]) -> dict[str, zipfile.ZipInfo]:
        label = self.label
        size = self._archive_size(source)
        members: dict[str, zipfile.ZipInfo] = {}
        for info in self._zip.infolist():
            name = info.filename
            if name in members:
                raise ModelFileError(label, f"the ZIP archive holds the member {name!r} twice")
            if info.flag_bits & 0x1:
                raise ModelFileError(label, f"{name!r} is encrypted; bpcore model files are never encrypted")
            if info.compress_type not in _COMPRESSIONS:
                raise ModelFileError(
                    label, f"{name!r} uses ZIP compression method {info.compress_type}; "
                    "only stored and deflated members are supported"
                )
            if size is not None and info.header_offset + info.compress_size > size:
                raise ModelFileError(
                    label,
                    f"{name!r} is corrupt or truncated: it claims {info.compress_size} bytes at offset "
                    f"{info.header_offset} of a {size}-byte file",
                )
            stored = info.compress_type == zipfile.ZIP_STORED
            limit = info.compress_size if stored else max(info.compress_size * MAX_INFLATION, _SMALL)
            if info.file_size > limit:
                raise ModelFileError(
                    label, f"{name!r} claims {info.file_size} bytes from {info.compress_size} "
                    f"{'stored' if stored else 'compressed'} bytes (a ZIP bomb or a corrupt size)"
                )
            members[name] = info
        if ARCHITECTURE not in members:
            shown = ", ".join(sorted(members)[:5]) or "none"
            raise ModelFileError(
                label, f"not a bpcore model file: the ZIP archive has no {ARCHITECTURE} (members: {shown})"
            )
        return members

    @staticmethod
    def _archive_size(source: str | IO[bytes]) -> int | None:
        try:
            if isinstance(source, str):
                return os.stat(source).st_size
            position = source.tell()
            end = source.seek(0, os.SEEK_END)
            source.seek(position)
            return int(end)
        except (OSError, AttributeError, ValueError):
            return None

    def _read_document(self) -> dict[str, Any]:
        label, info = self.label, self._members[ARCHITECTURE]
        if info.file_size > MAX_DOCUMENT_BYTES:
            raise ModelFileError(
                label, f"{ARCHITECTURE} is {info.file_size} bytes (at most {MAX_DOCUMENT_BYTES})"
            )
        try:
            text = self._zip.read(info).decode("utf-8")
            document = json.loads(text, parse_float=_finite_float, parse_constant=_no_constant)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ModelFileError(label, f"corrupt or truncated {ARCHITECTURE} ({exc})") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelFileError(label, f"{ARCHITECTURE} is not valid JSON ({exc})") from None
        except RecursionError:
            raise ModelFileError(label, f"{ARCHITECTURE} nests deeper than {MAX_DEPTH} levels") from None
        except ValueError as exc:  # integers beyond Python's digit limit, 1e400, NaN literals
            raise ModelFileError(label, f"{ARCHITECTURE} holds an invalid value ({exc})") from None
        if not isinstance(document, dict):
            raise ModelFileError(
                label, f"{ARCHITECTURE} must hold a JSON object, got {type(document).__name__}"
            )
        if _depth(document) > MAX_DEPTH:
            raise ModelFileError(label, f"{ARCHITECTURE} nests deeper than {MAX_DEPTH} levels")
        return document

    def array(
        self,
        member: Any,
        what: str,
        *,
        shape: tuple[int, ...] | None = None,
        dtype: Any = None,
        floating: bool = False,
    ) -> np.ndarray:
        """The array stored as ``member``, read without unpickling; ``what`` names it in errors.

        ``shape``/``dtype`` (when given; ``floating``: any float dtype) are
        checked from the ``.npy`` header, before the array is allocated.
        """
        label = self.label
        if not isinstance(member, str):
            raise ModelFileError(label, f"{what}: expected an array member name, got {member!r:.80}")
        info = self._members.get(member)
        if info is None:
            raise ModelFileError(label, f"{what}: the array {member!r} is missing")
        try:
            with self._zip.open(info) as handle:
                found_shape, fortran, found_dtype = self._header(handle, member, what)
                if found_dtype.hasobject or found_dtype.kind not in ARRAY_KINDS:
                    raise ModelFileError(
                        label, f"{what}: {member!r} is not a plain numeric array (dtype {found_dtype})"
                    )
                if floating and found_dtype.kind != "f":
                    raise ModelFileError(label, f"{what}: expected floats in {member!r}, got {found_dtype}")
                if (shape is not None and found_shape != tuple(shape)) or (
                    dtype is not None and found_dtype != np.dtype(dtype)
                ):
                    wanted = np.dtype(dtype).name if dtype is not None else "any dtype"
                    raise ModelFileError(
                        label,
                        f"{what}: expected shape {tuple(shape) if shape is not None else 'any'} of {wanted} "
                        f"in {member!r}, got shape {found_shape} of {found_dtype}",
                    )
                nbytes = math.prod(found_shape) * found_dtype.itemsize
                if handle.tell() + nbytes != info.file_size:
                    raise ModelFileError(
                        label, f"{what}: {member!r} is corrupt or truncated: its header claims shape "
                        f"{found_shape} of {found_dtype} ({nbytes} bytes), the member holds "
                        f"{info.file_size - handle.tell()} bytes of data"
                    )
                array = np.empty(found_shape, dtype=found_dtype, order="F" if fortran else "C")
                view = memoryview(cast(Any, array.reshape(-1, order="A").view(np.uint8)))
                reader = cast(io.BufferedIOBase, handle)
                filled = 0
                while filled < nbytes:
                    count = reader.readinto(view[filled:])
                    if not count:
                        raise EOFError(f"{nbytes - filled} bytes missing")
                    filled += count
                handle.read(1)  # reaches the end of the member, where its CRC is checked
                return array
        except (zipfile.BadZipFile, OSError, EOFError) as exc:  # CRC mismatch, truncated member
            raise ModelFileError(label, f"{what}: {member!r} is corrupt or truncated ({exc})") from None

    def _header(self, handle: IO[bytes], member: str, what: str) -> tuple[tuple[int, ...], bool, np.dtype]:
        """The shape, order and dtype in a ``.npy`` header (versions 1 and 2), checked for sanity."""
        try:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
        except (ValueError, TypeError, SyntaxError) as exc:  # malformed headers, object dtypes
            raise ModelFileError(
                self.label, f"{what}: {member!r} is not a plain numeric array ({exc})"
            ) from None
        if not all(isinstance(n, int) and n >= 0 for n in shape):
            raise ModelFileError(self.label, f"{what}: {member!r} has an invalid shape {shape!r:.80}")
        return tuple(shape), bool(fortran), np.dtype(dtype)

    def decode_tree(self, value: Any, where: str) -> Any:
        """The inverse of :func:`encode_tree`."""
        if isinstance(value, dict):
            if set(value) == {ARRAY_KEY}:
                return self.array(value[ARRAY_KEY], where)
            if set(value) == {FLOAT_KEY}:
                if value[FLOAT_KEY] not in ("nan", "inf", "-inf"):
                    shown = f"{value[FLOAT_KEY]!r:.40}"
                    raise ModelFileError(self.label, f"{where}: unknown special float {shown}")
                return float(value[FLOAT_KEY])
            return {key: self.decode_tree(item, f"{where}/{key}") for key, item in value.items()}
        if isinstance(value, list):
            return [self.decode_tree(item, f"{where}/{index}") for index, item in enumerate(value)]
        return value

    def close(self) -> None:
        self._zip.close()
        self._close_source()

    def _close_source(self) -> None:
        if self._source is not None:
            self._source.close()  # type: ignore[union-attr]
            self._source = None

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
