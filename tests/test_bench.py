"""The benchmark harness on tiny sizes: rows, the roofline's product list, the PyTorch
rows only when PyTorch is installed, the CLI, JSON and plot output. No timing assertions."""
import json
import sys

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from minigan.bench import report as bench_report, step as bench
from minigan.bench.phases import PHASES
from minigan.run.cli import main

HAS_TORCH = bench.importlib.util.find_spec("torch") is not None


def test_product_list_is_the_minimal_step():
    n, h = 5, 7
    products = bench.step_products(n, h)
    flops = 0
    for shape_a, shape_b, transpose_a, transpose_b, count in products:
        a = shape_a[::-1] if transpose_a else shape_a
        b = shape_b[::-1] if transpose_b else shape_b
        assert a[1] == b[0], (shape_a, shape_b)
        flops += 2 * count * a[0] * a[1] * b[1]
    z, f = bench.LATENT, bench.FEATURES
    g_forward = z * h + h * f
    d_forward = f * h + h
    d_param_grads = h + h + f * h          # dV2, dh, dV1 (no dL/dx)
    d_input_grad = h + h * f               # dh, dx
    g_backward = h * f + f * h + z * h     # dW2, dh, dW1 (no dL/dz)
    expected = 2 * n * (g_forward + 3 * d_forward + 2 * d_param_grads + d_input_grad + g_backward)
    assert flops == expected


def test_grid_has_one_row_per_cell_and_backend():
    results, notes = bench.run_grid([4, 8], [3], ["numpy"], torch=False, repeats=2, warmup=1)
    assert [(r.batch, r.hidden, r.implementation) for r in results] == [(4, 3, "minigan"), (8, 3, "minigan")]
    for r in results:
        assert r.ms_per_step > 0 and r.roofline_ms > 0 and r.peak_mb > 0
        assert r.samples_per_s == pytest.approx(r.batch * r.steps_per_s)
        assert r.ms_low <= r.ms_per_step <= r.ms_high and r.ms_first is not None and r.ms_second is None
        assert set(r.phases) == {*PHASES, "step"}
    assert notes == []


def test_cupy_rows_say_why_they_are_absent(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    results, notes = bench.run_grid([4], [3], ["numpy", "cupy"], torch=False, repeats=1, warmup=0)
    assert [r.note for r in results] == ["numpy"]
    assert len(notes) == 1 and notes[0].startswith("cupy: skipped") and "pip install" in notes[0]


def test_torch_rows_only_when_torch_is_installed(monkeypatch):
    if HAS_TORCH:
        loaded_before = "torch" in sys.modules  # other test modules may have imported it
        with threadpool_limits(limits=1, user_api="blas"):
            results, notes = bench.run_grid([4], [3], ["numpy"], torch=True, repeats=1, warmup=0, rounds=2)
        assert {(r.implementation, r.device) for r in results} >= {("minigan", "cpu"), ("torch", "cpu")}
        assert any(note.startswith("torch 2.") and " 1 thread(s): " in note for note in notes)  # NumPy's count
        for r in results:  # two rounds: each side went first once
            assert r.ms_first is not None and r.ms_second is not None
        assert "vs torch CPU" in bench_report.format_table(results) and "x |" in bench_report.format_table(results)
        assert loaded_before or "torch" not in sys.modules  # the reference ran in a child process
    monkeypatch.setattr(bench.importlib.util, "find_spec", lambda name: None)
    results, notes = bench.run_grid([4], [3], ["numpy"], torch=True, repeats=1, warmup=0)
    assert {r.implementation for r in results} == {"minigan"}
    assert any(note.startswith("torch: skipped (not installed") for note in notes)


def test_table_lists_every_row():
    rows = [bench.BenchResult("minigan", "cpu", 64, 256, 2.0, 1.5, 10.0, ms_low=1.9, ms_high=2.5, ms_first=2.1,
                              ms_second=1.95),
            bench.BenchResult("torch", "cpu", 64, 256, 4.0, 1.0, None)]
    table = bench_report.format_table(rows).splitlines()
    assert len(table) == 4
    assert ("| minigan | cpu | 64 | 256 | 2.000 | 1.900-2.500 | 2.100 / 1.950 | 500.0 | 32000 | 10.0 | 1.500 "
            "| 75% | 2.00x |") in table
    assert "| n/a-n/a | n/a / n/a |" in table[3] and "| n/a |" in table[3]


def test_rows_summarise_the_rounds_by_order():
    runs = [bench.Run((3.0, 1.0), True, 0), bench.Run((5.0, 1.2), False, 1), bench.Run((4.0, 0.8), True, 2)]
    row = bench.BenchResult.from_runs("minigan", "cpu", 8, 3, runs, 1.0, "numpy")
    assert (row.ms_per_step, row.ms_low, row.ms_high, row.ms_first, row.ms_second) == (4.0, 3.0, 5.0, 3.5, 5.0)
    assert row.roofline_ms == 1.0


def test_phase_table_has_one_row_per_profiled_cell():
    phases = {phase: 0.5 for phase in PHASES} | {"step": 5.0}
    rows = [bench.BenchResult("minigan", "cpu", 64, 256, 5.0, 2.0, None, phases=phases),
            bench.BenchResult("torch", "cpu", 64, 256, 6.0, 2.0, None)]
    table = bench_report.format_phase_table(rows).splitlines()
    assert len(table) == 3 and all(phase in table[0] for phase in PHASES)
    assert table[2] == "| cpu | 64 | 256 | " + " | ".join(["0.500 (10%)"] * len(PHASES)) + " | 5.000 |"
    assert bench_report.format_phase_table(rows[1:]) == ""


def test_cli_bench_writes_json_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    status = main(["bench", "--batch-sizes", "4", "8", "--hidden", "3", "--backends", "numpy",
                   "--repeats", "2", "--warmup", "1", "--no-progress",
                   "--json", str(tmp_path / "b.json"), "--plot", str(tmp_path / "b.png")])
    out = capsys.readouterr().out
    assert status == 0 and out.count("| minigan | cpu |") == 2
    data = json.loads((tmp_path / "b.json").read_text())
    assert len(data["results"]) == 2 and data["results"][0]["roofline_share"] > 0
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, words", [
    (["bench", "--repeats", "0"], "argument --repeats: must be an integer >= 1, got 0"),
    (["bench", "--rounds", "0"], "argument --rounds: must be an integer >= 1, got 0"),
    (["bench", "--batch-sizes", "0"], "argument --batch-sizes: must be an integer >= 1, got 0"),
    (["bench", "--warmup", "-1"], "argument --warmup: must be an integer >= 0, got -1"),
    (["bench", "--backends", "tpu"], "invalid choice"),
])
def test_cli_bench_errors_are_one_line(capsys, argv, words):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_no_float64_in_a_float32_step():
    """Every array a float32 step leaves behind (caches, gradients, optimizer state) is float32."""
    import minigan as mg
    backend = mg.get_backend("numpy", "float32")
    G = mg.Sequential([mg.Dense(4, 16), mg.ReLU(), mg.Dense(16, 16), mg.Tanh(), mg.Dense(16, 6),
                       mg.Sigmoid()], backend=backend)
    D = mg.Sequential([mg.Dense(6, 16), mg.LeakyReLU(0.2), mg.Dense(16, 1)], backend=backend)
    gan = mg.GAN(G, D)
    gan.train_step(np.random.default_rng(0).random((8, 6), dtype=np.float32))
    arrays = []
    for owner in [*gan.generator.layers, *gan.discriminator.layers, gan.d_opt, gan.g_opt]:
        arrays += [(type(owner).__name__, name, value) for name, value in vars(owner).items()
                   if isinstance(value, np.ndarray) and value.dtype != bool]
    assert len(arrays) > 10
    assert all(value.dtype == np.float32 for _, _, value in arrays), \
        [(owner, name, value.dtype) for owner, name, value in arrays if value.dtype != np.float32]


