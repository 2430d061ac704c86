"""The source distribution carries what it needs to run its own tests, and the licence."""

from __future__ import annotations

from pathlib import Path

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
