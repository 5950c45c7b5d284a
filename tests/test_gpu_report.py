"""The GPU report without a GPU: benchmarks/gpu_report.py runs its benchmark on the strict CuPy
stand-in at tiny sizes and writes its JSON and markdown; its test phases run pytest and fail
when nothing passed; a failing phase gives exit status 1 and the report is still written;
benchmarks/gpu_report.sh parses, stops without a GPU and installs only what is missing
(with stand-ins for nvidia-smi and Python). Structure only: no assertion on speeds."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import minigan as mg
from minigan.bench import gpu

from conftest import load_benchmark_script

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_report.py"
SHELL_SCRIPT = ROOT / "benchmarks" / "gpu_report.sh"
TINY = ["--device-backend", "strict_cupy", "--mlp-batch-sizes", "4", "8", "--dcgan-batch-sizes", "2",
        "--hidden", "16", "--quick"]


def load_script():
    return load_benchmark_script("gpu_report")


@pytest.fixture
def report(tmp_path):
    """(run: argv -> exit status, read: () -> (JSON, markdown)) writing into tmp_path."""
    script = load_script()
    outputs = ["--json", str(tmp_path / "report.json"), "--markdown", str(tmp_path / "report.md")]

    def read():
        return json.loads((tmp_path / "report.json").read_text()), (tmp_path / "report.md").read_text()

    return script, lambda *argv: script.main([*TINY, *outputs, *argv]), read


def table_rows(markdown):
    """The data rows of the markdown table."""
    return [line for line in markdown.splitlines() if line.startswith("| ") and not line.startswith("| model")]


def test_the_cpu_mode_writes_one_json_and_one_markdown_table(report, capsys):
    _, run, read = report
    assert run("--phases", "bench") == 0
    data, markdown = read()
    assert capsys.readouterr().out.strip() == markdown.strip()
    assert {name: phase["result"] for name, phase in data["phases"].items()} == {
        "parity": "not run", "kernels": "not run", "bench": "passed"}
    cells = [(row["model"], row["batch"], row["backend"]) for row in data["rows"]]
    assert cells == [("mlp", 4, "numpy"), ("mlp", 4, "strict_cupy"), ("mlp", 8, "numpy"),
                     ("mlp", 8, "strict_cupy"), ("dcgan", 2, "numpy"), ("dcgan", 2, "strict_cupy")]
    for row in data["rows"]:
        assert row["ms_per_step"] > 0 and row["peak_share"] is None and row["peak_tflops"] is None
        assert row["samples_per_s"] == pytest.approx(row["batch"] * 1000 / row["ms_per_step"])
        assert row["tflops"] == pytest.approx(row["flops_per_step"] * row["steps_per_s"] / 1e12)
    flops = {(model, batch): row["flops_per_step"] for (model, batch, _), row in zip(cells, data["rows"])}
    assert flops[("mlp", 8)] == 2 * flops[("mlp", 4)] and flops[("dcgan", 2)] > flops[("mlp", 8)]
    assert data["settings"]["repeats"] == 3 and data["machine"]["device"] == {
        "backend": "strict_cupy", "peak_fp32_tflops": None}
    assert "## GPU report: strict_cupy backend, no GPU" in markdown and "- bench: **passed**" in markdown
    rows = table_rows(markdown)
    assert len(rows) == 6 and rows[0].startswith("| MLP (hidden 16) | 4 | numpy |")
    assert rows[1].endswith("x |") and rows[-1].startswith("| DCGAN | 2 | strict_cupy |")


def test_a_failing_phase_exits_1_and_the_benchmark_is_still_written(report, monkeypatch):
    script, run, read = report
    failed = script.phase("failed", 1.0, "1 failed, 97 passed in 9.0s (pytest exit status 1)")
    monkeypatch.setattr(script, "run_pytest", lambda paths, keyword=None: failed)
    assert run() == 1
    data, markdown = read()
    assert data["phases"]["parity"]["result"] == "failed" and data["phases"]["bench"]["result"] == "passed"
    assert len(data["rows"]) == 6 and "- parity: **failed** (1 s) 1 failed, 97 passed" in markdown


def test_an_error_in_the_benchmark_fails_its_phase_and_keeps_the_rows_before_it(report, monkeypatch):
    _, run, read = report

    def broken_dcgan(backend, batch):
        raise ZeroDivisionError("a bug on the device path")

    monkeypatch.setattr(gpu, "dcgan_case", broken_dcgan)
    assert run("--phases", "bench") == 1
    data, _ = read()
    assert data["phases"]["bench"]["result"] == "failed"
    assert data["phases"]["bench"]["detail"] == "ZeroDivisionError: a bug on the device path"
    assert [row["model"] for row in data["rows"]] == ["mlp"] * 4


def test_a_cell_out_of_device_memory_becomes_a_note(report, monkeypatch):
    _, run, read = report
    out_of_memory = type("OutOfMemoryError", (MemoryError,), {"__module__": "cupy.cuda.memory"})
    dcgan_case = gpu.dcgan_case

    def dcgan_out_of_memory(backend, batch):
        if backend.name == "strict_cupy":
            raise out_of_memory("Out of memory allocating 1,024 bytes")
        return dcgan_case(backend, batch)

    monkeypatch.setattr(gpu, "dcgan_case", dcgan_out_of_memory)
    assert run("--phases", "bench") == 0
    data, markdown = read()
    assert len(data["rows"]) == 5 and data["rows"][-1]["backend"] == "numpy"
    assert data["notes"] == ["dcgan batch 2 on strict_cupy: out of GPU memory (Out of memory allocating 1,024 bytes)"]
    assert markdown.rstrip().endswith("note: " + data["notes"][0])


def test_no_device_backend_exits_2_with_the_reason_in_the_report(report, monkeypatch, capsys):
    _, run, read = report
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` fail
    assert run("--device-backend", "cupy") == 2
    data, _ = read()
    assert all(phase["result"] == "not run" for phase in data["phases"].values()) and not data["rows"]
    assert "CuPy, which is not installed" in data["notes"][0]
    assert capsys.readouterr().err.splitlines()[-1].startswith("gpu_report: error: the cupy backend needs CuPy")


def test_the_test_phases_pass_only_when_a_test_passed():
    script = load_script()
    assert script.test_keyword("cupy") == "cupy and not strict_cupy"
    passing = script.run_pytest(script.PARITY_TESTS, "strict_cupy and optimizer")
    assert passing["result"] == "passed" and passing["detail"].startswith("8 passed")
    nothing = script.run_pytest(script.PARITY_TESTS, "no_such_test")
    assert nothing["result"] == "failed" and "exit status 5" in nothing["detail"]
    on_the_device = script.run_pytest(script.PARITY_TESTS, "cupy and not strict_cupy and optimizer")
    assert on_the_device["result"] == ("passed" if mg.cuda_available() else "failed")  # all skipped fails


@pytest.mark.parametrize("name, peak", [("NVIDIA H200", 67.0), ("NVIDIA H200 NVL", 60.0), ("NVIDIA H100 PCIe", 51.2),
                                        ("NVIDIA H100 80GB HBM3", 67.0), ("NVIDIA A100-SXM4-80GB", 19.5),
                                        ("NVIDIA L4", 30.3), ("NVIDIA L40S", 91.6), ("Tesla T4", 8.1),
                                        ("Tesla V100-SXM2-16GB", 15.7), ("NVIDIA GeForce GT 710", None)])
def test_peak_by_device_name(name, peak):
    assert gpu.peak_tflops(name) == peak


def test_product_flops_count_each_transposed_product():
    assert gpu.product_flops((2, 3), (3, 4), False, False, 1) == 2 * 2 * 3 * 4
    assert gpu.product_flops((3, 2), (4, 3), True, True, 5) == 5 * 2 * 2 * 3 * 4


def test_a_gpu_report_shows_the_gpu_its_share_of_peak_and_the_speed_up(monkeypatch):
    h200 = {"name": "NVIDIA H200", "memory_gib": 139.8, "compute_capability": "9.0", "multiprocessors": 132,
            "cuda_runtime": 12080, "cuda_driver": 12090, "cupy": "14.0.0"}
    monkeypatch.setattr(gpu, "device_properties", lambda backend: h200)
    rows = [gpu.Row("mlp", 1024, 1024, "numpy", 100.0, 67_000_000_000, None),
            gpu.Row("mlp", 1024, 1024, "cupy", 2.0, 67_000_000_000, 67.0)]
    report = {"settings": {"device_backend": "cupy", "repeats": 10, "warmup": 2},
              "machine": gpu.machine(mg.get_backend("numpy")), "notes": [],
              "phases": {"parity": {"result": "passed", "seconds": 12.0, "detail": "98 passed in 11.5s"}},
              "rows": [row.as_dict() for row in rows]}
    assert report["machine"]["device"]["peak_fp32_tflops"] == 67.0
    markdown = gpu.format_markdown(report)
    assert markdown.startswith("## GPU report: NVIDIA H200 (67 TFLOP/s FP32 peak)")
    assert "- GPU: CuPy 14.0.0, CUDA runtime 12080, driver 12090, compute capability 9.0, 132 SMs, 140 GiB" in markdown
    assert table_rows(markdown) == [
        "| MLP (hidden 1024) | 1024 | numpy | 100.000 | 10.0 | 10,240 | 67 | 0.67 |  |  |",
        "| MLP (hidden 1024) | 1024 | cupy | 2.000 | 500.0 | 512,000 | 67 | 33.5 | 50.0% | 50.00x |"]


def test_the_shell_script_parses():
    result = subprocess.run(["bash", "-n", str(SHELL_SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def fake_tools(tmp_path, gpu_found=True, cupy_installed=False, cuda="13.0"):
    """A PATH with an `nvidia-smi` and a `python` that log their arguments to tmp_path/log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = f'echo "nvidia-smi $*" >> {tmp_path}/log\n' + (
        f'echo "| NVIDIA-SMI 580.1   Driver Version: 580.1   CUDA Version: {cuda}  |"\n' if gpu_found else "exit 9\n")
    python = (f'echo "python $*" >> {tmp_path}/log\n'
              f'case "$*" in *"import cupy"*) exit {0 if cupy_installed else 1};; esac\n')
    for name, body in (("nvidia-smi", smi), ("python", python)):
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "PYTHON": "python"}


