"""col2im benchmark: its two orders of adding the windows back, on the convolutions of the
`dcgan-paper` preset's step (and one 3x3 convolution), float32, NumPy.

col2im (`minigan.im2col.add_windows`) adds each row of a column matrix onto its window of
the image. `add_windows_by_position` does it a kernel position at a time (kh kw strided adds);
`add_windows_by_tile_class` a class of disjoint windows at a time (ceil(kh/sh) ceil(kw/sw)
adds, each in runs of kw C numbers). `add_windows` uses the tile classes when the image has more
than one channel and the kernel positions when it has one; this table is why. Each cell
is made as the layers make it, a chunk of samples at a time (`sample_chunks` with the
backend's chunk size), and is the median over `--rounds` rounds (the two orders take
turns going first) of the median of `--repeats` calls.

    python benchmarks/col2im_orders.py
    python benchmarks/col2im_orders.py --batch-sizes 64 --rounds 5
"""
from __future__ import annotations

import argparse
import statistics
from functools import partial
from typing import Any, Callable

import numpy as np

from minigan.backend import HOST_CHUNK_BYTES
from minigan.bench.machine import describe, format_machine
from minigan.bench.timing import median_ms, round_order
from minigan.im2col import add_windows_by_position, add_windows_by_tile_class, sample_chunks, window_count
from minigan.run.arguments import positive
from minigan.run.threads import blas_threads

# (where col2im runs, padded image (Hp, Wp, C), kernel, stride)
CASES = (
    ("G 4 ConvTranspose2d forward; D 2 Conv2d dx", (16, 16, 64), 4, 2),
    ("G 7 ConvTranspose2d forward; D 0 Conv2d dx", (30, 30, 1), 4, 2),
    ("a 3x3 convolution's dx, stride 1", (16, 16, 32), 3, 1),
)
ORDERS = {"kernel position": add_windows_by_position, "tile class": partial(add_windows_by_tile_class, np)}


def chunked_col2im(add: Callable[..., None], windows: Any, out: Any, stride: tuple[int, int]) -> Callable[[], None]:
    """col2im of `windows` (N, Ho, Wo, kh, kw, C) into `out` (N, Hp, Wp, C) by `add`, a chunk
    of samples at a time as the layers do it."""
    per_sample = windows[0].nbytes
    chunks = sample_chunks(windows.shape[0], per_sample, HOST_CHUNK_BYTES)

    def run() -> None:
        for start, stop in chunks:
            out[start:stop] = 0
            add(windows[start:stop], out[start:stop], stride)
    return run


def run_benchmark(batches: list[int], rounds: int, repeats: int) -> list[dict[str, Any]]:
    """One row per case and batch size: each order's median ms."""
    rng = np.random.default_rng(0)
    rows = []
    for name, (hp, wp, channels), kernel, stride in CASES:
        for batch in batches:
            ho, wo = window_count(hp, kernel, stride), window_count(wp, kernel, stride)
            windows = rng.standard_normal((batch, ho, wo, kernel, kernel, channels), dtype=np.float32)
            out = np.empty((batch, hp, wp, channels), dtype=np.float32)
            calls = {order: chunked_col2im(add, windows, out, (stride, stride)) for order, add in ORDERS.items()}
            times: dict[str, list[float]] = {order: [] for order in ORDERS}
            for round_index in range(rounds):
                for order in round_order(list(ORDERS), round_index):
                    times[order].append(median_ms(calls[order], lambda: None, repeats, warmup=1))
            medians = {order: statistics.median(values) for order, values in times.items()}
            rows.append({"case": name, "image": (batch, hp, wp, channels), "kernel": kernel, "stride": stride,
                         "picked": "tile class" if channels > 1 else "kernel position", **medians})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=positive, nargs="+", default=[64, 256])
    parser.add_argument("--rounds", type=positive, default=3, help="rounds alternating which order goes first")
    parser.add_argument("--repeats", type=positive, default=20, help="timed calls per order and round")
    args = parser.parse_args(argv)
    with blas_threads(1):
        rows = run_benchmark(args.batch_sizes, args.rounds, args.repeats)
        machine = describe(1, None)
    print("## col2im: the two orders of adding the windows (float32, ms, medians)\n")
    print("| col2im of | padded images (N, Hp, Wp, C) | kernel, stride | by kernel position | by tile class "
          "| position / tile | col2im uses |")
    print("|---|---|---|---:|---:|---:|---|")
    for row in rows:
        print(f"| {row['case']} | {row['image']} | {row['kernel']}, {row['stride']} | "
              f"{row['kernel position']:.3f} | {row['tile class']:.3f} | "
              f"{row['kernel position'] / row['tile class']:.2f}x | {row['picked']} |")
    print()
    for line in format_machine(machine):
        print(f"- {line}")


if __name__ == "__main__":
    main()
