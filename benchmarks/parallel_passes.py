"""Prototype benchmark: D's two passes (real, fake) side by side on two threads, against one
after the other on two BLAS threads, for the `dcgan-paper` preset (float32, NumPy).

minigan's D step runs D with BatchNorm over the real and the fake batch in two passes.
NumPy runs everything but the matrix products on one core, so this prototype runs the fake
pass on a twin of D (`twin`: the same parameter array, its own gradients, buffers and
caches) in a second Python thread, each pass with one BLAS thread, and adds the twin's
gradients into D's. It times, per batch size:
- "passes alone": D's two passes of the D step, forward and backward, nothing else;
- "in the step": the whole training step, `GAN.train_step` against the same step with the
  passes side by side (`side_by_side_step`; BatchNorm's running statistics are left to the
  twin, which a real implementation would replay: they are not timed here).
The configurations take turns in an alternating order over `--rounds` rounds of fair
blocks (`minigan.bench.timing`). It also times the im2col copy of D's 64->128 convolution
on one thread and split over two. `--check` first verifies in float64 that the twin's
passes give D's gradients bit for bit as the passes one after the other on one BLAS thread.
OpenBLAS's idle threads spin for `OPENBLAS_THREAD_TIMEOUT` (read at start-up) after each
multi-threaded product; run it with and without that variable (docs/benchmarks.md).

    python benchmarks/parallel_passes.py --check
    OPENBLAS_THREAD_TIMEOUT=4 python benchmarks/parallel_passes.py
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np
from threadpoolctl import threadpool_limits

from minigan.backend import get_backend
from minigan.run.arguments import positive
from minigan.bench.dcgan import MiniganDCGAN
from minigan.bench.machine import OtherLoad, describe, format_machine
from minigan.bench.timing import Summary, alternate, timed_block
from minigan.im2col import bands, gather
from minigan.model import Sequential
from minigan.run.presets import PRESETS, build_gan
from minigan.run.threads import blas_threads

ONE_AFTER_THE_OTHER, SIDE_BY_SIDE = "one after the other, 2 BLAS threads", "side by side, 1 BLAS thread each"


def twin(model: Sequential) -> Sequential:
    """A copy of `model` computing with its parameter array (shared, not copied) and its own
    gradients, buffers and forward caches; built on a throwaway generator."""
    copy = Sequential.from_config(model.config(), get_backend(model.backend.name, model.backend.dtype, seed=0))
    for layer, copy_layer in zip(model.layers, copy.layers):
        names = layer.param_shapes()
        copy_layer.attach(model.backend, {name: getattr(layer, name) for name in names},
                          {name: getattr(copy_layer, "d" + name) for name in names},
                          {name: getattr(copy_layer, name) for name in layer.buffer_shapes()})
    copy.params = model.params
    return copy.train(model.training)


class Passes:
    """D's two passes of the D step (forward, then backward of the loss's gradient) over a real
    and a fake batch, one after the other on D or side by side on D and its twin."""

    def __init__(self, gan: Any):
        self.gan, self.D, self.twin = gan, gan.discriminator, twin(gan.discriminator)
        self.worker = ThreadPoolExecutor(max_workers=1)

    def one(self, model: Sequential, batch: Any, real: bool, accumulate: bool) -> None:
        """One pass of `model` over a real or a fake `batch`, its gradients written or added."""
        objective = self.gan.objective
        _, grad = (objective.discriminator_real if real else objective.discriminator_fake)(model.forward(batch))
        model.backward(grad, input_grad=False, accumulate=accumulate)

    def one_after_the_other(self, real: Any, fake: Any) -> None:
        self.one(self.D, real, True, False)
        self.one(self.D, fake, False, True)

    def side_by_side(self, real: Any, fake: Any) -> None:
        with threadpool_limits(limits=1, user_api="blas"):
            pending = self.worker.submit(self.one, self.twin, fake, False, False)
            try:
                self.one(self.D, real, True, False)
            finally:
                pending.result()
        self.D.grads += self.twin.grads


def side_by_side_step(passes: Passes, real: Any) -> None:
    """The training step with D's passes side by side (the non-saturating loss, one D step)."""
    gan = passes.gan
    fake = gan.generator.forward(gan.noise(real.shape[0]))
    passes.side_by_side(real, fake)
    gan.d_opt.step()
    gan._generator_step(fake)


def check_bit_for_bit(batch: int) -> bool:
    """float64: D's gradients from the passes side by side equal those of the passes one after
    the other on one BLAS thread, bit for bit."""
    grads = []
    for side_by_side in (False, True):
        gan = build_gan(PRESETS["dcgan-paper"], (28, 28, 1), get_backend("numpy", "float64", seed=0))
        rng = np.random.default_rng(1)
        real, fake = rng.uniform(-1, 1, (2, batch, 28, 28, 1))
        passes = Passes(gan)
        with threadpool_limits(limits=1, user_api="blas"):
            (passes.side_by_side if side_by_side else passes.one_after_the_other)(real, fake)
        grads.append(gan.discriminator.grads.copy())
    return bool(np.array_equal(*grads))


