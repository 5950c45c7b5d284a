"""The step benchmark's outputs: the markdown tables, the scaling plot, and `minigan bench`.

The measurements themselves live in `minigan.bench.step`; the flags are defined by the
command line (`minigan.run.cli`), which imports this module only when `minigan bench` runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .machine import OtherLoad, describe, format_machine, numpy_blas_threads
from .phases import PHASES
from .step import BenchResult, run_grid
from ..files import atomic_write_json


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def format_table(results: list[BenchResult]) -> str:
    """A markdown table; with a PyTorch CPU row in a cell, minigan's CPU row gets the ratio.
    "spread" is the fastest and the slowest round, "first / second" the medians of the rounds
    in which the side went first and in which it did not."""
    torch_cpu = {(r.batch, r.hidden): r for r in results if r.implementation == "torch" and r.device == "cpu"}
    lines = ["| impl | device | batch | hidden | ms/step | spread ms | first / second ms | steps/s | samples/s "
             "| peak MB | roofline ms | roofline share | vs torch CPU |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(results, key=lambda r: (r.batch, r.hidden, r.implementation, r.device)):
        reference = torch_cpu.get((r.batch, r.hidden))
        ratio = f"{reference.ms_per_step / r.ms_per_step:.2f}x" if reference and r.device == "cpu" else ""
        peak = f"{r.peak_mb:.1f}" if r.peak_mb is not None else "n/a"
        lines.append(f"| {r.implementation} | {r.device} | {r.batch} | {r.hidden} | {r.ms_per_step:.3f} | "
                     f"{_ms(r.ms_low)}-{_ms(r.ms_high)} | {_ms(r.ms_first)} / {_ms(r.ms_second)} | "
                     f"{r.steps_per_s:.1f} | {r.samples_per_s:.0f} | {peak} | {r.roofline_ms:.3f} | "
                     f"{100 * r.roofline_share:.0f}% | {ratio} |")
    return "\n".join(lines)


def format_phase_table(results: list[BenchResult]) -> str:
    """One row per minigan cell: median ms of each phase of the step and its share of the
    profiled step (`minigan.bench.phases`); empty when no row has a profile."""
    rows = [r for r in sorted(results, key=lambda r: (r.device, r.batch, r.hidden)) if r.phases]
    if not rows:
        return ""
    lines = [f"| device | batch | hidden | {' | '.join(PHASES)} | step ms |",
             "|---|---:|---:|" + "---:|" * (len(PHASES) + 1)]
    for r in rows:
        step = r.phases["step"]
        cells = " | ".join(f"{r.phases[phase]:.3f} ({100 * r.phases[phase] / step:.0f}%)" for phase in PHASES)
        lines.append(f"| {r.device} | {r.batch} | {r.hidden} | {cells} | {step:.3f} |")
    return "\n".join(lines)


def run_bench(args: Any) -> int:
    """`minigan bench`: runs the grid, prints the tables and the notes, writes JSON / PNG."""
    others = OtherLoad()
    results, notes = run_grid(args.batch_sizes, args.hidden, args.backends, args.torch,
                              args.repeats, args.warmup, args.rounds, progress=not args.no_progress)
    machine = describe(numpy_blas_threads(), None, others)  # PyTorch's line is one of the notes
    print(format_table(results))
    phases = format_phase_table(results)
    if phases:
        print("\nWhere minigan's step goes (median ms per phase, share of the step):\n")
        print(phases)
    print()
    for line in [*format_machine(machine), *notes]:
        print(f"note: {line}")
    if args.json:
        atomic_write_json(args.json, {"results": [r.as_dict() for r in results], "notes": notes,
                                      "machine": machine})
    if args.plot:
        save_scaling_plot(args.plot, results)
    return 0


def save_scaling_plot(path: str, results: list[BenchResult]) -> Path:
    """Steps/s against batch size, one line per (implementation, device, hidden width): one
    colour per hidden width, solid for minigan, dashed for PyTorch; square markers on CUDA."""
    from ..plots import save_line_plot
    series: dict[str, tuple[list[float], list[float]]] = {}
    styles: dict[str, dict[str, str]] = {}
    widths = sorted({r.hidden for r in results})
    for r in sorted(results, key=lambda r: r.batch):
        name = f"{r.implementation} {r.device}, hidden {r.hidden}"
        xs, ys = series.setdefault(name, ([], []))
        xs.append(r.batch)
        ys.append(r.steps_per_s)
        styles[name] = {"color": f"C{widths.index(r.hidden) % 10}",
                        "linestyle": "--" if r.implementation == "torch" else "-",
                        "marker": "o" if r.device == "cpu" else "s"}
    return save_line_plot(path, series, xlabel="batch size", ylabel="training steps / s",
                          title="GAN training step throughput (float32)", logx=True, logy=True,
                          styles=styles)
