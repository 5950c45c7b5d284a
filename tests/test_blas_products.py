"""benchmarks/blas_products.py on tiny cells: the product list it times, its table without
MKL, and, where a libmkl_rt is found, MKL's products equal to NumPy's. No timing assertions."""
import numpy as np
import pytest

from conftest import load_benchmark_script


def load_script():
    return load_benchmark_script("blas_products")


def test_operands_are_the_step_s_products_in_minigan_s_layouts():
    script = load_script()
    pairs = script.operands(5, 7)
    assert all(a.shape[1] == b.shape[0] > 1 and a.dtype == b.dtype == np.float32 for a, b, _ in pairs)
    assert sum(count for _, _, count in pairs) == 16  # 19 products per step, 3 of them rank-1 outer products
    assert any(not a.flags.c_contiguous for a, _, _ in pairs) and any(not b.flags.c_contiguous for _, b, _ in pairs)


def test_table_without_mkl(monkeypatch, capsys):
    script = load_script()
    monkeypatch.setattr(script, "find_mkl", lambda: None)
    assert script.main(["--cells", "4x3", "8x5", "--repeats", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("| 4 | 3 | ") and lines[2].endswith("| n/a | n/a |") and lines[3].startswith("| 8 | 5 |")
    assert any(line.startswith("- MKL: not found") for line in lines)


def test_mkl_products_equal_numpy_s():
    script = load_script()
    path = script.find_mkl()
    if path is None:
        pytest.skip("no libmkl_rt in this Python's lib/ or on LD_LIBRARY_PATH (pip install mkl)")
    matmul = script.mkl_matmul(path, threads=1)
    script.check(matmul, script.operands(33, 17))
    with pytest.raises(ValueError, match="C-contiguous"):
        matmul(np.ones((4, 6), np.float32)[:, ::2], np.ones((3, 2), np.float32), np.empty((4, 2), np.float32))
