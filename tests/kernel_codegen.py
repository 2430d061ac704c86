"""Wrap bpcore's CUDA kernel sources into one host C++ translation unit.

The host C++ compiler builds the same header and kernel bodies that the GPU
runs into a shared library whose element loop runs sequentially
(``test_kernels_host``), so the kernels' arithmetic is checked on the CPU.
The loop binds each parameter name to the current element as CuPy's
generated code does (``const T &x = _raw_x[i]`` for inputs, ``T &y`` for
outputs, ``raw`` parameters as whole arrays, ``i`` the element index).  What
CuPy itself generates around the bodies, and NVRTC's verdict on it, is
checked with CuPy's real generator in ``test_cuda_codegen``.

The templated raw kernels get host launchers that run every (block, thread)
of a launch in turn; they use no shared memory or synchronisation, so the
emulation is exact.
"""

from __future__ import annotations

import contextlib
import ctypes
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bpcore.backends.kernels import cuda_sources as src

CTYPES = {"float32": "float", "float64": "double"}
SCALAR_CTYPES = {
    "float64": "double",
    "float32": "float",
    "int64": "long long",
    "int32": "int",
    "bool": "bool",
}

LOOP_MACROS = r"""
#define BP_ELEMENT_LOOP(i, n) for (long long i = 0; i < (n); ++i)
"""

HOST_EMULATION = r"""
#define BP_HOST_EMULATION 1
struct bp_dim3 { unsigned int x, y, z; };
static bp_dim3 threadIdx, blockIdx, blockDim, gridDim;
// The threads of a launch run one after another here, so a plain add is atomic.
template <typename T> T atomicAdd(T* address, T value) {
    const T old = *address; *address = old + value; return old;
}
"""

# Host launchers of the raw kernels: C argument lists (T is the element type).
RAW_SIGNATURES = {
    "bp_softmax_cross_entropy_forward": (
        "const T* logits, const T* target, T* probs, T* losses, long long n, long long k",
        "logits, target, probs, losses, n, k",
    ),
    "bp_softmax_cross_entropy_index_forward": (
        "const T* logits, const long long* labels, T* probs, T* losses, long long n, long long k",
        "logits, labels, probs, losses, n, k",
    ),
    "bp_batchnorm_forward_train_partial": (
        "const T* x, double* partial, long long n, long long f, long long chunk, long long chunks",
        "x, partial, n, f, chunk, chunks",
    ),
    "bp_batchnorm_forward_train_stats": (
        "const T* x, const double* partial, T* running_mean, T* running_var, double momentum, double eps, "
        "T* inv_std, double* mean, long long n, long long f, long long chunks",
        "x, partial, running_mean, running_var, momentum, eps, inv_std, mean, n, f, chunks",
    ),
    "bp_batchnorm_forward_train_apply": (
        "const T* x, const T* gamma, const T* beta, const double* mean, const T* inv_std, T* out, T* xhat, "
        "long long n, long long f",
        "x, gamma, beta, mean, inv_std, out, xhat, n, f",
    ),
    "bp_batchnorm_backward_partial": (
        "const T* gy, const T* xhat, double* partial, long long n, long long f, long long chunk, "
        "long long chunks",
        "gy, xhat, partial, n, f, chunk, chunks",
    ),
    "bp_batchnorm_backward_stats": (
        "const double* partial, T* grad_gamma, T* grad_beta, double* sums, bool accumulate, long long f, "
        "long long chunks",
        "partial, grad_gamma, grad_beta, sums, accumulate, f, chunks",
    ),
    "bp_batchnorm_backward_apply": (
        "const T* gy, const T* xhat, const T* gamma, const T* inv_std, const double* sums, T* out, "
        "long long n, long long f",
        "gy, xhat, gamma, inv_std, sums, out, n, f",
    ),
}


def symbol(kernel_name: str, dtype: str) -> str:
    """The C symbol of a wrapped kernel for one dtype."""
    return f"{kernel_name}_{dtype}"


def _c_type(param: src.Param, ctype: str) -> str:
    if param.type == "S":  # the index placeholder: an integer array in every call bpcore makes
        return "long long"
    if len(param.type) == 1 and param.type.isupper():
        return ctype
    return SCALAR_CTYPES[param.type]


