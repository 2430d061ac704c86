"""Importing bpcore is silent, touches no GPU, and installs no top-level ``backends``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import bpcore

ROOT = Path(__file__).resolve().parent.parent


def run_python(
    code: str, cwd: Path, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that sees bpcore only as the ``bpcore`` package.

    ``pythonpath`` holds a single link to the package folder, as an installed
    wheel would, so the repository root (and its ``backends`` folder) is not
    importable unless the package itself leaks it.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BPCORE_DEVICE")}
    env.update(extra_env or {})
    env["PYTHONPATH"] = str(cwd / "site")
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A directory outside the repository whose ``site`` folder offers only ``bpcore``."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "bpcore").symlink_to(ROOT / "bpcore", target_is_directory=True)
    return tmp_path


@pytest.mark.parametrize("device", ["cpu", "cuda", "auto", "nonsense"])
def test_import_is_silent_and_leaves_cupy_alone(elsewhere: Path, device: str) -> None:
    code = (
        "import sys, bpcore, bpcore.layers, bpcore.init\n"
        "from bpcore.gradcheck import gradcheck\n"
        "assert 'cupy' not in sys.modules, 'importing bpcore imported cupy'\n"
        "import bpcore.backends.device as d\n"
        "assert d._default_device is None, 'the default device was resolved on import'\n"
    )
    result = run_python(code, elsewhere, {"BPCORE_DEVICE": device})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""


def test_a_cpu_network_never_imports_cupy(elsewhere: Path) -> None:
    code = (
        "import sys, numpy as np, bpcore\n"
        "from bpcore.layers import Dense, ReLU, BatchNorm, Dropout, Residual\n"
        "layers = [Dense(3, 4), ReLU(), BatchNorm(4), Dropout(0.5), Residual(Dense(4, 4))]\n"
        "net = bpcore.Network(layers, seed=0)\n"
        "y = net.forward(np.ones((2, 3), np.float32), training=True)\n"
        "net.backward(np.ones_like(y))\n"
        "assert 'cupy' not in sys.modules\n"
    )
    result = run_python(code, elsewhere)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""


def test_backends_is_a_subpackage_only(elsewhere: Path) -> None:
    assert bpcore.backends.__name__ == "bpcore.backends"
    code = (
        "import importlib.util, sys, bpcore\n"
        "assert bpcore.backends.__name__ == 'bpcore.backends'\n"
        "assert importlib.util.find_spec('backends') is None, 'a top-level backends module is importable'\n"
        "assert 'backends' not in sys.modules\n"
    )
    result = run_python(code, elsewhere)
    assert result.returncode == 0, result.stderr


def test_the_package_list_holds_no_top_level_backends() -> None:
    tomllib = pytest.importorskip("tomllib")
    setuptools = pytest.importorskip("setuptools")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    find = config["tool"]["setuptools"]["packages"]["find"]
    packages = setuptools.find_packages(
        where=str(ROOT), include=find.get("include", ["*"]), exclude=find.get("exclude", ())
    )
    assert "bpcore" in packages and "bpcore.backends" in packages and "bpcore.backends.ops" in packages
    assert not [name for name in packages if name == "backends" or name.startswith("backends.")]
    assert not [name for name in packages if name == "tests" or name.startswith("tests.")]


def test_public_layer_names_exist() -> None:
    from bpcore import layers

    for name in (
        "Dense",
        "Identity",
        "Sigmoid",
        "Tanh",
        "ReLU",
        "LeakyReLU",
        "ELU",
        "GELU",
        "SiLU",
        "Softplus",
        "Softmax",
        "Dropout",
        "BatchNorm",
        "Residual",
    ):
        assert isinstance(getattr(layers, name), type), name
        assert name in layers.__all__


# --- layering: backends/kernels (the kernels and their shared plumbing) sits below backends/ops ----------
def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in the file (lazy imports too), as a dotted name.

    Relative imports are resolved against the file's package (``backends.kernels``).
    """
    import ast

    package = ["backends", path.parent.name]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


KERNEL_MODULES = sorted((ROOT / "backends" / "kernels").glob("*.py"))


@pytest.mark.parametrize("path", KERNEL_MODULES, ids=[p.name for p in KERNEL_MODULES])
def test_the_kernels_never_import_the_operations(path: Path) -> None:
    upper = ("backends.ops", "bpcore.backends.ops", "backends.base", "bpcore")
    wrong = sorted(m for m in _imported_modules(path) if m.startswith(upper) and m != "bpcore_math")
    assert wrong == [], f"{path.name} imports {wrong}: backends/kernels must not depend on the layers above"


def test_the_import_check_sees_a_lazy_relative_import_of_the_operations(tmp_path: Path) -> None:
    fake = tmp_path / "backends" / "kernels" / "fake.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("def f():\n    from ..ops.registry import OPERATIONS\n    from . import layout\n")
    found = _imported_modules(fake)
    assert "backends.ops.registry" in found and "backends.kernels.layout" in found