def copy_ms(batch: int, repeats: int) -> tuple[float, float]:
    """Median ms of the im2col copy of D's 64->128 convolution (padded 16x16x64 input) on one
    thread and split by samples over two (one BLAS thread)."""
    x = np.random.default_rng(0).standard_normal((batch, 16, 16, 64), dtype=np.float32)
    out = np.empty((batch, 7, 7, 4, 4, 64), np.float32)
    whole = bands((7, 7), (16, 16), (4, 4), (2, 2), (0, 0))[0]                  # the padded image as one band
    half = batch // 2
    with ThreadPoolExecutor(max_workers=2) as pool, threadpool_limits(limits=1, user_api="blas"):
        def split() -> None:
            for future in [pool.submit(gather, np, x[a:b], whole, (2, 2), out[a:b]) for a, b in
                           ((0, half), (half, batch))]:
                future.result()
        return tuple(statistics.median(timed_block(work, repeats)) for work in
                     (lambda: gather(np, x, whole, (2, 2), out), split))


def run_benchmark(batches: list[int], rounds: int, repeats: int) -> dict[str, Any]:
    """{"rows": [{"what", batch: {configuration: {median, low, high}}}], "copy": {...}, "machine": notes}."""
    others = OtherLoad()
    with blas_threads(2):
        models = {batch: MiniganDCGAN(batch) for batch in batches}
        passes = {batch: Passes(model.gan) for batch, model in models.items()}
        fakes = {batch: model.gan.sample(batch) for batch, model in models.items()}
        work: dict[str, dict[str, Callable[[int], Callable[[], Any]]]] = {
            "passes alone": {
                ONE_AFTER_THE_OTHER: lambda b: lambda: passes[b].one_after_the_other(models[b].real, fakes[b]),
                SIDE_BY_SIDE: lambda b: lambda: passes[b].side_by_side(models[b].real, fakes[b])},
            "in the step": {ONE_AFTER_THE_OTHER: lambda b: lambda: models[b].gan.train_step(models[b].real),
                            SIDE_BY_SIDE: lambda b: lambda: side_by_side_step(passes[b], models[b].real)}}
        rows = []
        for what, configurations in work.items():
            runs = alternate(batches, list(configurations), rounds,
                             lambda b, name: statistics.median(timed_block(configurations[name](b), repeats)))
            row: dict[str, Any] = {"what": what}
            for batch in batches:
                row[str(batch)] = {name: vars(Summary.of_runs(runs[batch, name])) for name in configurations}
            rows.append(row)
        copy = {str(batch): dict(zip(("one thread", "two threads"), copy_ms(batch, repeats))) for batch in batches}
        return {"rows": rows, "copy": copy, "machine": describe(2, None, others)}


def format_table(results: dict[str, Any], batches: list[int]) -> str:
    """what | configuration | ms (spread) per batch size."""
    lines = ["| timed | D's two passes | " + " | ".join(f"batch {b} ms (spread)" for b in batches) + " |",
             "|---|---|" + "---:|" * len(batches)]
    for row in results["rows"]:
        for name in (ONE_AFTER_THE_OTHER, SIDE_BY_SIDE):
            cells = [f"{row[str(b)][name]['median']:.1f} ({row[str(b)][name]['low']:.1f}-"
                     f"{row[str(b)][name]['high']:.1f})" for b in batches]
            lines.append(f"| {row['what']} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=positive, nargs="+", default=[64, 256])
    parser.add_argument("--rounds", type=positive, default=3, help="rounds alternating the order")
    parser.add_argument("--repeats", type=positive, default=10, help="timed repetitions per block")
    parser.add_argument("--check", action="store_true", help="first check the gradients bit for bit (float64)")
    args = parser.parse_args(argv)
    if args.check:
        print(f"float64 gradients bit for bit: {'yes' if check_bit_for_bit(min(args.batch_sizes)) else 'NO'}")
    start = time.perf_counter()
    results = run_benchmark(args.batch_sizes, args.rounds, args.repeats)
    print(f"## D's two passes side by side, float32 CPU ({args.rounds} rounds x {args.repeats}; "
          f"OPENBLAS_THREAD_TIMEOUT={os.environ.get('OPENBLAS_THREAD_TIMEOUT', 'unset')}; "
          f"{time.perf_counter() - start:.0f} s)\n")
    print(format_table(results, args.batch_sizes))
    print()
    for batch, times in results["copy"].items():
        print(f"- im2col copy of D's 64->128 convolution at batch {batch}: {times['one thread']:.2f} ms on one "
              f"thread, {times['two threads']:.2f} ms split over two")
    for line in format_machine(results["machine"]):
        print(f"- {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
