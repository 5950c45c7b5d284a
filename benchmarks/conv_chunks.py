"""Chunk-size benchmark: the `dcgan-paper` preset's training step (float32, NumPy) with the
convolutions' column matrices made a chunk of samples at a time, for several chunk sizes
(`Backend.chunk_bytes`, `minigan.im2col.sample_chunks`), against the whole batch at once.

One model per batch size; each configuration sets `chunk_bytes` on that model's backend
and times a fair block (a pause, one untimed step, then `--repeats` steps:
`minigan.bench.timing`); the configurations take turns in an order that alternates from
round to round, and the table gives each one's median over `--rounds` rounds.

    python benchmarks/conv_chunks.py                                  # batch 64 and 256, 1 thread
    python benchmarks/conv_chunks.py --batch-sizes 64 --chunk-mib 2 4 8 --threads 2
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from minigan.backend import HOST_CHUNK_BYTES
from minigan.run.arguments import positive
from minigan.bench.dcgan import MiniganDCGAN
from minigan.bench.machine import OtherLoad, describe, format_machine
from minigan.bench.timing import Summary, alternate
from minigan.run.threads import blas_threads

WHOLE = "whole batch"


def label(mib: float | None) -> str:
    """A configuration's name: its chunk size, the default marked."""
    if mib is None:
        return WHOLE
    default = " (default)" if mib * 2**20 == HOST_CHUNK_BYTES else ""
    return f"{mib:g} MiB{default}"


def run_benchmark(batches: list[int], sizes_mib: list[float | None], rounds: int, repeats: int,
                  threads: int) -> dict[str, Any]:
    """{"rows": [{"chunk", "chunk_bytes", batch: {median, low, high}...}], "machine": notes}."""
    others = OtherLoad()
    configurations = {label(mib): None if mib is None else int(mib * 2**20) for mib in sizes_mib}
    with blas_threads(threads):
        models = {batch: MiniganDCGAN(batch) for batch in batches}

        def measure(batch: int, name: str) -> float:
            models[batch].backend.chunk_bytes = configurations[name]
            return models[batch].step_ms(repeats)

        runs = alternate(batches, list(configurations), rounds, measure)
        rows = []
        for name, chunk_bytes in configurations.items():
            row: dict[str, Any] = {"chunk": name, "chunk_bytes": chunk_bytes}
            for batch in batches:
                summary = Summary.of_runs(runs[batch, name])
                row[str(batch)] = {"median": summary.median, "low": summary.low, "high": summary.high}
            rows.append(row)
        return {"rows": rows, "machine": describe(threads, None, others)}


def format_table(results: dict[str, Any], batches: list[int]) -> str:
    """chunk | ms (spread) per batch size."""
    lines = ["| chunk of columns | " + " | ".join(f"batch {batch} ms (spread)" for batch in batches) + " |",
             "|---|" + "---:|" * len(batches)]
    for row in results["rows"]:
        cells = [f"{row[str(b)]['median']:.1f} ({row[str(b)]['low']:.1f}-{row[str(b)]['high']:.1f})" for b in batches]
        lines.append(f"| {row['chunk']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def positive_mib(text: str) -> float:
    """argparse type: a chunk size in MiB, > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number of MiB > 0, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=positive, nargs="+", default=[64, 256])
    parser.add_argument("--chunk-mib", type=positive_mib, nargs="+", default=[1, 2, 4, 8, 16],
                        help="chunk sizes to time beside the whole batch")
    parser.add_argument("--rounds", type=positive, default=5, help="rounds alternating the order")
    parser.add_argument("--repeats", type=positive, default=6, help="timed steps per block")
    parser.add_argument("--threads", type=positive, default=1, help="BLAS threads")
    args = parser.parse_args(argv)
    results = run_benchmark(args.batch_sizes, [None, *args.chunk_mib], args.rounds, args.repeats, args.threads)
    print(f"## DCGAN step by chunk size, float32 CPU ({args.rounds} rounds x {args.repeats} steps)\n")
    print(format_table(results, args.batch_sizes))
    print()
    for line in format_machine(results["machine"]):
        print(f"- {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
