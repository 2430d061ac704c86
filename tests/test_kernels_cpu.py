"""Every Numba kernel against its generic version: both dtypes, both builds, edge values."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from bpcore.backends.ops import OPERATIONS

pytest.importorskip("numba", reason="Numba is not installed: the CPU runs the generic versions")

from kernel_cases import CASES, LAYOUTS, compare, compare_layout

from bpcore.backends.kernels import cpu, numba_jit

# Every operation declared with the short cpu= form, whatever module its kernel lives in.
CPU_OPS = sorted(name for name, op in OPERATIONS.items() if op.numba_module is not None)
SMALL, LARGE = 37, 512  # rows: below and above every (lowered) parallel threshold
PARALLEL_MIN = 4096  # elements; the tests lower every threshold to this
SERIAL_ONLY = {
    "softmax_cross_entropy_backward",
    "softmax_cross_entropy_index_backward",
    "binary_cross_entropy_logits_forward",
    "binary_cross_entropy_logits_backward",
    "binary_cross_entropy_backward",
    "polyak_update",
    "clamp_inplace",
    "gather_rows",
    "scatter_rows",
    "double_q_target",
    "chosen_huber",
    "small_dense_forward",
    "outer_product",
    "column_sums",
    "relu_bias_backward",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "embedding_backward",
    "clip_norm_inplace",
    "rnn_cell_forward",
    "rnn_cell_backward",
    "lstm_cell_forward",
    "lstm_cell_backward",
    "gru_cell_forward",
    "gru_cell_backward",
}


def test_every_cpu_kernel_has_cases() -> None:
    assert set(CPU_OPS) <= set(CASES), sorted(set(CPU_OPS) - set(CASES))


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Lower the parallel thresholds, and record which build each kernel call ran."""
    for kind in cpu.PARALLEL_MIN:
        monkeypatch.setitem(cpu.PARALLEL_MIN, kind, PARALLEL_MIN)
    ran: list[str] = []
    original = cpu.pick

    def spy(pair, size, kind):  # type: ignore[no-untyped-def]
        kernel = original(pair, size, kind)
        wanted = "parallel" if size >= PARALLEL_MIN and pair.has_parallel else "serial"
        ran.append(wanted if kernel is (pair.parallel if wanted == "parallel" else pair.serial) else "wrong")
        return kernel

    monkeypatch.setattr(cpu, "pick", spy)
    return ran


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", CPU_OPS)
def test_cpu_kernel_matches_generic(name: str, dtype: type, builds: list[str]) -> None:
    implementation = OPERATIONS[name].cpu()
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    for label, make in CASES[name]:
        # Edge values on the small (serial) size; the large size runs the
        # parallel build where the kernel has one.
        # The parallel builds are compiled in float32 only, to keep the cold
        # (first-run) compile time of this module down: their code is the
        # serial build's, which runs in both dtypes.
        sizes = ((SMALL, False), (SMALL, True)) + (((LARGE, False),) if dtype == np.float32 else ())
        for rows, edge in sizes:
            builds.clear()
            compare(name, implementation, make(rng, dtype, rows, edge))
            assert builds and "wrong" not in builds, (label, rows, builds)
            if rows == LARGE:
                assert "parallel" in builds or name in SERIAL_ONLY, (label, builds)


def test_kernels_with_a_parallel_build() -> None:
    for name in CPU_OPS:
        OPERATIONS[name].cpu()
    assert {name for name in CPU_OPS if not numba_jit.pair(name).has_parallel} == SERIAL_ONLY


def test_every_cpu_kernel_is_named_after_its_operation() -> None:
    for name in CPU_OPS:
        OPERATIONS[name].cpu()
    assert set(CPU_OPS) <= set(numba_jit.FUNCTIONS)
    # ... and every Numba kernel serves the operation of its name.
    assert set(numba_jit.FUNCTIONS) <= set(OPERATIONS), sorted(set(numba_jit.FUNCTIONS) - set(OPERATIONS))


