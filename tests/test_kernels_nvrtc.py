"""Every CUDA kernel compiles with NVRTC, the compiler CuPy uses; no GPU needed.

CuPy's high-level compile path looks up a device, so this goes through its
low-level NVRTC bindings.  The ElementwiseKernel bodies are wrapped the way
CuPy wraps them (see ``kernel_codegen``), so each body really compiles.
"""

from __future__ import annotations

import pytest

from bpcore.backends.kernels import cuda_sources as src
from bpcore.backends.ops import OPERATIONS

nvrtc = pytest.importorskip(
    "cupy_backends.cuda.libs.nvrtc", reason="CuPy is not installed (pip install 'bpcore[nvrtc]')"
)

import kernel_codegen  # noqa: E402

ARCH = "-arch=compute_90"


@pytest.fixture(scope="module")
def nvrtc_version() -> tuple[int, int]:
    try:
        return nvrtc.getVersion()
    except Exception as exc:  # the NVRTC library itself is missing
        pytest.skip(f"NVRTC is not available ({exc}); pip install 'bpcore[nvrtc]'")


def compile_program(code: str, name_expressions: tuple[str, ...] = ()) -> tuple[bool, str, dict[str, str]]:
    """Compile with NVRTC: (success, log, lowered names)."""
    program = nvrtc.createProgram(code, "bpcore_kernels.cu", [], [])
    try:
        for expression in name_expressions:
            nvrtc.addNameExpression(program, expression)
        try:
            nvrtc.compileProgram(program, [ARCH, *src.NVRTC_OPTIONS])
        except nvrtc.NVRTCError:
            return False, nvrtc.getProgramLog(program), {}
        lowered = {e: nvrtc.getLoweredName(program, e) for e in name_expressions}
        return True, nvrtc.getProgramLog(program), lowered
    finally:
        nvrtc.destroyProgram(program)


def test_every_cuda_kernel_compiles(nvrtc_version: tuple[int, int]) -> None:
    code, expressions = kernel_codegen.device_program()
    ok, log, lowered = compile_program(code, expressions)
    assert ok, log
    assert set(lowered) == set(src.RAW_NAME_EXPRESSIONS)
    for spec in src.ELEMENTWISE.values():
        assert f"void {kernel_codegen.symbol(spec.name, 'float32')}(" in code


def test_a_wrong_kernel_body_fails_to_compile(nvrtc_version: tuple[int, int]) -> None:
    broken = src.Elementwise("bp_broken", "T x", "T y", "y = bp_act_no_such_function(x)")
    code = (
        src.header_source() + kernel_codegen.LOOP_MACROS + kernel_codegen.elementwise_unit(broken, "float32")
    )
    ok, log, _ = compile_program(code)
    assert not ok
    assert "bp_act_no_such_function" in log


def test_every_operation_with_a_cuda_builder_names_existing_kernels() -> None:
    # Building the wrappers creates CuPy kernel objects (compiled on first launch only).
    pytest.importorskip("cupy")
    from bpcore.backends.kernels import cuda

    requested: list[str] = []

    def record(kernel_name: str) -> object:
        requested.append(kernel_name)
        assert kernel_name == "raw" or kernel_name in src.ELEMENTWISE or kernel_name in src.REDUCTIONS
        return object()

    for name, operation in OPERATIONS.items():
        if operation.cuda is not None and getattr(operation.cuda, "func", None) is cuda.build:
            cuda.make_implementation(name, record)
    # ... and every kernel source is used by some operation.
    assert set(requested) == set(src.ELEMENTWISE) | set(src.REDUCTIONS) | {"raw"}
