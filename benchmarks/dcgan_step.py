"""DCGAN step benchmark: minigan's `dcgan` preset against the same networks and step in
PyTorch, float32 on the CPU, with as many threads on each side (`--threads`).

For each batch size it prints one row: the median ms of a training step on each side
(`--rounds` rounds alternating which side goes first; in each, after a 0.3 s pause and one
untimed step, the median of `--repeats` steps; the row holds the median of those per-round
medians and their min-max spread), the ratio torch ms / minigan ms (> 1: minigan is
faster) and the share of minigan's step spent in its matrix products (the products alone
at the same shapes). Then, unless `--no-layers`, forward and backward ms of every layer of
G and D on both sides; last, the CPU and the BLAS each side uses. What is measured, and
the PyTorch worker process, are in `minigan.bench.dcgan`.

    python benchmarks/dcgan_step.py                                  # batch 64 and 256, 5 rounds
    python benchmarks/dcgan_step.py --batch-sizes 64 --rounds 3 --no-layers --json /tmp/dcgan.json
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
from typing import Any, Callable

import numpy as np

from minigan.bench.dcgan import MiniganDCGAN, TorchWorker
from minigan.bench.machine import cpu_model, numpy_blas
from minigan.files import atomic_write_json
from minigan.run.threads import blas_threads


def run_benchmark(batches: list[int], rounds: int = 5, repeats: int = 10, threads: int = 2,
                  layers: bool = True, torch: bool = True,
                  progress: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """Measures every batch size (module docstring); PyTorch only when `torch` and installed.

    Returns:
        {"steps": one row per batch, "layers": {batch: one row per layer}, "machine": notes}.
    """
    worker = TorchWorker(threads) if torch and importlib.util.find_spec("torch") is not None else None
    results: dict[str, Any] = {"steps": [], "layers": {},
                               "machine": machine_notes(threads, worker.hello if worker else None)}
    try:
        with blas_threads(threads):
            for batch in batches:
                minigan = MiniganDCGAN(batch)
                times: dict[str, list[float]] = {"minigan": [], "torch": [], "products": []}
                for round_index in range(rounds):
                    progress(f"batch {batch}: round {round_index + 1}/{rounds}")
                    for side in ("minigan", "torch")[:: 1 if round_index % 2 == 0 else -1]:
                        if side == "minigan":
                            times["minigan"].append(minigan.step_ms(repeats))
                            times["products"].append(minigan.products_ms(repeats))
                        elif worker:
                            times["torch"].append(worker.ask("step", batch, repeats)["ms"])
                results["steps"].append(step_row(batch, times))
                if layers:
                    progress(f"batch {batch}: layers")
                    rows = minigan.layer_ms(repeats)
                    if worker:
                        for row, theirs in zip(rows, worker.ask("layers", batch, repeats)["layers"]):
                            row.update({key: theirs[key] for key in ("torch_forward_ms", "torch_backward_ms")},
                                       torch_layer=theirs["layer"], torch_shapes=[theirs["shape_in"],
                                                                                  theirs["shape_out"]])
                    results["layers"][batch] = rows
    finally:
        if worker:
            worker.close()
    return results


def step_row(batch: int, times: dict[str, list[float]]) -> dict[str, Any]:
    """One batch size's row from its per-round medians."""
    row: dict[str, Any] = {"batch": batch}
    for side in ("minigan", "torch"):
        values = times[side]
        row[f"{side}_ms"] = statistics.median(values) if values else None
        row[f"{side}_spread"] = [min(values), max(values)] if values else None
    row["ratio"] = row["torch_ms"] / row["minigan_ms"] if row["torch_ms"] else None
    row["products_ms"] = statistics.median(times["products"])
    row["products_share"] = row["products_ms"] / row["minigan_ms"]
    return row


def machine_notes(threads: int, torch_hello: dict[str, Any] | None) -> dict[str, Any]:
    """The CPU model and the BLAS each side uses."""
    return {"cpu": cpu_model(), "threads": threads, "load_average": os.getloadavg()[0], "numpy": np.__version__,
            "numpy_blas": numpy_blas(), "torch": torch_hello}


def _ms(value: float | None, spread: list[float] | None = None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}" + (f" ({spread[0]:.2f}-{spread[1]:.2f})" if spread else "")


def format_step_table(steps: list[dict[str, Any]]) -> str:
    """batch | minigan ms (spread) | torch ms (spread) | ratio | products share."""
    lines = ["| batch | minigan ms (spread) | torch ms (spread) | ratio torch/minigan | products share |",
             "|---:|---:|---:|---:|---:|"]
    for row in steps:
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] else "n/a"
        lines.append(f"| {row['batch']} | {_ms(row['minigan_ms'], row['minigan_spread'])} "
                     f"| {_ms(row['torch_ms'], row['torch_spread'])} | {ratio} "
                     f"| {row['products_share']:.0%} ({row['products_ms']:.2f} ms) |")
    return "\n".join(lines)


def format_layer_table(rows: list[dict[str, Any]]) -> str:
    """network | layer | shape in -> out | minigan / torch forward ms | minigan / torch backward ms."""
    lines = ["| network | layer | shape in -> out (HWC) | minigan fwd ms | torch fwd ms "
             "| minigan bwd ms | torch bwd ms |", "|---|---|---|---:|---:|---:|---:|"]
    for row in rows:
        shapes = " -> ".join("x".join(map(str, shape)) for shape in (row["shape_in"], row["shape_out"]))
        lines.append(f"| {row['network']} | {row['layer']} | {shapes} | {_ms(row['minigan_forward_ms'])} "
                     f"| {_ms(row.get('torch_forward_ms'))} | {_ms(row['minigan_backward_ms'])} "
                     f"| {_ms(row.get('torch_backward_ms'))} |")
    return "\n".join(lines)


def format_notes(machine: dict[str, Any]) -> str:
    """The CPU, the load, the threads and each side's BLAS as a bullet list."""
    torch = machine["torch"]
    torch_line = (f"torch {torch['version']}, {torch['threads']} threads: {'; '.join(torch['config'])}" if torch
                  else "torch: not run (not installed, or not asked for)")
    return "\n".join([f"- CPU: {machine['cpu']}; load average {machine['load_average']:.2f} at the start "
                      f"(other processes share the cores)", f"- threads per side: {machine['threads']}",
                      f"- NumPy {machine['numpy']}, BLAS: {'; '.join(machine['numpy_blas'])}", f"- {torch_line}"])


def positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=positive, nargs="+", default=[64, 256])
    parser.add_argument("--rounds", type=positive, default=5, help="rounds alternating which side goes first")
    parser.add_argument("--repeats", type=positive, default=10, help="timed steps per side and round")
    parser.add_argument("--threads", type=positive, default=2, help="BLAS threads (NumPy) and torch threads")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    parser.add_argument("--no-layers", action="store_true", help="skip the per-layer tables")
    parser.add_argument("--no-torch", action="store_true", help="minigan only")
    args = parser.parse_args(argv)
    results = run_benchmark(args.batch_sizes, args.rounds, args.repeats, args.threads, layers=not args.no_layers,
                            torch=not args.no_torch, progress=lambda message: print(message, file=sys.stderr))
    print(f"## DCGAN step, float32 CPU ({args.rounds} rounds x {args.repeats} steps)\n")
    print(format_step_table(results["steps"]))
    for batch, rows in results["layers"].items():
        print(f"\n## Layers at batch {batch} (backward: parameter and input gradients)\n")
        print(format_layer_table(rows))
    print("\n" + format_notes(results["machine"]))
    if args.json:
        atomic_write_json(args.json, {"arguments": vars(args), **results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
