"""DCGAN step benchmark: minigan's `dcgan-paper` preset against the same networks and step in
PyTorch, float32 on the CPU, with as many threads on each side (`--threads`).

For each batch size it prints one row: the median ms of a training step on each side
(`--rounds` rounds over all batch sizes, the sides taking turns going first; each timed
block, after a 0.3 s pause and one untimed step, gives the median of `--repeats` steps:
`minigan.bench.timing`), with the min-max spread over rounds and the medians of the rounds
in which the side went first / second, the ratio torch ms / minigan ms (> 1: minigan is
faster) and the share of minigan's step spent in its matrix products (the products alone
at the same shapes). Then, unless `--no-layers`, forward and backward ms of every layer of
G and D on both sides; last, the CPU and the BLAS each side uses. What is measured, and
the PyTorch worker process, are in `minigan.bench.dcgan`.

With `--processes K` a third side takes its turn in every round: minigan data parallel on
K processes under mpirun (`threads / K` BLAS threads each, at least one; synchronised
BatchNorm, so that the K processes compute the one-process step up to summation order),
started fresh for each round by `minigan.bench.scaling` (over loopback TCP unless
`--mpirun-args` says otherwise), whose rank 0 reports the median over 3 blocks of
`--repeats` steps after 2 untimed ones. A second table sets it against
PyTorch on `--threads` threads: both sides then use the same cores.

With `--numpy-code` (where the layers' compiled passes are on: Numba installed) another
side takes its turn in every round: the same step with `Backend.compiled` off, i.e. every
layer's NumPy code, which gives the same bits in more passes over memory
(`minigan.cpu_kernels`); a table sets the two against each other and against PyTorch.

    python benchmarks/dcgan_step.py                                  # batch 64 and 256, 5 rounds
    python benchmarks/dcgan_step.py --batch-sizes 64 --rounds 3 --no-layers --json /tmp/dcgan.json
    python benchmarks/dcgan_step.py --threads 2 --processes 2 --no-layers
    python benchmarks/dcgan_step.py --threads 2 --processes 2 --no-layers --mpirun-args=--oversubscribe
    python benchmarks/dcgan_step.py --threads 2 --numpy-code --no-layers
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
from typing import Any, Callable

from minigan.bench.dcgan import MiniganDCGAN
from minigan.bench.dcgan_torch import TorchWorker
from minigan.bench.machine import OtherLoad, describe, format_machine
from minigan.bench.scaling import LOOPBACK, run_configuration
from minigan.bench.timing import Run, Summary, add_round_arguments, alternate
from minigan.cpu_kernels import available as compiled_passes_available
from minigan.distributed import find_mpirun
from minigan.files import atomic_write_json
from minigan.run.arguments import positive
from minigan.run.threads import blas_threads

SIDES = ("minigan", "torch", "minigan_parallel", "minigan_numpy_code")  # the last two: --processes K > 1,
                                                                         # --numpy-code


def parallel_step_ms(batch: int, processes: int, threads: int, repeats: int, mpirun_args: str = LOOPBACK) -> float:
    """ms per step of the `dcgan-paper` preset at global `batch` on `processes` data-parallel
    processes (synchronised BatchNorm, threads // processes BLAS threads each, at least one)."""
    timing = argparse.Namespace(warmup=2, steps=repeats, blocks=3, mpirun_args=mpirun_args)
    configuration = (processes, max(1, threads // processes), False, True)  # no busy polling, sync BN
    return run_configuration("dcgan-paper", batch, configuration, timing)["ms_per_step"]


def run_benchmark(batches: list[int], rounds: int = 5, repeats: int = 10, threads: int = 2,
                  layers: bool = True, torch: bool = True, processes: int = 1, mpirun_args: str = LOOPBACK,
                  numpy_code: bool = False,
                  progress: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """Measures every batch size (module docstring); PyTorch only when `torch` and installed,
    minigan on `processes` data-parallel processes too when there are more than one, and
    with its NumPy code instead of the compiled passes too when `numpy_code`.

    Returns:
        {"steps": one row per batch, "layers": {batch: one row per layer}, "machine": notes}.
    """
    worker = TorchWorker(threads) if torch and importlib.util.find_spec("torch") is not None else None
    sides = ["minigan"] + (["torch"] if worker else []) + (["minigan_parallel"] if processes > 1 else []) + \
        (["minigan_numpy_code"] if numpy_code else [])
    results: dict[str, Any] = {"steps": [], "layers": {}}
    others = OtherLoad()
    try:
        with blas_threads(threads):
            models = {batch: MiniganDCGAN(batch) for batch in batches}
            numpy_models = {batch: MiniganDCGAN(batch, compiled=False) for batch in batches} if numpy_code else {}
            products: dict[int, list[float]] = {batch: [] for batch in batches}

            def measure(batch: int, side: str) -> float:
                if side == "torch":
                    return worker.ask("step", batch, repeats)["ms"]
                if side == "minigan_parallel":
                    return parallel_step_ms(batch, processes, threads, repeats, mpirun_args)
                if side == "minigan_numpy_code":
                    return numpy_models[batch].step_ms(repeats)
                step_ms = models[batch].step_ms(repeats)
                products[batch].append(models[batch].products_ms(repeats))
                return step_ms

            runs = alternate(batches, sides, rounds, measure,
                             after_round=lambda index: progress(f"round {index + 1}/{rounds} done"))
            for batch in batches:
                results["steps"].append(step_row(batch, {side: runs[batch, side] for side in sides},
                                                 products[batch], models[batch].products_flop()))
                if layers:
                    progress(f"batch {batch}: layers")
                    rows = models[batch].layer_ms(repeats)
                    if worker:
                        for row, theirs in zip(rows, worker.ask("layers", batch, repeats)["layers"]):
                            row.update({key: theirs[key] for key in ("torch_forward_ms", "torch_backward_ms")},
                                       torch_layer=theirs["layer"], torch_shapes=[theirs["shape_in"],
                                                                                  theirs["shape_out"]])
                    results["layers"][batch] = rows
            hello = worker.hello if worker else None
            if worker:  # closed first, so that its CPU time counts as ours, not as other processes'
                worker.close()
                worker = None
            results["machine"] = describe(threads, hello, others)
    finally:
        if worker:
            worker.close()
    return results


def step_row(batch: int, runs: dict[str, list[Run]], products: list[float], flop: int) -> dict[str, Any]:
    """One batch size's row from each side's rounds, minigan's products ms per round and
    their floating-point operations (the products' rate says how fast this machine's BLAS
    is today, which the ratio to PyTorch depends on: docs/benchmarks.md)."""
    row: dict[str, Any] = {"batch": batch}
    for side in SIDES:
        summary = Summary.of_runs(runs[side]) if side in runs else None
        row[f"{side}_ms"] = summary.median if summary else None
        row[f"{side}_spread"] = [summary.low, summary.high] if summary else None
        row[f"{side}_first_second"] = [summary.when_first, summary.when_second] if summary else None
    row["ratio"] = row["torch_ms"] / row["minigan_ms"] if row["torch_ms"] else None
    row["parallel_ratio"] = (row["torch_ms"] / row["minigan_parallel_ms"]
                             if row["torch_ms"] and row["minigan_parallel_ms"] else None)
    row["compiled_speedup"] = row["minigan_numpy_code_ms"] / row["minigan_ms"] if row["minigan_numpy_code_ms"] else None
    row["products_ms"] = statistics.median(products)
    row["products_share"] = row["products_ms"] / row["minigan_ms"]
    row["products_gflops"] = flop / row["products_ms"] / 1e6
    return row


def _ms(value: float | None, spread: list[float] | None = None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}" + (f" ({spread[0]:.2f}-{spread[1]:.2f})" if spread else "")


def _first_second(values: list[float | None] | None) -> str:
    return " / ".join(_ms(value) for value in values) if values else "n/a"


def format_step_table(steps: list[dict[str, Any]]) -> str:
    """batch | each side's ms (spread) and ms going first / second | ratio | products share."""
    lines = ["| batch | minigan ms (spread) | minigan first / second | torch ms (spread) | torch first / second "
             "| ratio torch/minigan | products share |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for row in steps:
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] else "n/a"
        lines.append(f"| {row['batch']} | {_ms(row['minigan_ms'], row['minigan_spread'])} "
                     f"| {_first_second(row['minigan_first_second'])} | {_ms(row['torch_ms'], row['torch_spread'])} "
                     f"| {_first_second(row['torch_first_second'])} | {ratio} "
                     f"| {row['products_share']:.0%} ({row['products_ms']:.2f} ms, "
                     f"{row['products_gflops']:.0f} GFLOP/s) |")
    return "\n".join(lines)


def format_parallel_table(steps: list[dict[str, Any]], processes: int, threads: int) -> str:
    """batch | minigan on `processes` processes ms (spread) | torch ms (spread) | ratio."""
    lines = [f"| batch | minigan, {processes} processes ms (spread) | torch, {threads} threads ms (spread) "
             f"| ratio torch/minigan |", "|---:|---:|---:|---:|"]
    for row in steps:
        ratio = f"{row['parallel_ratio']:.2f}x" if row["parallel_ratio"] else "n/a"
        lines.append(f"| {row['batch']} | {_ms(row['minigan_parallel_ms'], row['minigan_parallel_spread'])} "
                     f"| {_ms(row['torch_ms'], row['torch_spread'])} | {ratio} |")
    return "\n".join(lines)


def format_numpy_code_table(steps: list[dict[str, Any]]) -> str:
    """batch | minigan compiled ms (spread) | minigan NumPy code ms (spread) | NumPy code / compiled
    | torch / each."""
    lines = ["| batch | minigan, compiled passes ms (spread) | minigan, NumPy code ms (spread) "
             "| NumPy code / compiled | torch / compiled | torch / NumPy code |", "|---:|---:|---:|---:|---:|---:|"]
    for row in steps:
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] else "n/a"
        numpy_ratio = (f"{row['torch_ms'] / row['minigan_numpy_code_ms']:.2f}x"
                       if row["torch_ms"] and row["minigan_numpy_code_ms"] else "n/a")
        lines.append(f"| {row['batch']} | {_ms(row['minigan_ms'], row['minigan_spread'])} "
                     f"| {_ms(row['minigan_numpy_code_ms'], row['minigan_numpy_code_spread'])} "
                     f"| {row['compiled_speedup']:.2f}x | {ratio} "
                     f"| {numpy_ratio} |")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_round_arguments(parser, rounds=5)
    parser.add_argument("--threads", type=positive, default=2, help="BLAS threads (NumPy) and torch threads")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    parser.add_argument("--no-layers", action="store_true", help="skip the per-layer tables")
    parser.add_argument("--no-torch", action="store_true", help="minigan only (and its data-parallel side)")
    parser.add_argument("--processes", type=positive, default=1,
                        help="also time minigan data parallel on this many processes (needs mpirun)")
    parser.add_argument("--numpy-code", action="store_true",
                        help="also time minigan with its NumPy code instead of the compiled passes (needs Numba)")
    parser.add_argument("--mpirun-args", default=LOOPBACK,
                        help=f"mpirun options of --processes (default: loopback TCP, {LOOPBACK}; "
                             "--mpirun-args=--oversubscribe: Open MPI's default, shared memory)")
    args = parser.parse_args(argv)
    if args.processes > 1:
        if find_mpirun() is None:
            parser.error("--processes needs mpi4py and Open MPI's mpirun: pip install 'minigan[mpi]'")
        uneven = [batch for batch in args.batch_sizes if batch % args.processes]
        if uneven:
            parser.error(f"every batch size must be divisible by --processes {args.processes}, got {uneven}")
    if args.numpy_code and not compiled_passes_available():
        parser.error("--numpy-code compares the compiled passes with the NumPy code, and the compiled passes are "
                     "off here: pip install 'minigan[fast]' (Numba), and leave MINIGAN_COMPILED unset")
    results = run_benchmark(args.batch_sizes, args.rounds, args.repeats, args.threads, layers=not args.no_layers,
                            torch=not args.no_torch, processes=args.processes, mpirun_args=args.mpirun_args,
                            numpy_code=args.numpy_code, progress=lambda message: print(message, file=sys.stderr))
    print(f"## DCGAN step, float32 CPU ({args.rounds} rounds x {args.repeats} steps)\n")
    print(format_step_table(results["steps"]))
    if args.processes > 1:
        print(f"\n## minigan data parallel on {args.processes} processes against PyTorch on "
              f"{args.threads} threads\n")
        print(format_parallel_table(results["steps"], args.processes, args.threads))
    if args.numpy_code:
        print("\n## minigan's compiled passes against its NumPy code (the same bits)\n")
        print(format_numpy_code_table(results["steps"]))
    for batch, rows in results["layers"].items():
        print(f"\n## Layers at batch {batch} (backward: parameter and input gradients)\n")
        print(format_layer_table(rows))
    print("\n" + "\n".join(f"- {line}" for line in format_machine(results["machine"])))
    if args.json:
        atomic_write_json(args.json, {"arguments": vars(args), **results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
