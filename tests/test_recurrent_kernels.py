"""The recurrent cell operations' own kernel properties (the registry's checks do the rest).

Every cell operation is declared in the registry form, so ``test_kernels_cpu``
(Numba against the generic version: both dtypes, edge values, layouts),
``test_kernels_host`` (the CUDA bodies built for the host) and
``test_cuda_codegen`` (CuPy's generated source compiled by NVRTC) run it on the
cases of ``kernel_cases``.  Here: that it is in those checks, what they do not
look at (the float32 tanh's accuracy, the float64 one being libm's, other
dtypes, the CUDA wrappers' layout guard), and that the cases catch a wrong
gate derivative.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from kernel_cases import CASES, LAYOUTS, RECURRENT_OPS, compare, cuda_wrapper, relayout

from bpcore.backends.kernels import cuda_sources as src
from bpcore.backends.ops import OPERATIONS


def test_every_recurrent_operation_is_in_the_registry_checks() -> None:
    for name in RECURRENT_OPS:
        operation = OPERATIONS[name]
        assert operation.numba_module == "recurrent_numba", name
        assert operation.cuda_wrapper is not None, name
        assert name in CASES and f"bp_{name}" in src.ELEMENTWISE, name


def _tanh_through_the_cell(dtype: type, x: np.ndarray) -> np.ndarray:
    forward = OPERATIONS["rnn_cell_forward"].cpu()
    assert forward is not None
    xw = x.astype(dtype).reshape(1, -1)
    h = np.empty_like(xw)
    forward(xw, np.zeros_like(xw), np.zeros_like(xw), np.ones(1, dtype), False, h)
    return h[0]


def test_the_float32_tanh_is_within_its_bound_and_float64_is_libm() -> None:
    pytest.importorskip("numba", reason="Numba is not installed: the CPU runs the generic versions")
    x = np.concatenate([np.linspace(-12.0, 12.0, 4001), [-1e4, -50.0, 50.0, 1e4, 0.0, -0.0]])
    exact = np.tanh(x)
    f32 = _tanh_through_the_cell(np.float32, x)
    # The bound is on the float32 inputs the kernel sees.
    np.testing.assert_allclose(f32, np.tanh(x.astype(np.float32).astype(np.float64)), rtol=0, atol=3.5e-7)
    np.testing.assert_allclose(_tanh_through_the_cell(np.float64, x), exact, rtol=1e-15, atol=0)


def test_another_dtype_runs_the_generic_version() -> None:
    pytest.importorskip("numba", reason="Numba is not installed: the CPU runs the generic versions")
    implementation = OPERATIONS["lstm_cell_forward"].cpu()
    args = CASES["lstm_cell_forward"][0][1](np.random.default_rng(2), np.float64, 6, False)
    half = [a.astype(np.float16) if isinstance(a, np.ndarray) else a for a in args]
    expected = copy.deepcopy(half)
    OPERATIONS["lstm_cell_forward"].generic(np, *expected)
    assert implementation(*half) is half[-1]
    for got, want in zip(half, expected, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", RECURRENT_OPS)
def test_the_cuda_wrappers_launch_on_c_order_only(name: str) -> None:
    # The gate arrays are raw (flat C-order) in the kernels: any other layout must reach the generic version.
    launched: list[str] = []

    def provider(kernel_name: str) -> Any:
        def kernel(*args: Any) -> None:
            assert all(a.flags.c_contiguous for a in args if isinstance(a, np.ndarray)), kernel_name
            launched.append(kernel_name)

        return kernel

    implementation = cuda_wrapper(name, provider)
    args = CASES[name][0][1](np.random.default_rng(4), np.float64, 9, False)
    implementation(*copy.deepcopy(args))
    assert launched == [f"bp_{name}"]
    for layout in LAYOUTS:
        launched.clear()
        expected, got = copy.deepcopy(args), relayout(args, layout)
        OPERATIONS[name].generic(np, *expected)
        implementation(*got)
        assert launched == [], layout
        for e, g in zip(expected, got, strict=True):
            if isinstance(e, np.ndarray):
                np.testing.assert_allclose(g, e, rtol=1e-12, equal_nan=True, err_msg=layout)


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
