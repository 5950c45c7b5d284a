"""The MLP step's matrix products on NumPy's BLAS and on Intel's MKL: which library to use.

For each (batch, hidden) cell it times every product of one training step
(`minigan.bench.step.step_products`, with its count; rank-1 products are left out, minigan
does those as broadcast multiplies) at the stored layouts minigan uses (A or B transposed
views, no copies), into a preallocated output, on

- NumPy's own BLAS (`numpy.matmul(a, b, out=...)`, OpenBLAS in the PyPI wheels), and
- MKL's `cblas_sgemm` through ctypes, when a `libmkl_rt` is found (`pip install mkl` puts
  one in `<prefix>/lib`; `--mkl PATH` names another). Before timing, each MKL result is
  checked against NumPy's matmul (float32 tolerance).

Both run with `--threads` threads (threadpoolctl for NumPy's BLAS, MKL_Set_Num_Threads for
MKL), one library at a time, each product after warm-up; the table gives the summed median
ms per step and the ratio. It decides whether an MKL path for `Dense` could pay: on the
machine of docs/benchmarks.md it does not (MKL about 2x slower on an AMD EPYC).

    python benchmarks/blas_products.py                      # cells 64x256, 256x512, 1024x1024, 1 thread
    python benchmarks/blas_products.py --threads 2 --mkl /opt/intel/oneapi/mkl/latest/lib/libmkl_rt.so.2
"""
from __future__ import annotations

import argparse
import ctypes
import glob
import os
import sys
from typing import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from minigan.bench.machine import cpu_model, numpy_blas
from minigan.bench.step import step_products
from minigan.bench.timing import median_ms

ROW_MAJOR, NO_TRANSPOSE, TRANSPOSE = 101, 111, 112  # CBLAS enums


def find_mkl() -> str | None:
    """The first libmkl_rt in this Python's prefix or on LD_LIBRARY_PATH, or None."""
    folders = [os.path.join(sys.prefix, "lib"), *os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep)]
    for folder in filter(None, folders):
        found = sorted(glob.glob(os.path.join(folder, "libmkl_rt.so*")))
        if found:
            return found[0]
    return None


def mkl_matmul(path: str, threads: int) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """out = a @ b for float32 matrices, each C-contiguous or the transpose of one, by MKL's
    cblas_sgemm (the library at `path`, `threads` threads)."""
    mkl = ctypes.CDLL(path)
    mkl.MKL_Set_Num_Threads(threads)
    integer, single, pointer = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
    mkl.cblas_sgemm.argtypes = [integer] * 6 + [single, pointer, integer, pointer, integer, single, pointer, integer]
    mkl.cblas_sgemm.restype = None

    def layout(matrix: np.ndarray) -> tuple[int, int]:
        """(transpose flag, leading dimension) of a C-contiguous matrix or of a C-contiguous one's .T."""
        if matrix.flags.c_contiguous:
            return NO_TRANSPOSE, matrix.shape[1]
        if matrix.T.flags.c_contiguous:
            return TRANSPOSE, matrix.shape[0]
        raise ValueError("each operand must be C-contiguous or the transpose of a C-contiguous array")

    def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
        if not (a.dtype == b.dtype == out.dtype == np.float32 and out.flags.c_contiguous):
            raise ValueError("float32 operands and a C-contiguous float32 output are needed")
        (transpose_a, lda), (transpose_b, ldb) = layout(a), layout(b)
        mkl.cblas_sgemm(ROW_MAJOR, transpose_a, transpose_b, a.shape[0], b.shape[1], a.shape[1], 1.0,
                        a.ctypes.data, lda, b.ctypes.data, ldb, 0.0, out.ctypes.data, out.shape[1])
        return out

    return matmul


def operands(batch: int, hidden: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """(A, B, count) of every product of one step with an inner size above 1, as minigan stores them."""
    rng = np.random.default_rng(seed)
    pairs = []
    for shape_a, shape_b, transpose_a, transpose_b, count in step_products(batch, hidden):
        a = rng.standard_normal(shape_a, dtype=np.float32)
        b = rng.standard_normal(shape_b, dtype=np.float32)
        a, b = (a.T if transpose_a else a), (b.T if transpose_b else b)
        if a.shape[1] > 1:
            pairs.append((a, b, count))
    return pairs


def products_ms(matmul: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
                pairs: list[tuple[np.ndarray, np.ndarray, int]], repeats: int) -> float:
    """Summed median ms of one step's products with `matmul`."""
    total = 0.0
    for a, b, count in pairs:
        out = np.empty((a.shape[0], b.shape[1]), dtype=np.float32)
        total += count * median_ms(lambda: matmul(a, b, out), lambda: None, repeats, warmup=3)
    return total


def check(matmul: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
          pairs: list[tuple[np.ndarray, np.ndarray, int]]) -> None:
    """AssertionError unless `matmul` gives NumPy's products (float32 rounding apart)."""
    for a, b, _ in pairs:
        out = np.empty((a.shape[0], b.shape[1]), dtype=np.float32)
        np.testing.assert_allclose(matmul(a, b, out), a @ b, rtol=1e-4, atol=1e-4 * np.sqrt(a.shape[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=["64x256", "256x512", "1024x1024"], help="BATCHxHIDDEN")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per product")
    parser.add_argument("--mkl", metavar="PATH", help="a libmkl_rt (default: looked for in this Python's lib/)")
    args = parser.parse_args(argv)
    mkl_path = args.mkl or find_mkl()
    print("| batch | hidden | NumPy's BLAS ms | MKL ms | MKL / NumPy's BLAS |\n|---:|---:|---:|---:|---:|")
    with threadpool_limits(limits=args.threads, user_api="blas"):
        blas = "; ".join(numpy_blas())  # before MKL is loaded, so that only NumPy's own is listed
        mkl = mkl_matmul(mkl_path, args.threads) if mkl_path else None
        for cell in args.cells:
            batch, hidden = (int(size) for size in cell.split("x"))
            pairs = operands(batch, hidden)
            ours = products_ms(np.matmul, pairs, args.repeats)
            if mkl:
                check(mkl, pairs)
            theirs = products_ms(mkl, pairs, args.repeats) if mkl else None
            cells = f"{theirs:.3f} | {theirs / ours:.2f}" if mkl else "n/a | n/a"
            print(f"| {batch} | {hidden} | {ours:.3f} | {cells} |")
    print(f"\n- CPU: {cpu_model()}\n- NumPy {np.__version__}, BLAS: {blas}\n"
          f"- MKL: {mkl_path or 'not found (pip install mkl, or --mkl PATH)'}, {args.threads} thread(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
