"""The GPU report: checks minigan's CuPy path on a real device and measures it against the
CPU, in one command, writing one JSON file and one markdown report (also printed).

Phases, each reported as passed, failed or not run:
  parity   tests/test_backend_parity.py on the device backend (pytest -k): every layer,
           loss, likelihood, GAN objective, optimizer and model-family step equals NumPy's
           to float64 / float32 tolerances (--full-parity: every backend-parametrised test)
  kernels  tests/test_kernels.py: the fused optimizer kernels against their NumPy references
  bench    the training step on NumPy and on the device (`minigan.bench.gpu`): MLP at batch
           64-4096, DCGAN at 64-1024; steps/s, samples/s, TFLOP/s and the share of peak
Both files are rewritten after every phase and every benchmark cell, so a run stopped early
keeps what it measured. Exit status: 0 when every phase run passed, 1 when one failed, 2
when the device backend cannot be created. On a fresh GPU machine run gpu_report.sh, which
installs CuPy first when it is missing.

    python benchmarks/gpu_report.py                  # cupy; outputs in gpu_report/
    python benchmarks/gpu_report.py --quick          # 3 timed steps a cell instead of 10
    python benchmarks/gpu_report.py --device-backend strict_cupy --mlp-batch-sizes 8 \\
        --dcgan-batch-sizes 2 --hidden 16 --quick   # the same code on the CPU stand-in
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from minigan.backend import BackendUnavailableError, get_backend, register_array_module
from minigan.run.arguments import positive
from minigan.bench.gpu import Row, format_markdown, machine, measure
from minigan.bench.step import STEP_WARMUP_S
from minigan.files import atomic_write, atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("parity", "kernels", "bench")
DEVICE_BACKENDS = ("cupy", "strict_cupy", "numpy")
PARITY_TESTS = ["tests/test_backend_parity.py"]
KERNEL_TESTS = ["tests/test_kernels.py"]


def test_keyword(device_backend: str) -> str:
    """pytest's -k expression selecting the backend-parametrised tests of `device_backend`."""
    return "cupy and not strict_cupy" if device_backend == "cupy" else device_backend


def phase(result: str, seconds: float = 0.0, detail: str = "", **extra: Any) -> dict[str, Any]:
    """One phase's entry in the report: result is "passed", "failed" or "not run"."""
    return {"result": result, "seconds": seconds, "detail": detail, **extra}


def run_pytest(paths: list[str], keyword: str | None = None) -> dict[str, Any]:
    """Runs pytest on `paths` (relative to the repository) in a child process; the phase
    passes when pytest exits 0 having passed at least one test (all skipped is a failure)."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *paths]
    command += ["-k", keyword] if keyword else []
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    output = (result.stdout + result.stderr).strip().splitlines() or ["no output"]
    summary = output[-1].strip("= ")
    passed = re.search(r"(\d+) passed", summary)
    if result.returncode == 0 and passed and int(passed.group(1)) > 0:
        return phase("passed", seconds, summary, command=command[2:])
    return phase("failed", seconds, f"{summary} (pytest exit status {result.returncode})", command=command[2:],
                 output_tail=output[-60:])


def load_stand_in() -> None:
    """Registers the test suite's strict CuPy stand-in (tests/strict_cupy.py) as a backend."""
    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))
    import strict_cupy
    register_array_module(strict_cupy.xp)


class Report:
    """The report being built: rewritten to its JSON and markdown files on every `save`."""

    def __init__(self, args: argparse.Namespace, device: Any):
        settings = {key: value for key, value in vars(args).items() if key not in ("json", "markdown")}
        self.data: dict[str, Any] = {"settings": settings, "machine": machine(device),
                                     "phases": {name: phase("not run") for name in PHASES},
                                     "rows": [], "notes": []}
        self.json_path, self.markdown_path = args.json, args.markdown

    def save(self) -> str:
        """Writes both files; returns the markdown."""
        markdown = format_markdown(self.data)
        atomic_write_json(self.json_path, self.data)
        atomic_write(self.markdown_path, lambda file: file.write(markdown.encode()))
        return markdown


def run_bench(args: argparse.Namespace, report: Report) -> dict[str, Any]:
    """The benchmark phase, saving the report after every cell."""
    start = time.perf_counter()
    warmup_s = 0.0 if args.quick else STEP_WARMUP_S
    def progress(text: str) -> None:
        print(text, file=sys.stderr)

    try:
        for item in measure(args.device_backend, args.mlp_batch_sizes, args.dcgan_batch_sizes, args.hidden,
                            args.repeats, args.warmup, warmup_s, progress):
            if isinstance(item, Row):
                report.data["rows"].append(item.as_dict())
            else:
                report.data["notes"].append(item)
            report.save()
    except Exception as error:  # a bug on the device path: the report says which, and the run goes on
        return phase("failed", time.perf_counter() - start, f"{type(error).__name__}: {error}")
    return phase("passed", time.perf_counter() - start, f"{len(report.data['rows'])} cells")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device-backend", choices=DEVICE_BACKENDS, default="cupy",
                        help="the backend checked and timed against NumPy (strict_cupy, numpy: the CPU checks)")
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    parser.add_argument("--quick", action="store_true", help="3 timed steps a cell, 1 warm-up step")
    parser.add_argument("--full-parity", action="store_true",
                        help="the parity phase runs every backend-parametrised test in tests/, not one file")
    parser.add_argument("--mlp-batch-sizes", type=positive, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--dcgan-batch-sizes", type=positive, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--hidden", type=positive, nargs="+", default=[1024], help="the MLP's hidden widths")
    parser.add_argument("--repeats", type=positive, help="timed steps a cell (default 10, --quick 3)")
    parser.add_argument("--warmup", type=positive, help="untimed steps first (default 2, --quick 1)")
    parser.add_argument("--json", default="gpu_report/report.json", metavar="FILE")
    parser.add_argument("--markdown", default="gpu_report/report.md", metavar="FILE")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.repeats = args.repeats or (3 if args.quick else 10)
    args.warmup = args.warmup or (1 if args.quick else 2)
    if args.device_backend == "strict_cupy":
        load_stand_in()
    try:
        device, unavailable = get_backend(args.device_backend, "float32"), ""
    except BackendUnavailableError as error:
        device, unavailable = None, str(error)
    report = Report(args, device)
    if device is None:
        report.data["notes"].append(f"no phase ran: {unavailable}")
        print(report.save())
        print(f"gpu_report: error: {unavailable}", file=sys.stderr)
        return 2
    phases = report.data["phases"]
    for name in args.phases:
        print(f"gpu_report: {name} ...", file=sys.stderr)
        if name == "bench":
            phases[name] = run_bench(args, report)
        elif args.device_backend == "numpy" and name == "parity":
            phases[name] = phase("not run", detail="numpy is the reference: nothing to compare")
        else:
            paths = (["tests"] if args.full_parity else PARITY_TESTS) if name == "parity" else KERNEL_TESTS
            phases[name] = run_pytest(paths, test_keyword(args.device_backend) if name == "parity" else None)
        print(f"gpu_report: {name} {phases[name]['result']}: {phases[name]['detail']}", file=sys.stderr)
        report.save()
    print(report.save())
    return 1 if any(entry["result"] == "failed" for entry in phases.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
