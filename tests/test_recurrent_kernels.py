"""The recurrent cell kernels against their generic versions: Numba, the CUDA bodies on the host, NVRTC.

* every Numba kernel on the cases of ``kernel_cases`` (both dtypes, edge
  pre-activations, padded rows), and in layouts it must hand to the generic
  version;
* the same CUDA kernel bodies that NVRTC compiles, built by the host C++
  compiler and driven through the wrappers that launch them on a GPU;
* CuPy's own generated source for each kernel (``cupy_codegen``), compiled by
  NVRTC for sm_80 and sm_90, where the ``nvrtc`` test extra is installed.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from typing import Any

import kernel_codegen
import numpy as np
import pytest
from kernel_cases import CASES, RECURRENT_OPS, compare, compare_layout

from bpcore.backends.kernels import recurrent_cuda
from bpcore.backends.ops import OPERATIONS

DTYPES = [np.float32, np.float64]
IDS = ["f32", "f64"]


def test_every_recurrent_operation_has_all_three_versions() -> None:
    for name in RECURRENT_OPS:
        operation = OPERATIONS[name]
        assert operation.cpu is not None and operation.cuda is not None, name
        assert name in CASES and name in recurrent_cuda.KERNEL_OF


# --- Numba -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("name", RECURRENT_OPS)
def test_numba_kernel_matches_generic(name: str, dtype: type) -> None:
    pytest.importorskip("numba", reason="Numba is not installed: the CPU runs the generic versions")
    implementation = OPERATIONS[name].cpu()  # type: ignore[misc]
    rng = np.random.default_rng(7)
    for _label, make in CASES[name]:
        for rows in (1, 37):
            for edge in (False, True):
                compare(name, implementation, make(rng, dtype, rows, edge))


@pytest.mark.parametrize("name", RECURRENT_OPS)
def test_numba_kernel_hands_other_layouts_to_the_generic_version(name: str) -> None:
    pytest.importorskip("numba", reason="Numba is not installed: the CPU runs the generic versions")
    implementation = OPERATIONS[name].cpu()  # type: ignore[misc]
    for _label, make in CASES[name]:
        compare_layout(name, implementation, make(np.random.default_rng(1), np.float64, 9, False), "strided")


def test_a_wrong_gate_derivative_is_caught() -> None:
    # The comparison must fail when a kernel is wrong: swap two gate blocks of the LSTM backward.
    implementation = OPERATIONS["lstm_cell_backward"].generic

    def wrong(*args: Any) -> Any:
        implementation(np, *args)
        dgates = args[-1]
        size = dgates.shape[1] // 4
        first = dgates[:, :size].copy()
        dgates[:, :size] = dgates[:, size : 2 * size]
        dgates[:, size : 2 * size] = first

    args = CASES["lstm_cell_backward"][0][1](np.random.default_rng(0), np.float64, 8, False)
    with pytest.raises(AssertionError, match="differs from the generic version"):
        compare("lstm_cell_backward", wrong, args)


# --- the CUDA bodies, compiled for the host ------------------------------------------------------------
COMPILER = shutil.which("g++") or shutil.which("c++")


@pytest.fixture(scope="module")
def host_library(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    if COMPILER is None:
        pytest.skip("no host C++ compiler (g++) to build the CUDA kernels for the CPU")
    from bpcore.backends.kernels import cuda_sources as src

    parts = [kernel_codegen.HOST_EMULATION, src.header_source(), kernel_codegen.LOOP_MACROS]
    for dtype in kernel_codegen.CTYPES:
        parts += [kernel_codegen.elementwise_unit(spec, dtype) for spec in recurrent_cuda.SPECS.values()]
    folder = tmp_path_factory.mktemp("recurrent_host_kernels")
    source, target = folder / "recurrent.cpp", folder / "recurrent.so"
    source.write_text("\n".join(parts))
    result = subprocess.run(
        [COMPILER, "-O1", "-std=c++17", "-shared", "-fPIC", "-o", str(target), str(source)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return ctypes.CDLL(str(target))


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("name", RECURRENT_OPS)
def test_cuda_kernel_arithmetic_matches_generic(name: str, dtype: type, host_library: ctypes.CDLL) -> None:
    from test_kernels_host import HostElementwise

    implementation = recurrent_cuda.make_implementation(
        name, lambda kernel_name: HostElementwise(recurrent_cuda.SPECS[kernel_name], host_library)
    )
    rng = np.random.default_rng(11)
    for _label, make in CASES[name]:
        for rows in (1, 23):
            for edge in (False, True):
                compare(name, implementation, make(rng, dtype, rows, edge))


# --- CuPy's generated source, compiled by NVRTC ----------------------------------------------------------
@pytest.mark.slow
def test_cupy_generated_source_of_every_recurrent_kernel_compiles(tmp_path: Any) -> None:
    cg = pytest.importorskip("cupy_codegen")
    reason = cg.unavailable()
    if reason is not None:
        pytest.skip(f"CuPy's code generation cannot be checked: {reason}")
    recorder = cg.Recorder()
    rng = np.random.default_rng(0)
    for name in RECURRENT_OPS:
        implementation = recurrent_cuda.make_implementation(
            name, lambda kernel_name: cg.elementwise_call(recurrent_cuda.SPECS[kernel_name], recorder)
        )
        for dtype in DTYPES:
            for _label, make in CASES[name]:
                implementation(*make(rng, dtype, 13, False))
    programs = list(recorder.programs.values())
    assert {p.path for p in programs} == {"elementwise"}
    assert len(programs) == 2 * len(recurrent_cuda.SPECS)  # each kernel, for float32 and float64
    compiled = cg.compile_programs(programs, cache_dir=str(tmp_path))
    for program in programs:
        for arch in cg.ARCHITECTURES:
            result = compiled[program.key, arch]
            assert result.ok, f"{program.path} fails for sm_{arch}:\n{result.log}"
            assert result.binary_size > 0
