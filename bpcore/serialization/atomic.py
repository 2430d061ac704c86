"""Atomic file replacement: a reader sees the old file or the new one, never half of either.

The new content goes to a temporary file beside the target, named
``.bpcore-<digest of the target's name>-<random>.tmp`` (fixed length, so a
target name at the file system's 255-byte limit still works) and locked
while it is written.  A save that was killed leaves its temporary file
behind; the next save of the same target removes those whose writer has
gone (their lock is free), and never the file of a save still running.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from typing import IO

try:  # POSIX; elsewhere stale temporary files are recognised by age instead
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("bpcore")

_PREFIX = ".bpcore-"
_STALE_AFTER_SECONDS = 24 * 3600  # without file locks: a temporary file this old is abandoned


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX only; Windows has no directory handles)."""
    if os.name != "posix":
        return
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _temporary_pattern(target: str) -> tuple[str, re.Pattern[str]]:
    """The temporary-name prefix for ``target`` and a pattern matching every such name."""
    digest = hashlib.sha256(os.path.basename(target).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    prefix = f"{_PREFIX}{digest}-"
    return prefix, re.compile(re.escape(prefix) + r"[0-9a-f]{12}\.tmp\Z")


def _lock(descriptor: int) -> bool:
    """Take an exclusive lock on an open file without waiting; whether it was taken."""
    if fcntl is None:  # pragma: no cover - Windows
        return True
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _remove_stale(directory: str, pattern: re.Pattern[str]) -> None:
    """Remove temporary files of this target left by saves that died (their lock is free)."""
    try:
        names = [name for name in os.listdir(directory) if pattern.match(name)]
    except OSError:
        return
    for name in names:
        path = os.path.join(directory, name)
        try:
            if fcntl is None:  # pragma: no cover - Windows
                if os.stat(path).st_mtime > time.time() - _STALE_AFTER_SECONDS:
                    continue
                os.unlink(path)
                continue
            descriptor = os.open(path, os.O_RDONLY)
            try:
                if _lock(descriptor):  # nobody is writing it: its save was killed
                    os.unlink(path)
                    logger.debug("removed %s, left by an interrupted save", path)
            finally:
                os.close(descriptor)
        except OSError:  # gone meanwhile, or not ours to remove
            continue


def _resolve(path: str) -> str:
    """The file a save of ``path`` replaces: a symbolic link's destination, not the link."""
    return os.path.realpath(path) if os.path.islink(path) else path


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """A binary file that replaces ``path`` only once it has been completely written.

    The data goes to a temporary file in the same directory (so that the final
    rename never crosses file systems), is flushed and fsync'ed, and then
    renamed over ``path`` with :func:`os.replace`, which is atomic.  If the
    ``with`` block raises, the temporary file is removed and ``path`` is left
    exactly as it was; an OSError (a full disk, a file too large) is raised
    again naming ``path``.  An existing target keeps its permission bits, and
    a symbolic link keeps pointing at the file, which is replaced.
    """
    requested = os.fspath(path)
    target = _resolve(requested)
    directory = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"path: the directory {directory!r} of {requested!r} does not exist")
    prefix, pattern = _temporary_pattern(target)
    _remove_stale(directory, pattern)
    try:
        mode: int | None = stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        mode = None  # a new file: the umask decides, as for any file the user creates
    temporary, descriptor = _locked_temporary(directory, prefix, requested)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
            if mode is not None:
                os.chmod(temporary, mode)
            os.replace(temporary, target)  # before closing: the lock covers the whole save
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise _naming(exc, requested) from exc
        raise
    _fsync_directory(directory)


def _locked_temporary(directory: str, prefix: str, requested: str) -> tuple[str, int]:
    """A new temporary file, open and locked (held until it is closed, or the process dies).

    Between its creation and its lock, another save's clean-up of stale files
    (:func:`_remove_stale`) may take the lock first and remove it; the file is
    then no longer at its name, and a new one is made.
    """
    # os.open (unlike tempfile.mkstemp's 0600) lets the umask set the permissions.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _attempt in range(100):
        temporary = os.path.join(directory, f"{prefix}{secrets.token_hex(6)}.tmp")
        try:
            descriptor = os.open(temporary, flags, 0o666)
        except OSError as exc:
            raise _naming(exc, requested) from exc
        if _lock(descriptor) and _still_named(temporary, descriptor):
            return temporary, descriptor
        os.close(descriptor)  # taken by a clean-up: it removes (or has removed) the file
    raise _naming(OSError(errno.EAGAIN, "other saves of it kept removing its temporary file"), requested)


def _still_named(path: str, descriptor: int) -> bool:
    """Whether ``path`` is still the open file ``descriptor`` (not removed meanwhile)."""
    try:
        named, opened = os.stat(path), os.fstat(descriptor)
    except OSError:
        return False
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _naming(error: OSError, target: str) -> OSError:
    """``error`` again, its message naming the file being saved (the class follows the errno)."""
    reason = error.strerror or str(error)
    if error.errno is None:
        return type(error)(f"cannot save {target!r}: {reason}")
    return OSError(error.errno, f"cannot save {target!r}: {reason}")
