"""What a second core can give minigan's DCGAN step: the `dcgan-paper` preset's step and its
matrix products on one and on two BLAS threads, and PyTorch's step on two threads, in one
run (float32, NumPy).

NumPy runs everything but the matrix products on one core, so minigan's step on two BLAS
threads is its products on two threads plus "the rest" (im2col's copies, col2im's adds,
BatchNorm, the activations, Adam, Python) on one. For each batch size the first table gives
minigan's step and its products alone (`MiniganDCGAN.products_ms`) on 1 and on 2 BLAS
threads, the rest (step - products), and a bound: the two-thread products plus half of the
one-thread rest, the step as it would be if the rest were split over both cores at no cost
at all. PyTorch's two-thread step is set against minigan's step and against that bound.

The second table probes how much of that bound this machine allows: an element-wise chain of
four in-place passes (what BatchNorm and ReLU do: subtract, scale, shift, clip) over the
step's largest activation (B x 14 x 14 x 64, float32), on one Python thread and split by rows
over two, in fair timed blocks. Element-wise passes are bound by memory bandwidth, which
the second core does not double.

    python benchmarks/two_core_limits.py                       # batch 64 and 256, 3 rounds
    python benchmarks/two_core_limits.py --batch-sizes 64 --rounds 5 --no-torch
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from minigan.bench.dcgan import MiniganDCGAN
from minigan.bench.dcgan_torch import TorchWorker
from minigan.bench.machine import OtherLoad, describe, format_machine
from minigan.bench.timing import Summary, add_round_arguments, alternate, timed_block
from minigan.run.threads import blas_threads

MINIGAN_SIDES = {"minigan, 1 thread": 1, "minigan, 2 threads": 2}
CHAIN_SIDES = ("one thread", "two threads")


def bound_row(step_1: float, products_1: float, step_2: float, products_2: float,
              torch_2: float | None) -> dict[str, float | None]:
    """The first table's derived columns from medians in ms: the rest on 1 and 2 threads,
    the bound (products on two threads + half of the one-thread rest) and PyTorch's
    two-thread step over minigan's step and over the bound (> 1: minigan faster)."""
    rest_1, rest_2 = step_1 - products_1, step_2 - products_2
    bound = products_2 + rest_1 / 2
    return {"rest_1": rest_1, "rest_2": rest_2, "bound": bound,
            "ratio": torch_2 / step_2 if torch_2 else None, "ratio_at_bound": torch_2 / bound if torch_2 else None}


class Chain:
    """The element-wise probe: subtract, scale, shift and clip (four in-place passes) over an
    (rows, 64) float32 array, on one thread or split by rows over two."""

    def __init__(self, rows: int):
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((rows, 64), dtype=np.float32)
        self.out = np.empty_like(self.x)
        self.mean, self.scale = self.x.mean(axis=0), rng.uniform(0.5, 1.5, 64).astype(np.float32)
        self.pool = ThreadPoolExecutor(max_workers=1)

    def passes(self, start: int, stop: int) -> None:
        out = self.out[start:stop]
        np.subtract(self.x[start:stop], self.mean, out=out)
        out *= self.scale
        out += 0.1
        np.maximum(out, 0, out=out)

    def run(self, threads: int) -> None:
        rows = self.x.shape[0]
        if threads == 1:
            self.passes(0, rows)
            return
        other = self.pool.submit(self.passes, rows // 2, rows)
        self.passes(0, rows // 2)
        other.result()


def run_benchmark(batches: list[int], rounds: int = 3, repeats: int = 10, torch: bool = True) -> dict[str, Any]:
    """{"steps": one row per batch, "chain": one row per batch, "machine": notes}."""
    worker = TorchWorker(2) if torch and importlib.util.find_spec("torch") is not None else None
    sides = [*MINIGAN_SIDES] + (["torch, 2 threads"] if worker else [])
    others = OtherLoad()
    try:
        models = {batch: MiniganDCGAN(batch) for batch in batches}
        chains = {batch: Chain(batch * 14 * 14) for batch in batches}
        products: dict[tuple[int, str], list[float]] = {(batch, side): [] for batch in batches for side in MINIGAN_SIDES}

        def measure(batch: int, side: str) -> float:
            if side not in MINIGAN_SIDES:
                return worker.ask("step", batch, repeats)["ms"]
            with blas_threads(MINIGAN_SIDES[side]):
                step_ms = models[batch].step_ms(repeats)
                products[batch, side].append(models[batch].products_ms(repeats))
            return step_ms

        runs = alternate(batches, sides, rounds, measure)
        chain_runs = alternate(batches, CHAIN_SIDES, rounds, lambda batch, side: statistics.median(
            timed_block(lambda: chains[batch].run(1 + CHAIN_SIDES.index(side)), repeats)))
        steps, chain = [], []
        for batch in batches:
            step = {side: Summary.of_runs(runs[batch, side]).median for side in sides}
            product = {side: statistics.median(products[batch, side]) for side in MINIGAN_SIDES}
            one, two = MINIGAN_SIDES
            steps.append({"batch": batch, "step": step, "products": product,
                          **bound_row(step[one], product[one], step[two], product[two], step.get("torch, 2 threads"))})
            chain.append({"batch": batch, **{side: Summary.of_runs(chain_runs[batch, side]).median
                                             for side in CHAIN_SIDES}})
        hello = worker.hello if worker else None
        if worker:
            worker.close()
            worker = None
        with blas_threads(2):
            machine = describe(2, hello, others)
    finally:
        if worker:
            worker.close()
    return {"steps": steps, "chain": chain, "machine": machine}


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def format_tables(results: dict[str, Any]) -> str:
    one, two = MINIGAN_SIDES
    lines = ["| batch | 1 thread: step / products / rest ms | 2 threads: step / products / rest ms "
             "| bound: 2-thread products + half the 1-thread rest, ms | PyTorch, 2 threads, ms "
             "| PyTorch / minigan | PyTorch / bound |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for row in results["steps"]:
        torch_ms = row["step"].get("torch, 2 threads")
        lines.append(f"| {row['batch']} | {row['step'][one]:.2f} / {row['products'][one]:.2f} / {row['rest_1']:.2f} "
                     f"| {row['step'][two]:.2f} / {row['products'][two]:.2f} / {row['rest_2']:.2f} "
                     f"| {row['bound']:.2f} | {'n/a' if torch_ms is None else f'{torch_ms:.2f}'} "
                     f"| {_ratio(row['ratio'])} | {_ratio(row['ratio_at_bound'])} |")
    lines += ["", "| batch | element-wise chain (B x 14 x 14 x 64), one thread ms | split over two threads ms "
              "| speed-up |", "|---:|---:|---:|---:|"]
    for row in results["chain"]:
        lines.append(f"| {row['batch']} | {row['one thread']:.3f} | {row['two threads']:.3f} "
                     f"| {row['one thread'] / row['two threads']:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_round_arguments(parser, rounds=3)
    parser.add_argument("--no-torch", action="store_true", help="minigan and the probe only")
    args = parser.parse_args(argv)
    if any(batch < 2 for batch in args.batch_sizes):
        parser.error("every batch size must be at least 2 (BatchNorm needs two samples)")
    results = run_benchmark(args.batch_sizes, args.rounds, args.repeats, torch=not args.no_torch)
    print(f"## What a second core gives the DCGAN step ({args.rounds} rounds x {args.repeats} steps)\n")
    print(format_tables(results))
    print("\n" + "\n".join(f"- {line}" for line in format_machine(results["machine"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
