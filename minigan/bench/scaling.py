"""Scaling benchmark: the training step of a preset on K data-parallel processes against
one process, as samples/s, and the share of each step spent in the gradient all-reduce.

`main` (run by benchmarks/scaling.py) measures, for each preset and global batch B:
- K=1: one process with `--threads` BLAS threads (default: every core), and with one;
- K processes under `mpirun` (by default over loopback TCP, `--mpirun-args` to change),
  each with cores / K BLAS threads and B / K examples, Open MPI's waiting ranks yielding
  their core (minigan's default; `--busy-polling` adds a row without it, to show what it
  is worth, `--sync-bn` a row with synchronised BatchNorm, and `--naive` a row of ranks with every core's BLAS threads each, polling).
Each configuration runs in fresh processes (`python -m minigan.bench.scaling --worker`),
the configurations alternating round by round with a pause before each; every worker
takes `--warmup` untimed steps, then `--blocks` timed blocks of `--steps` steps, and rank
0 reports the median ms per step over the blocks and the share of those steps that its
all-reduces took (waiting for the slower rank included). Data are random batches of the
data set's shape: speed does not depend on the pixels.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np

from ..backend import get_backend
from ..distributed import DataParallel, find_mpirun, world
from ..run.presets import PRESETS, build_model
from ..run.threads import blas_threads
from .machine import cpu_model, numpy_blas
from .timing import PAUSE_S

# The presets it can time, with the shape of one example of their data set.
SHAPES = {"ring8": (2,), "digits": (64,), "seed": (784,), "idx": (784,), "vae": (784,),
          **{name: (28, 28, 1) for name in ("dcgan-paper", "dcgan-mlp-head", "dcgan-wide-g", "dcgan", "dcgan-best")}}
LOOPBACK = "--oversubscribe --mca btl self,tcp --mca btl_tcp_if_include lo"


def worker(preset_name: str, global_batch: int, threads: int, warmup: int, steps: int, blocks: int,
           sync_bn: bool = False) -> dict:
    """One rank's measurement (rank 0's result is the one reported)."""
    comm = world()
    preset = PRESETS[preset_name].with_overrides(batch_size=global_batch)
    shape = SHAPES[preset_name]
    batch = np.random.default_rng(0).uniform(-1, 1, (global_batch, *shape)).astype(np.float32)
    with blas_threads(threads):
        model = build_model(preset.family, preset, shape, get_backend("numpy", "float32", seed=0))
        parallel = None if comm is None else DataParallel(model, comm, {"preset": preset_name}, sync_bn)
        batches = [batch] * model.batches_per_step

        def step() -> None:
            if parallel is None:
                model.train_step(batches if len(batches) > 1 else batch)
            else:
                parallel.train_step(batches if len(batches) > 1 else batch)

        for _ in range(warmup):
            step()
        times, shares = [], []
        for _ in range(blocks):
            reduced = 0.0 if comm is None else comm.allreduce_seconds
            start = time.perf_counter()
            for _ in range(steps):
                step()
            elapsed = time.perf_counter() - start
            times.append(elapsed / steps * 1e3)
            shares.append(0.0 if comm is None else (comm.allreduce_seconds - reduced) / elapsed)
    return {"ms_per_step": statistics.median(times), "allreduce_share": statistics.median(shares),
            "blas": numpy_blas()}


def run_configuration(preset: str, batch: int, configuration: tuple[int, int, bool, bool],
                      options: argparse.Namespace) -> dict:
    """Starts the workers of one configuration (processes, BLAS threads each, busy polling,
    sync_bn) and returns rank 0's report."""
    processes, threads, busy_polling, sync_bn = configuration
    command = [sys.executable, "-m", "minigan.bench.scaling", "--worker", "--preset", preset,
               "--batch", str(batch), "--threads", str(threads), "--warmup", str(options.warmup),
               "--steps", str(options.steps), "--blocks", str(options.blocks), *(["--sync-bn"] if sync_bn else [])]
    environment = dict(os.environ)
    if processes > 1:
        mpirun = find_mpirun()
        if mpirun is None:
            raise SystemExit("the scaling benchmark needs mpirun: pip install 'minigan[mpi]'")
        command = [mpirun, "-n", str(processes), *shlex.split(options.mpirun_args), *command]
        environment.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                           OMPI_MCA_mpi_yield_when_idle="0" if busy_polling else "1")
    time.sleep(PAUSE_S)
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=1800)
    if result.returncode:
        raise SystemExit(f"a worker failed ({' '.join(command)}):\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["idx", "dcgan-paper"], choices=sorted(SHAPES))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256], help="global batches")
    parser.add_argument("--processes", type=int, default=2, help="K")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="BLAS threads of K=1")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed block")
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="passes over the configurations")
    parser.add_argument("--mpirun-args", default=LOOPBACK, help=f"mpirun options (default: {LOOPBACK})")
    parser.add_argument("--busy-polling", action="store_true", help="add K processes polling while they wait")
    parser.add_argument("--sync-bn", action="store_true", help="add K processes with synchronised BatchNorm")
    parser.add_argument("--naive", action="store_true", help="add K processes with --threads BLAS threads "
                        "each, polling while they wait (the oversubscription minigan's defaults avoid)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--preset", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.worker:
        report = worker(options.preset, options.batch, options.threads, options.warmup, options.steps,
                        options.blocks, options.sync_bn)
        comm = world()
        if comm is None or comm.rank == 0:
            print(json.dumps(report), flush=True)
        return
    per_rank = max(1, options.threads // options.processes)
    # (processes, BLAS threads each, busy polling, sync_bn)
    configurations = [(1, options.threads, False, False), (options.processes, per_rank, False, False)]
    if options.threads != 1:
        configurations.insert(1, (1, 1, False, False))
    if options.sync_bn:
        configurations.append((options.processes, per_rank, False, True))
    if options.busy_polling:
        configurations.append((options.processes, per_rank, True, False))
    if options.naive:  # every rank with all the cores' threads, polling: what minigan avoids
        configurations.append((options.processes, options.threads, True, False))
    print(f"# CPU: {cpu_model()}; mpirun {options.mpirun_args}", flush=True)
    rows = []
    for preset in options.presets:
        for batch in options.batch_sizes:
            measured: dict[tuple, list[dict]] = {config: [] for config in configurations}
            for round_index in range(options.rounds):
                order = configurations if round_index % 2 == 0 else configurations[::-1]
                for configuration in order:
                    measured[configuration].append(run_configuration(preset, batch, configuration, options))
            single = statistics.median(r["ms_per_step"] for r in measured[configurations[0]])
            for (processes, threads, busy, sync_bn), reports in measured.items():
                ms = statistics.median(r["ms_per_step"] for r in reports)
                rows.append({"preset": preset, "global_batch": batch, "processes": processes,
                             "threads_per_process": threads, "waiting": "busy polling" if busy else "yield",
                             "sync_bn": sync_bn,
                             "ms_per_step": ms, "spread_ms": [min(r["ms_per_step"] for r in reports),
                                                              max(r["ms_per_step"] for r in reports)],
                             "samples_per_s": batch / ms * 1e3, "speedup": single / ms,
                             "allreduce_share": statistics.median(r["allreduce_share"] for r in reports)})
                print_row(rows[-1])
    if options.json:
        with open(options.json, "w") as file:
            json.dump({"cpu": cpu_model(), "rows": rows}, file, indent=2)


def print_row(row: dict[str, Any]) -> None:
    if not getattr(print_row, "header", False):
        print("| preset | global batch | K | BLAS threads each | waiting | BatchNorm | ms/step (min-max) "
              "| samples/s | vs K=1 | all-reduce share |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        print_row.header = True  # type: ignore[attr-defined]
    low, high = row["spread_ms"]
    print(f"| {row['preset']} | {row['global_batch']} | {row['processes']} | {row['threads_per_process']} "
          f"| {row['waiting']} | {'sync' if row['sync_bn'] else 'local'} | {row['ms_per_step']:.1f} ({low:.1f}-{high:.1f}) | {row['samples_per_s']:.0f} "
          f"| {row['speedup']:.2f}x | {row['allreduce_share']:.1%} |", flush=True)


if __name__ == "__main__":
    main()
