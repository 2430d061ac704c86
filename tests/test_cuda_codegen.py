"""CuPy's own generated source for every CUDA operation, compiled by NVRTC for sm_80 and sm_90; no GPU.

Every operation of the registry that has a CUDA implementation is driven
through bpcore's own wrapper (``Operation.cuda_wrapper``) with the inputs the
kernel tests use, for float32 and float64.  The wrapper gets the real CuPy
kernel objects; their launches run CuPy's device-free call path and CuPy's
source generators, and the programs CuPy would hand to NVRTC are compiled
for both architectures through CuPy's own compiler path (see
``cupy_codegen``).  So a kernel body that calls an undefined function, an
argument of the wrong dtype, a wrong scalar width in a raw launch, or
anything CuPy's generated wrapper code does not accept around our bodies
fails here, on any machine with the ``nvrtc`` test extra.

New operations get the check by being declared in the registry with the
short ``cuda=Cuda(...)`` form and cases in ``kernel_cases``.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

import cupy_codegen as cg
import numpy as np
import pytest
from kernel_cases import CASES, cuda_wrapper

from bpcore.backends.kernels import cuda_sources as src
from bpcore.backends.ops import OPERATIONS

REASON = cg.unavailable()
pytestmark = pytest.mark.skipif(
    REASON is not None, reason=f"CuPy's code generation cannot be checked: {REASON}"
)

# Every operation declared with the short cuda= form (its CUDA wrapper can be built over any kernels).
CUDA_OPS = sorted(name for name, op in OPERATIONS.items() if op.cuda_wrapper is not None)
DTYPES = {"f32": np.float32, "f64": np.float64}
# 41 rows of 16 features: 656 elements, CUB's two-pass reduction; 2 rows: 32, CuPy's simple reduction.
ROWS = (41, 2)


@dataclasses.dataclass
class Generated:
    """What the wrappers generated, per (operation, dtype label)."""

    recorder: cg.Recorder
    programs: dict[tuple[str, str], list[cg.Program]]
    launches: dict[tuple[str, str], list[cg.RawLaunch]]


def _generate(name: str, dtype: Any, recorder: cg.Recorder) -> tuple[list[cg.Program], list[cg.RawLaunch]]:
    local = cg.Recorder()
    implementation = cuda_wrapper(name, cg.provider(local))
    rng = np.random.default_rng(0)
    for _label, make in CASES[name]:
        for rows in ROWS:
            implementation(*make(rng, dtype, rows, False))
    for program in local.programs.values():
        recorder.add(program)
    recorder.raw_launches += local.raw_launches
    return list(local.programs.values()), local.raw_launches


@pytest.fixture(scope="session")
def generated() -> Generated:
    recorder = cg.Recorder()
    programs, launches = {}, {}
    for name in CUDA_OPS:
        for label, dtype in DTYPES.items():
            programs[name, label], launches[name, label] = _generate(name, dtype, recorder)
    return Generated(recorder, programs, launches)


@pytest.fixture(scope="session")
def compiled(generated: Generated, tmp_path_factory: pytest.TempPathFactory) -> dict[Any, cg.Compiled]:
    # A fresh kernel cache per session: every program really goes through NVRTC.
    cache = tmp_path_factory.mktemp("cupy_kernel_cache")
    return cg.compile_programs(list(generated.recorder.programs.values()), cache_dir=str(cache))


def test_every_cuda_operation_has_kernel_cases() -> None:
    assert set(CUDA_OPS) <= set(CASES), sorted(set(CUDA_OPS) - set(CASES))


@pytest.mark.slow
@pytest.mark.parametrize("label", sorted(DTYPES))
@pytest.mark.parametrize("name", CUDA_OPS)
def test_cupy_generated_source_compiles(
    name: str, label: str, generated: Generated, compiled: dict[Any, cg.Compiled]
) -> None:
    programs = generated.programs[name, label]
    assert programs, f"{name}: the wrapper generated no program"
    for program in programs:
        for arch in cg.ARCHITECTURES:
            result = compiled[program.key, arch]
            assert result.ok, f"{name} ({label}, {program.path}) fails for sm_{arch}:\n{result.log}"
            assert result.binary_size > 0


@pytest.mark.slow
def test_every_raw_launch_matches_the_kernel_signature(
    generated: Generated, compiled: dict[Any, cg.Compiled]
) -> None:
    raw_programs = [p for p in generated.recorder.programs.values() if p.path == "raw"]
    assert len(raw_programs) == (1 if src.RAW_KERNELS else 0)
    if not raw_programs:
        return
    (raw,) = raw_programs
    launches = [(name, launch) for (name, _label), found in generated.launches.items() for launch in found]
    assert {launch.expression for _, launch in launches} == set(src.RAW_NAME_EXPRESSIONS)
    for arch in cg.ARCHITECTURES:
        lowered = compiled[raw.key, arch].lowered
        assert set(lowered) == set(src.RAW_NAME_EXPRESSIONS)
        for name, launch in launches:
            signature = cg.kernel_signature(lowered[launch.expression])
            if signature is None:
                pytest.skip("c++filt (binutils) is not installed to read the kernel's parameter types")
            assert cg.check_raw_launch(launch, signature) == [], name


@pytest.mark.slow
def test_both_reduction_paths_of_cupy_are_generated(generated: Generated) -> None:
    paths = collections.Counter(p.path for p in generated.recorder.programs.values())
    # CUB's two passes (656 elements) and the simple kernel (32 elements), for both dtypes.
    reductions = 2 * len(src.REDUCTIONS)
    assert paths["cub-pass1"] == paths["cub-pass2"] == paths["reduction"] == reductions, paths


def test_every_kernel_source_is_used_by_an_operation_and_named_after_it() -> None:
    requested: list[str] = []

    def record(kernel_name: str) -> object:
        requested.append(kernel_name)
        assert kernel_name == "raw" or kernel_name in src.ELEMENTWISE or kernel_name in src.REDUCTIONS
        return object()

    raw_names = []
    for name in CUDA_OPS:
        before = len(requested)
        cuda_wrapper(name, record)
        for kernel_name in requested[before:]:
            assert kernel_name in ("raw", f"bp_{name}") or kernel_name.startswith(f"bp_{name}_"), name
        if "raw" in requested[before:]:
            raw_names += [k for k in src.RAW_KERNELS if k == f"bp_{name}" or k.startswith(f"bp_{name}_")]
    assert set(requested) == set(src.ELEMENTWISE) | set(src.REDUCTIONS) | {"raw"}
    # Every raw kernel belongs, by its name, to an operation that launches raw kernels.
    assert sorted(raw_names) == sorted(src.RAW_KERNELS)


# --- the check fails when it must -------------------------------------------------------------------
def test_an_undefined_function_in_a_kernel_body_fails_to_compile(tmp_path: Any) -> None:
    recorder = cg.Recorder()
    broken = src.Elementwise("bp_broken", "T x", "T y", "y = bp_no_such_function_at(x)")
    cg.elementwise_call(broken, recorder)(np.ones(8, np.float32), np.empty(8, np.float32))
    (program,) = recorder.programs.values()
    results = cg.compile_programs([program], ("90",), cache_dir=str(tmp_path))
    result = results[program.key, "90"]
    assert not result.ok
    assert "bp_no_such_function_at" in result.log


def test_a_wrongly_typed_scalar_in_a_kernel_body_fails_to_compile(tmp_path: Any) -> None:
    # A bool scalar where the body needs a pointer: CuPy declares it bool, NVRTC must refuse it.
    recorder = cg.Recorder()
    wrong = src.Elementwise("bp_wrong_scalar", "T x, bool flag", "T y", "y = *flag + x")
    cg.elementwise_call(wrong, recorder)(np.ones(8, np.float64), True, np.empty(8, np.float64))
    (program,) = recorder.programs.values()
    result = cg.compile_programs([program], ("80",), cache_dir=str(tmp_path))[program.key, "80"]
    assert not result.ok


def test_an_array_of_the_wrong_dtype_is_refused_by_cupy() -> None:
    # raw int64 labels given int32 labels: CuPy's own parameter type decision refuses it.
    implementation = cuda_wrapper(
        "softmax_cross_entropy_index_backward", cg.provider(cg.Recorder())
    )
    probs, labels, scale, out = CASES["softmax_cross_entropy_index_backward"][0][1](
        np.random.default_rng(0), np.float32, 8, False
    )
    with pytest.raises(TypeError, match="Type is mismatched"):
        implementation(probs, labels.astype(np.int32), scale, out)


def test_a_raw_launch_with_a_wrong_scalar_width_is_caught(tmp_path: Any) -> None:
    # The softmax wrapper as it would be with np.int32(n) for the kernel's long long n.
    recorder = cg.Recorder()
    kernels = cg.provider(recorder)

    class NarrowingModule:
        def __init__(self, module: Any) -> None:
            self.module = module

        def get_function(self, expression: str) -> Any:
            launch = self.module.get_function(expression)

            def narrowed(grid: Any, block: Any, args: tuple[Any, ...]) -> None:
                launch(grid, block, tuple(np.int32(a) if isinstance(a, np.int64) else a for a in args))

            return narrowed

    implementation = cuda_wrapper(
        "softmax_cross_entropy_forward", lambda k: NarrowingModule(kernels(k)) if k == "raw" else kernels(k)
    )
    implementation(
        *CASES["softmax_cross_entropy_forward"][0][1](np.random.default_rng(0), np.float32, 8, False)
    )
    (launch,) = recorder.raw_launches
    (program,) = recorder.programs.values()
    lowered = cg.compile_programs([program], ("90",), cache_dir=str(tmp_path))[program.key, "90"].lowered
    signature = cg.kernel_signature(lowered[launch.expression])
    if signature is None:
        pytest.skip("c++filt (binutils) is not installed to read the kernel's parameter types")
    problems = cg.check_raw_launch(launch, signature)
    assert problems == [
        f"{launch.expression}: argument 4 is int, the kernel takes long long",
        f"{launch.expression}: argument 5 is int, the kernel takes long long",
    ]