def run_shell_script(tmp_path, **tools):
    result = subprocess.run(["bash", str(SHELL_SCRIPT), "--quick"], env=fake_tools(tmp_path, **tools),
                            capture_output=True, text=True, timeout=60)
    log = (tmp_path / "log").read_text().splitlines() if (tmp_path / "log").exists() else []
    return result, log


def test_the_shell_script_stops_with_one_line_without_a_gpu(tmp_path):
    result, log = run_shell_script(tmp_path, gpu_found=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "finds no NVIDIA GPU" in result.stderr
    assert not [line for line in log if line.startswith("python")]


@pytest.mark.parametrize("cuda, wheel", [("13.0", "cupy-cuda13x[ctk]"), ("12.8", "cupy-cuda12x[ctk]")])
def test_the_shell_script_installs_cupy_for_the_drivers_cuda_when_missing(tmp_path, cuda, wheel):
    result, log = run_shell_script(tmp_path, cuda=cuda)
    python = [line for line in log if line.startswith("python")]
    assert result.returncode == 0, result.stderr
    assert python[-2:] == [f"python -m pip install --quiet {wheel}", "python benchmarks/gpu_report.py --quick"]


def test_the_shell_script_leaves_an_installed_cupy_alone(tmp_path):
    result, log = run_shell_script(tmp_path, cupy_installed=True)
    assert result.returncode == 0, result.stderr
    assert not [line for line in log if "pip install" in line]
    assert log[-1] == "python benchmarks/gpu_report.py --quick"