def elementwise_arguments(spec: src.Elementwise) -> list[tuple[src.Param, bool]]:
    """(parameter, is_output) in call order: inputs, outputs, then the size."""
    return [(p, False) for p in src.parse_params(spec.in_params)] + [
        (p, True) for p in src.parse_params(spec.out_params)
    ]


def elementwise_unit(spec: src.Elementwise, dtype: str) -> str:
    """One ElementwiseKernel, wrapped as CuPy wraps it, for one dtype."""
    ctype = CTYPES[dtype]
    decls, binds = [], []
    for param, is_output in elementwise_arguments(spec):
        c = _c_type(param, ctype)
        if param.raw:
            decls.append(f"{'' if is_output else 'const '}{c}* {param.name}")
        elif param.is_array:
            decls.append(f"{'' if is_output else 'const '}{c}* _raw_{param.name}")
            binds.append(
                f"{c} &{param.name} = _raw_{param.name}[i];"
                if is_output
                else f"const {c} &{param.name} = _raw_{param.name}[i];"
            )
        else:
            decls.append(f"{c} {param.name}")
    decls.append("long long _n")
    name = symbol(spec.name, dtype)
    return (
        f"namespace ns_{name} {{\n"
        f"typedef {ctype} T;\ntypedef {ctype} F;\ntypedef {ctype} U;\n"
        f'extern "C" __global__ void {name}({", ".join(decls)}) {{\n'
        f"  BP_ELEMENT_LOOP(i, _n) {{\n    {' '.join(binds)}\n    {spec.body};\n  }}\n}}\n}}\n"
    )


def reduction_unit(spec: src.Reduction, dtype: str) -> str:
    """A ReductionKernel's map/reduce/post-map expressions in a serial reduction loop.

    The output type ``U`` is double here (bpcore keeps norms in float64).
    """
    ctype = CTYPES[dtype]
    (inp,) = src.parse_params(spec.in_params)
    (out,) = src.parse_params(spec.out_params)
    name = symbol(spec.name, dtype)
    return (
        f"namespace ns_{name} {{\n"
        f"typedef {ctype} T;\ntypedef double U;\ntypedef {spec.reduce_type} _type_reduce;\n"
        f'extern "C" __global__ void {name}(const T* _raw_{inp.name}, U* _raw_{out.name}, long long _n) {{\n'
        f"  _type_reduce _acc = _type_reduce({spec.identity});\n"
        f"  BP_ELEMENT_LOOP(_j, _n) {{\n"
        f"    const T &{inp.name} = _raw_{inp.name}[_j];\n"
        f"    const _type_reduce a = _acc;\n"
        f"    const _type_reduce b = ({spec.map_expr});\n"
        f"    _acc = ({spec.reduce_expr});\n"
        f"  }}\n"
        f"  U &{out.name} = _raw_{out.name}[0];\n"
        f"  const _type_reduce a = _acc;\n  {spec.post_map_expr};\n}}\n}}\n"
    )


def host_program() -> str:
    """All kernels as one host C++ translation unit with C entry points."""
    parts = [HOST_EMULATION, src.header_source(), LOOP_MACROS, src.RAW_SOURCE]
    for dtype, ctype in CTYPES.items():
        parts += [elementwise_unit(spec, dtype) for spec in src.ELEMENTWISE.values()]
        parts += [reduction_unit(spec, dtype) for spec in src.REDUCTIONS.values()]
        for kernel_name, (signature, call) in RAW_SIGNATURES.items():
            name = symbol(kernel_name, dtype)
            parts.append(
                f"namespace ns_{name} {{\ntypedef {ctype} T;\n"
                f'extern "C" void {name}({signature}, unsigned int grid, unsigned int block) {{\n'
                f"  gridDim.x = grid; blockDim.x = block;\n"
                f"  for (unsigned int bx = 0; bx < grid; ++bx)\n"
                f"    for (unsigned int tx = 0; tx < block; ++tx) {{\n"
                f"      blockIdx.x = bx; threadIdx.x = tx;\n"
                f"      {kernel_name}<{ctype}>({call});\n    }}\n}}\n}}\n"
            )
    return "\n".join(parts)


