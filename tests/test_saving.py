"""Saving under faults: killed saves, full disks, long names, permissions and symbolic links."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import bpcore
from bpcore.layers import Dense
from bpcore.serialization import load, save

posix_only = pytest.mark.skipif(os.name != "posix", reason="needs POSIX permissions, links and locks")


def network(seed: int = 0) -> bpcore.Network:
    return bpcore.Network([Dense(4, 6), Dense(6, 3)], dtype="float64", seed=seed)


def killed_save(path) -> None:
    """A process that dies in the middle of saving ``path``, with no chance to clean up."""
    script = textwrap.dedent(f"""
        import os
        import numpy as np
        import bpcore
        from bpcore.layers import Dense
        network = bpcore.Network([Dense(4, 6), Dense(6, 3)], dtype="float64", seed=9)
        def die(handle, array, **kwargs):
            handle.write(b"partial" * 1000)
            os._exit(3)
        np.lib.format.write_array = die
        bpcore.save(network, {str(path)!r})
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert result.returncode == 3, result.stderr.decode()


@pytest.mark.slow
def test_temporary_files_of_killed_saves_are_removed_by_the_next_save(tmp_path):
    path, other = tmp_path / "model.bpcore", tmp_path / "other.bpcore"
    save(network(1), path)
    save(network(1), other)
    for _ in range(3):
        killed_save(path)
    killed_save(other)
    # each killed save of model.bpcore removed the file of the one before: one is left per target
    left = sorted(set(os.listdir(tmp_path)) - {"model.bpcore", "other.bpcore"})
    assert len(left) == 2 and all(name.startswith(".bpcore-") and name.endswith(".tmp") for name in left)
    save(network(2), path)
    remaining = sorted(set(os.listdir(tmp_path)) - {"model.bpcore", "other.bpcore"})
    assert len(remaining) == 1  # only the other target's temporary file is left, for its own next save
    assert np.array_equal(load(path).store.data, network(2).store.data)
    save(network(2), other)
    assert sorted(os.listdir(tmp_path)) == ["model.bpcore", "other.bpcore"]


@posix_only
def test_the_temporary_file_of_a_save_in_progress_is_left_alone(tmp_path):
    import fcntl

    from bpcore.serialization.atomic import _temporary_pattern

    path = tmp_path / "model.bpcore"
    prefix, pattern = _temporary_pattern(str(path))
    busy = tmp_path / f"{prefix}0123456789ab.tmp"
    assert pattern.match(busy.name)
    with open(busy, "wb") as handle:  # another process's save, still writing: it holds the lock
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        save(network(), path)
        assert busy.exists()
    save(network(), path)  # now its lock is free: an abandoned file
    assert not busy.exists()


@pytest.mark.parametrize(
    ("code", "text"), [(errno.ENOSPC, "No space left on device"), (errno.EFBIG, "File too large")]
)
def test_write_errors_name_the_target_and_leave_nothing_behind(tmp_path, monkeypatch, code, text):
    path = tmp_path / "model.bpcore"
    save(network(1), path)
    before = path.read_bytes()
    real = np.lib.format.write_array

    def fail(handle, array, **kwargs):
        real(handle, array, **kwargs)
        raise OSError(code, text)

    monkeypatch.setattr(np.lib.format, "write_array", fail)
    with pytest.raises(OSError, match=f"cannot save '{path}': {text}") as info:
        save(network(2), path)
    assert info.value.errno == code
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.bpcore"]


def test_a_file_name_at_the_file_system_limit_can_be_saved(tmp_path):
    name = "m" * (255 - len(".bpcore")) + ".bpcore"
    assert len(name.encode()) == 255
    save(network(3), tmp_path / name)
    save(network(4), tmp_path / name)  # replacing it too
    assert np.array_equal(load(tmp_path / name).store.data, network(4).store.data)
    assert os.listdir(tmp_path) == [name]


@posix_only
def test_saving_keeps_the_targets_permission_bits(tmp_path):
    path = tmp_path / "model.bpcore"
    save(network(), path)
    os.chmod(path, 0o640)
    save(network(1), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    os.chmod(path, 0o600)
    save(network(2), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@posix_only
def test_saving_through_a_symbolic_link_replaces_its_target(tmp_path):
    real = tmp_path / "store" / "model.bpcore"
    real.parent.mkdir()
    save(network(1), real)
    link = tmp_path / "current.bpcore"
    link.symlink_to(real)
    save(network(2), link)
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert np.array_equal(load(real).store.data, network(2).store.data)
    assert sorted(os.listdir(real.parent)) == ["model.bpcore"]
