"""The source distribution carries what it needs to run its own tests, and the licence."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_license_is_the_mit_licence_that_pyproject_declares() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "bpcore developers" in text
    assert 'license = "MIT"' in (ROOT / "pyproject.toml").read_text()


def test_manifest_puts_tests_examples_benchmarks_and_the_cuda_header_in_the_sdist() -> None:
    lines = {line.strip() for line in (ROOT / "MANIFEST.in").read_text().splitlines()}
    for needed in ("graft tests", "graft examples", "graft benchmarks", "include backends/kernels/*.cuh"):
        assert needed in lines
    assert any(line.startswith("include") and "LICENSE" in line for line in lines)
    for path in ("tests/conftest.py", "tests/kernel_cases.py", "examples/pipeline.py",
                 "backends/kernels/bpcore_math.cuh"):
        assert (ROOT / path).is_file(), path


# What the unpacked source distribution runs of its own suite: the packaging checks, the argument checks, one
# CPU kernel check (through conftest.py and the kernel case files) and one example, end to end.
SDIST_SUBSET = [
    "tests/test_packaging.py::test_license_is_the_mit_licence_that_pyproject_declares",
    "tests/test_packaging.py::test_manifest_puts_tests_examples_benchmarks_and_the_cuda_header_in_the_sdist",
    "tests/test_checks.py",
    "tests/test_kernels_cpu.py::test_every_cpu_kernel_has_cases",
    "tests/test_examples.py::test_xor_learns",
]
NOT_SOURCE = ("*.egg-info", "__pycache__", "*.py[cod]", ".git", ".venv", "build", "dist", ".*_cache",
              ".benchmarks", ".hypothesis")


@pytest.mark.slow
def test_the_sdist_holds_its_tests_examples_and_licence_and_runs_its_own_tests(tmp_path: Path) -> None:
    """Build the sdist as ``python -m build --sdist`` does, unpack it, and run part of its suite there.

    The build runs on a copy of the source tree (the build writes its
    metadata beside the sources) without isolation, so that it needs no
    network: the installed setuptools is the backend.
    """
    pytest.importorskip("build", reason="the sdist check needs the 'build' package (the test extra)")
    source, dist, unpacked = tmp_path / "source", tmp_path / "dist", tmp_path / "unpacked"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BPCORE_DEVICE")}
    built = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--skip-dependency-check",
         "--outdir", str(dist)],
        cwd=source, env=environment, capture_output=True, text=True, timeout=120,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (archive,) = dist.glob("bpcore-*.tar.gz")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        if hasattr(tarfile, "data_filter"):  # Python 3.10.12+ and 3.11.4+
            tar.extractall(unpacked, filter="data")
        else:
            tar.extractall(unpacked)  # our own archive, just built
    (top,) = {name.split("/")[0] for name in names}
    files = {name.partition("/")[2] for name in names}
    examples = {f"examples/{path.name}" for path in (ROOT / "examples").glob("*.py")}
    needed = {"LICENSE", "README.md", "pyproject.toml", "tests/conftest.py", "tests/kernel_cases.py",
              "tests/kernel_codegen.py", "tests/cupy_codegen.py", "tests/cupy_doubles.py",
              "bpcore/backends/kernels/bpcore_math.cuh", "examples/pipeline.py", *examples}
    assert needed <= files, sorted(needed - files)
    assert not [name for name in files if "__pycache__" in name or name.endswith(".pyc")]
    root = unpacked / top

    where = subprocess.run([sys.executable, "-c", "import bpcore; print(bpcore.__file__)"], cwd=root,
                           env=environment, capture_output=True, text=True, timeout=60)
    assert Path(where.stdout.strip()).resolve() == (root / "bpcore" / "__init__.py").resolve(), where.stderr
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SDIST_SUBSET],
        cwd=root, env=dict(environment, BPCORE_DEVICE="cpu"), capture_output=True, text=True, timeout=300,
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    summary = ran.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary
    assert int(summary.split(" passed")[0].split()[-1]) >= len(SDIST_SUBSET), summary


def test_subpackages_load_on_first_access_after_a_plain_import() -> None:
    import subprocess
    import sys

    code = (
        "import sys, bpcore\n"
        "assert 'bpcore.rl' not in sys.modules and 'bpcore.distributed' not in sys.modules\n"
        "assert bpcore.rl.ReplayBuffer.__name__ == 'ReplayBuffer'\n"
        "assert callable(bpcore.distributed.init)\n"
        "try:\n"
        "    bpcore.no_such_part\n"
        "except AttributeError as error:\n"
        "    assert 'no_such_part' in str(error)\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
