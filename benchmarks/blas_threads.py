"""BLAS threads per preset: one training step with 1 and with 2 OpenBLAS threads.

For each preset this builds the preset's GAN (float32, NumPy backend), feeds it random
real batches of the right shape, and measures the median milliseconds of one
`gan.train_step` with the BLAS libraries limited to 1 and to 2 threads
(threadpoolctl). The two settings alternate for `--rounds` rounds, taking turns going
first, each block a pause, untimed steps and `--repeats` timed steps
(`minigan.bench.timing`), so that a change in the machine's load hits both alike; the
median is over all timed steps of a setting. This is done twice:

- quiet: the machine as it is;
- busy: with a neighbour, a second Python process spinning on one core, which this
  script starts before and kills after the measurement (as a second run or a test
  suite on a shared 2-core machine would).

The recommended `Preset.blas_threads` is the faster setting on the busy machine
(a shared machine is the common case, and two threads that lose a core to a neighbour
can be many times slower), unless the quiet machine's faster setting is the other one
and is faster by more than 20% *and* by more than it loses on the busy machine (then
that one: it gains more alone than it costs under load). When neither setting is more
than 5% faster in either condition, the recommendation is 1 thread, which leaves the
second core to the neighbours at no cost.

    python benchmarks/blas_threads.py                          # every preset
    python benchmarks/blas_threads.py --presets ring8 idx --rounds 7 --repeats 30
    python benchmarks/blas_threads.py --json /tmp/blas_threads.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from minigan import get_backend
from minigan.bench.machine import describe, format_machine
from minigan.bench.timing import alternate, timed_block
from minigan.run.presets import PRESETS, build_gan

# the shape of one real example per preset (flat for the MLPs, channels-last images for dcgan)
DATA_SHAPES = {"seed": (784,), "ring8": (2,), "grid25": (2,), "ring8-best": (2,), "grid25-best": (2,),
               "digits": (64,), "idx": (784,), "dcgan-paper": (28, 28, 1)}
EXPENSIVE = {"idx", "grid25-best", "dcgan-paper"}  # these take half the repeats
THREADS = (1, 2)
SWITCH_MARGIN = 1.20   # the quiet machine overrides the busy one above this speed ratio
TIE_MARGIN = 1.05      # below this ratio in both conditions the settings are even


def measure(name: str, rounds: int, repeats: int, warmup: int = 5) -> dict[int, float]:
    """Median step milliseconds of preset `name` per BLAS thread count, the settings alternating."""
    preset = PRESETS[name]
    gan = build_gan(preset, DATA_SHAPES[name], get_backend("numpy", "float32", seed=0))
    rng = np.random.default_rng(0)
    batches = [rng.random((preset.batch_size, *DATA_SHAPES[name]), dtype=np.float32) for _ in range(gan.d_steps)]
    real = batches if gan.d_steps > 1 else batches[0]

    def block(_: str, threads: str) -> list[float]:
        with threadpool_limits(limits=int(threads), user_api="blas"):
            return timed_block(lambda: gan.train_step(real), repeats, warmup)

    runs = alternate([name], [str(threads) for threads in THREADS], rounds, block)
    return {threads: statistics.median(step for run in runs[name, str(threads)] for step in run.result)
            for threads in THREADS}


def start_neighbour() -> subprocess.Popen:
    """A second process that keeps one core busy until killed."""
    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.5)  # let it reach the core
    return neighbour


def faster(ms: dict[int, float]) -> tuple[int, float]:
    """The faster thread count and by how much (slower ms / faster ms)."""
    best = min(ms, key=ms.get)
    return best, max(ms.values()) / ms[best]


def recommend(quiet: dict[int, float], busy: dict[int, float]) -> int:
    """The BLAS thread count to put in the preset (the rule of the module docstring)."""
    quiet_best, quiet_ratio = faster(quiet)
    busy_best, busy_ratio = faster(busy)
    if quiet_ratio < TIE_MARGIN and busy_ratio < TIE_MARGIN:
        return 1
    if quiet_best != busy_best and quiet_ratio > max(SWITCH_MARGIN, busy_ratio):
        return quiet_best
    return busy_best


def table(results: dict[str, dict]) -> str:
    """The results as a markdown table."""
    def cells(ms: dict[int, float]) -> str:
        best, ratio = faster(ms)
        return f"{ms[1]:.2f} | {ms[2]:.2f} | {best} thread{'s' * (best > 1)} x{ratio:.2f}"

    lines = ["| preset | batch | 1 thread ms | 2 threads ms | faster (quiet) "
             "| 1 thread ms | 2 threads ms | faster (busy) | recommend |",
             "|---|---:|---:|---:|---|---:|---:|---|---:|"]
    for name, result in results.items():
        lines.append(f"| {name} | {result['batch']} | {cells(result['quiet'])} | {cells(result['busy'])} "
                     f"| {result['recommend']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    known = [name for name in PRESETS if name in DATA_SHAPES]
    parser.add_argument("--presets", nargs="+", default=known, choices=known)
    parser.add_argument("--rounds", type=int, default=5, help="alternations of 1 and 2 threads")
    parser.add_argument("--repeats", type=int, default=20, help="timed steps per setting and round")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args(argv)

    print("; ".join(format_machine(describe(None, None))))
    print(f"rounds {args.rounds}, repeats {args.repeats} (half for {sorted(EXPENSIVE)})")
    results: dict[str, dict] = {}
    for name in args.presets:
        repeats = max(1, args.repeats // 2) if name in EXPENSIVE else args.repeats
        quiet = measure(name, args.rounds, repeats)
        neighbour = start_neighbour()
        try:
            busy = measure(name, args.rounds, repeats)
        finally:
            neighbour.kill()
            neighbour.wait()
        results[name] = {"batch": PRESETS[name].batch_size, "quiet": quiet, "busy": busy,
                         "recommend": recommend(quiet, busy)}
        print(f"{name}: quiet {quiet[1]:.2f} / {quiet[2]:.2f} ms, busy {busy[1]:.2f} / {busy[2]:.2f} ms "
              f"(1 / 2 threads)", flush=True)
    print()
    print(table(results))
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"rounds": args.rounds, "repeats": args.repeats, "results": results}, file, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