def elementwise_program(specs: list[src.Elementwise]) -> str:
    """A host C++ program of the elementwise kernels ``specs``, every dtype, with the shared header."""
    units = [elementwise_unit(spec, dtype) for spec in specs for dtype in CTYPES]
    return HOST_EMULATION + src.header_source() + LOOP_MACROS + "\n".join(units)


def compile_host_library(program: str, folder: Path, stem: str, compiler: str) -> ctypes.CDLL:
    """``program`` compiled by the host C++ compiler into ``folder/stem.so`` and loaded."""
    source, target = folder / f"{stem}.cpp", folder / f"{stem}.so"
    source.write_text(program)
    command = [compiler, "-O1", "-std=c++17", "-shared", "-fPIC", "-o", str(target), str(source)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return ctypes.CDLL(str(target))


def host_pointer(array: np.ndarray) -> ctypes.c_void_p:
    """A C-contiguous array's memory as the host library's pointer argument."""
    assert array.flags.c_contiguous
    return ctypes.c_void_p(array.ctypes.data)


def raw_module_arguments(args: tuple, pointer: Callable[[Any], ctypes.c_void_p]) -> list[Any]:
    """A RawModule kernel's launch arguments as the host library's C types (``pointer`` for arrays).

    Arrays by ``pointer``, a ``np.uint64`` as a (possibly null) pointer, booleans as ``bool``, other
    integers as ``long long`` and everything else as ``double``: what the host build of the kernels takes.
    """
    c_args: list[Any] = []
    for arg in args:
        if isinstance(arg, np.ndarray):
            c_args.append(pointer(arg))
        elif isinstance(arg, np.uint64):  # a null pointer
            c_args.append(ctypes.c_void_p(int(arg) or None))
        elif isinstance(arg, np.bool_):
            c_args.append(ctypes.c_bool(bool(arg)))
        elif isinstance(arg, np.integer):
            c_args.append(ctypes.c_longlong(int(arg)))
        else:
            c_args.append(ctypes.c_double(float(arg)))
    return c_args


class HostKernel:
    """What the host stand-ins of CUDA kernels share: how an array is passed and how a launch is wrapped.

    A subclass that stands for device arrays (``launch_counting``) overrides
    :meth:`pointer` (checking that an argument is "on the device") and
    :meth:`launching` (recording the launch).
    """

    @staticmethod
    def pointer(array: np.ndarray) -> ctypes.c_void_p:
        return host_pointer(array)

    def launching(self, kernel_name: str, size: int) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()


class HostReduction(HostKernel):
    """A full ReductionKernel (``kernel(x, out)``), one launch, run serially by its host-compiled body."""

    def __init__(self, spec: src.Reduction, library: ctypes.CDLL) -> None:
        self.spec, self.library = spec, library

    def __call__(self, x: np.ndarray, out: np.ndarray) -> None:
        with self.launching(self.spec.name, x.size):
            total = np.zeros(1, dtype=np.float64)
            function = getattr(self.library, symbol(self.spec.name, x.dtype.name))
            function(self.pointer(x), host_pointer(total), ctypes.c_longlong(x.size))
            self.store(out, total[0])

    @staticmethod
    def store(out: np.ndarray, value: Any) -> None:
        out[...] = value


class HostRawModule(HostKernel):
    """The ``RawModule`` of the row and column kernels: ``get_function("name<float>")`` gives a launcher.

    Each ``launcher(grid, block, args)`` runs the host-compiled kernel over the
    grid, its arguments packed as CuPy's ``Function.__call__`` packs them
    (:func:`raw_module_arguments`).
    """

    def __init__(self, library: ctypes.CDLL) -> None:
        self.library = library

    def get_function(self, expression: str) -> Callable[..., None]:
        kernel_name, ctype = expression.rstrip(">").split("<")
        dtype = {"float": "float32", "double": "float64"}[ctype]
        function = getattr(self.library, symbol(kernel_name, dtype))

        def launch(grid: tuple[int, ...], block: tuple[int, ...], args: tuple[Any, ...]) -> None:
            c_args = raw_module_arguments(args, self.pointer)
            with self.launching(kernel_name, int(grid[0]) * int(block[0])):
                function(*c_args, ctypes.c_uint(grid[0]), ctypes.c_uint(block[0]))

        return launch