def test_bias_forward_writes_the_pre_activation_and_may_share_out() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 16)).astype(np.float32)
    b = rng.normal(size=16).astype(np.float32)
    expected = np.maximum(z + b, 0)
    OPERATIONS["bias_relu_forward"].cpu()(z, b, z)
    np.testing.assert_allclose(z, expected, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", [(1, 5), (3, 2), (64, 2), (64, 128), (512, 128), (40, 1), (0, 4)])
def test_dense_bias_gradient_and_outer_product_are_bit_identical_to_numpy(dtype: type, shape: tuple) -> None:
    # A Dense layer's step uses these in place of g.sum(axis=0) and a broadcast multiply;
    # identical bits keep every training run (a seeded DQN, say) exactly as it was.
    rng = np.random.default_rng(2)
    g = rng.normal(size=shape).astype(dtype)
    sums = np.full(shape[1], np.nan, dtype)
    OPERATIONS["column_sums"].cpu()(g, sums)
    np.testing.assert_array_equal(sums, g.sum(axis=0))
    a, b = g[:, 0].copy(), rng.normal(size=shape[0] + 3).astype(dtype)
    outer = np.full((a.size, b.size), np.nan, dtype)
    OPERATIONS["outer_product"].cpu()(a, b, outer)
    np.testing.assert_array_equal(outer, a[:, None] * b[None, :])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("classes", [1, 2, 7, 8, 9, 16, 17, 65, 130])
def test_softmax_cross_entropy_finds_the_largest_logit_wherever_it_is(dtype: type, classes: int) -> None:
    # The row's max runs in eight chains plus a remainder: put a large logit at every position
    # (each chain and the remainder), one row per position, and a NaN at every position.
    rng = np.random.default_rng(classes)
    rows = np.arange(classes)
    logits = rng.normal(size=(classes, classes)).astype(dtype)
    logits[rows, rows] = 1e4  # exp(1e4 - 0) overflows unless the row is shifted by its max
    labels = rng.integers(0, classes, size=classes).astype(np.int64)
    probs, losses = np.empty_like(logits), np.empty(classes, dtype)
    forward = OPERATIONS["softmax_cross_entropy_index_forward"]
    forward.cpu()(logits, labels, probs, losses)
    expected_probs, expected_losses = np.empty_like(probs), np.empty_like(losses)
    forward.generic(np, logits, labels, expected_probs, expected_losses)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(probs, expected_probs, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(losses, expected_losses, rtol=tolerance, atol=tolerance)
    assert np.isfinite(losses).all()
    logits[rows, rows] = np.nan
    forward.cpu()(logits, labels, probs, losses)
    assert np.isnan(losses).all() and np.isnan(probs).all(axis=1).all()


def test_non_contiguous_arrays_fall_back_to_the_generic_version() -> None:
    rng = np.random.default_rng(1)
    gy = rng.normal(size=(8, 32))[:, ::2]
    y = rng.random((8, 32))[:, ::2]
    out = np.empty((8, 32))[:, ::2]
    OPERATIONS["sigmoid_backward"].cpu()(gy, y, out)
    np.testing.assert_allclose(out, gy * y * (1 - y), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_optimiser_state_subnormals_are_flushed(dtype: type) -> None:
    tiny = np.finfo(dtype).tiny
    n = 64
    param = np.ones(n, dtype)
    grad = np.zeros(n, dtype)
    exp_avg = np.full(n, tiny * 0.5, dtype)  # already subnormal
    exp_avg_sq = np.full(n, tiny * 1.5, dtype)  # becomes subnormal after * beta2? no: stays normal
    exp_avg_sq[: n // 2] = tiny * 0.9
    generic_m, generic_v = exp_avg.copy(), exp_avg_sq.copy()
    OPERATIONS["adam_step"].generic(
        np,
        param.copy(),
        grad,
        generic_m,
        generic_v,
        np.empty(0, dtype),
        1e-3,
        0.9,
        0.999,
        1e-8,
        0.0,
        3,
        False,
        False,
    )
    assert np.any((generic_m != 0) & (np.abs(generic_m) < tiny)), "the generic path keeps subnormals"
    OPERATIONS["adam_step"].cpu()(
        param, grad, exp_avg, exp_avg_sq, np.empty(0, dtype), 1e-3, 0.9, 0.999, 1e-8, 0.0, 3, False, False
    )
    for state in (exp_avg, exp_avg_sq):
        assert not np.any((state != 0) & (np.abs(state) < tiny))
    assert np.all(exp_avg == 0)
    assert np.all(exp_avg_sq[: n // 2] == 0)
    np.testing.assert_array_equal(param, np.ones(n, dtype))


def test_without_numba_everything_runs_the_generic_version() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["numba"] = None
        import numpy as np
        import bpcore
        from bpcore.backends import get_backend
        backend = get_backend("cpu", kernels="fused")
        table = backend.dispatch_table()
        assert set(table.values()) == {"generic"}, table
        x = np.linspace(-3, 3, 12).reshape(3, 4)
        out = np.empty_like(x)
        backend.ops.sigmoid_forward(x, out)
        assert np.allclose(out, 1 / (1 + np.exp(-x)))
        print("generic-ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "generic-ok" in result.stdout


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", CPU_OPS)
def test_cpu_kernel_wrappers_take_any_memory_layout(name: str, layout: str) -> None:
    implementation = OPERATIONS[name].cpu()
    rng = np.random.default_rng(7)
    for _label, make in CASES[name]:
        compare_layout(name, implementation, make(rng, np.float32, 9, False), layout)


# --- lazy loading: a process pays only for the kernels it runs -----------------------------------------
LOADED = """
import json, logging, sys
import numpy as np
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
from bpcore.backends import get_backend
from bpcore.backends.kernels import numba_jit
backend = get_backend("cpu", kernels="fused")
x = np.linspace(-1.0, 1.0, 64).reshape(8, 8)
backend.ops.relu_backward(x, x, np.empty_like(x))
print(json.dumps({
    "pairs": sorted(numba_jit.PAIRS),
    "loaded": sorted(
        d.py_func.__name__ for p in numba_jit.PAIRS.values() for d in p.dispatchers if d.signatures
    ),
    "modules": sorted(m for m in sys.modules if m.startswith("bpcore.backends.kernels.")),
}))
"""


def _run_one_operation(cache: str) -> tuple[dict[str, list[str]], str]:
    import json
    import os

    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    command = [sys.executable, "-c", LOADED]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


@pytest.mark.slow
def test_a_process_compiles_and_loads_only_the_kernels_it_uses(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cold, cold_log = _run_one_operation(str(tmp_path))
    assert cold["pairs"] == ["relu_backward"]  # no dispatcher exists for any other operation
    assert cold["loaded"] == ["relu_backward_serial"]  # small array: the serial build, one dtype
    assert "bpcore.backends.kernels.buffer_numba" not in cold["modules"]
    assert "bpcore.backends.kernels.pooling_numba" not in cold["modules"]
    # The cold cache's compilation is logged with its time, once, under the bpcore logger ...
    compiled = [line for line in cold_log.splitlines() if "compiled the Numba kernel" in line]
    assert len(compiled) == 1 and compiled[0].startswith("bpcore INFO"), cold_log
    assert "relu_backward (serial)" in compiled[0] and "float64" in compiled[0]
    # ... and a second process loads it from the disk cache, silently.
    warm, warm_log = _run_one_operation(str(tmp_path))
    assert warm == cold
    assert "compiled the Numba kernel" not in warm_log, warm_log


def test_the_declare_contract_with_zero_argument_builders_still_works() -> None:
    from bpcore.backends.numpy_backend import NumpyBackend
    from bpcore.backends.ops import declare

    calls: list[str] = []

    def build_cpu():  # type: ignore[no-untyped-def]
        calls.append("built")

        def halve(x, out):  # type: ignore[no-untyped-def]
            np.multiply(x, 0.5, out=out)
            return out

        return halve

    name = "test_only_halve"

    @declare(name, "out = x / 2", cpu=build_cpu, cuda=lambda: (lambda x, out: out))
    def halve(xp, x, out):  # type: ignore[no-untyped-def]
        return xp.divide(x, 2.0, out=out)

    try:
        backend = NumpyBackend(kernels="fused")
        assert backend.resolve(name)[1] == "numba" and calls == ["built"]
        x = np.arange(4.0)
        np.testing.assert_array_equal(backend.ops.test_only_halve(x, np.empty(4)), x / 2)
        # Plain builders: no wrapper over other kernels, no kernel module known.
        assert OPERATIONS[name].cuda_wrapper is None and OPERATIONS[name].numba_module is None
        assert NumpyBackend(kernels="generic").resolve(name)[1] == "generic"
    finally:
        del OPERATIONS[name]