def test_scaling_plot_pairs_minigan_and_torch_by_colour(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr("minigan.plots.save_line_plot",
                        lambda path, series, **kwargs: seen.update(series=series, **kwargs))
    rows = [bench.BenchResult(impl, "cpu", batch, hidden, 1.0, 0.5, None)
            for impl in ("minigan", "torch") for batch in (64, 256) for hidden in (256, 1024)]
    bench_report.save_scaling_plot(tmp_path / "s.png", rows)
    styles = seen["styles"]
    assert set(styles) == set(seen["series"]) and len(styles) == 4
    for hidden in (256, 1024):
        mine, theirs = styles[f"minigan cpu, hidden {hidden}"], styles[f"torch cpu, hidden {hidden}"]
        assert mine["color"] == theirs["color"] and (mine["linestyle"], theirs["linestyle"]) == ("-", "--")
    assert styles["minigan cpu, hidden 256"]["color"] != styles["minigan cpu, hidden 1024"]["color"]
    assert seen["series"]["torch cpu, hidden 256"] == ([64, 256], [1000.0, 1000.0])


def test_other_load_is_the_cpu_time_this_process_did_not_use(monkeypatch):
    from minigan.bench import machine
    readings = iter([(100.0, 1000.0), (130.0, 1100.0), None])  # (busy s, all CPU s) from /proc/stat
    own = iter([5.0, 15.0, 15.0])
    monkeypatch.setattr(machine, "_cpu_seconds", lambda: next(readings))
    monkeypatch.setattr(machine, "_own_seconds", lambda: next(own))
    others = machine.OtherLoad()
    assert others.share() == pytest.approx(0.2)  # 30 busy seconds, 10 of them ours, over 100
    assert others.share() is None  # no /proc/stat


def test_torch_blas_lines_name_the_libraries_only():
    from types import SimpleNamespace

    from minigan.bench import machine
    summary = ("PyTorch built with:\n  - GCC 13.3\n  - Intel(R) oneAPI Math Kernel Library Version 2024.2\n"
               "  - Intel(R) MKL-DNN v3.12.0\n  - OpenMP 201511\n  - CPU capability usage: AVX512\n"
               "  - Build settings: BLAS_INFO=mkl, BUILD_TYPE=Release, CXX_FLAGS= -O2\n")
    torch = SimpleNamespace(__config__=SimpleNamespace(show=lambda: summary), __version__="2.13.0",
                            get_num_threads=lambda: 2)
    assert machine.torch_blas(torch) == ["Intel(R) oneAPI Math Kernel Library Version 2024.2", "Intel(R) MKL-DNN v3.12.0",
                                         "OpenMP 201511", "CPU capability usage: AVX512", "BLAS_INFO=mkl"]
    assert machine.torch_line(machine.torch_info(torch)).startswith("torch 2.13.0, 2 thread(s): Intel(R) oneAPI")
