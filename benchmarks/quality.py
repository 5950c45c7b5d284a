"""Sample quality of minigan's presets, beside the published numbers.

2-D mixtures (ring8, grid25): each configuration is trained once per seed and scored with
PacGAN's metric (Lin et al. 2018) on 2,500 samples: modes covered (a mode counts when at
least one sample within 3 standard deviations is nearest to it), the share of such
high-quality samples, and the reverse KL of the samples' mode histogram to uniform.
Images (digits, idx = Fashion-MNIST): one run per seed, scored by the Fréchet distance
between classifier features of samples and of real test images, beside the real-data floor.

    python benchmarks/quality.py                                  # ring8 and grid25 presets, 5 seeds
    python benchmarks/quality.py --data ring8 --preset best       # the best configuration
    python benchmarks/quality.py --data ring8 --losses all --pack 1 2 --steps 2000 --seeds 2
    python benchmarks/quality.py --data grid25 --losses all --pack 1 2 --seeds 3 --first-seed 2
    python benchmarks/quality.py --data idx --preset idx,dcgan --seeds 3   # MLP beside DCGAN
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Callable

from minigan.files import atomic_write_json
from minigan.objectives import OBJECTIVES
from minigan.run.progress import progress_bar
from minigan.run.config import RunConfig
from minigan.run.loop import train

PUBLISHED = {  # (modes covered, high-quality %), as printed in the papers
    "ring8": [("PacGAN Table 1: GAN", 6.3, 98.2), ("PacGAN Table 1: PacGAN2", 7.9, 95.6),
              ("PacGAN Table 1: PacGAN4", 7.8, 95.9), ("VEEGAN Table 1: VEEGAN", 8.0, 52.9)],
    "grid25": [("PacGAN Table 1: GAN", 17.3, 94.8), ("PacGAN Table 1: PacGAN2", 23.8, 91.3),
               ("PacGAN Table 1: PacGAN4", 24.8, 93.6), ("VEEGAN Table 1: VEEGAN", 24.6, 40.0)],
}


def mean_std(values: list[float]) -> str:
    """'mean ± std' (std over seeds; 0 for one seed)."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {spread:.2f}"


def run(config: RunConfig) -> tuple[dict, float]:
    """Trains one run into a temporary directory; returns its metrics and its seconds."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        metrics = train(RunConfig(**{**vars(config), "out": out, "progress": False}))
        return metrics, time.perf_counter() - start


def mixture_table(data: str, configs: list[tuple[str, RunConfig]], seeds: range, raw: list,
                  save: Callable[[], None]) -> None:
    """Trains every configuration for every seed, printing the table (and calling `save`)
    a row at a time."""
    print(f"### {data}: seed(s) {seeds.start}-{seeds.stop - 1}, 2,500 samples each", "",
          "| configuration | modes covered | high quality % | reverse KL | s / run |",
          "|---|---:|---:|---:|---:|", sep="\n", flush=True)
    for label, config in configs:
        results = []
        for seed in progress_bar(seeds, desc=f"{data} {label}", leave=False):
            metrics, seconds = run(RunConfig(**{**vars(config), "seed": seed}))
            results.append((metrics, seconds))
            raw.append({"data": data, "configuration": label, "seed": seed, "seconds": seconds, **metrics})
        print(f"| minigan {label} | {mean_std([m['modes_covered'] for m, _ in results])} | "
              f"{mean_std([100 * m['high_quality'] for m, _ in results])} | "
              f"{mean_std([m['reverse_kl'] for m, _ in results])} | "
              f"{statistics.mean(s for _, s in results):.0f} |", flush=True)
        save()
    for label, modes, quality in PUBLISHED[data]:
        print(f"| {label} (published) | {modes} | {quality} | | |")
    print(flush=True)


def image_table(data: str, label: str, config: RunConfig, seeds: range, raw: list,
                save: Callable[[], None]) -> str:
    """Runs of an image preset, one per seed; returns the markdown row (mean ± std over seeds)."""
    results = []
    for seed in progress_bar(seeds, desc=f"{data} {label}", leave=False):
        metrics, seconds = run(RunConfig(**{**vars(config), "seed": seed}))
        results.append((metrics, seconds))
        raw.append({"data": data, "configuration": label, "seed": seed, "seconds": seconds, **metrics})
        save()
    return (f"| {label} | {mean_std([m['frechet_distance'] for m, _ in results])} | "
            f"{mean_std([m['frechet_floor'] for m, _ in results])} | "
            f"{mean_std([m['classes_covered'] for m, _ in results])} / 10 | "
            f"{mean_std([m['class_entropy'] for m, _ in results])} | "
            f"{statistics.mean(s for _, s in results):.0f} |")


IMAGE_HEADER = ["| configuration | Fréchet distance | real-data floor | classes covered | class entropy "
                "(log 10 = 2.30) | s / run |", "|---|---:|---:|---:|---:|---:|"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["ring8", "grid25"],
                        choices=["ring8", "grid25", "digits", "idx"])
    parser.add_argument("--preset", help="preset name or 'best' (default: the data set's own); for image "
                        "data a comma-separated list compares presets side by side (e.g. idx,dcgan)")
    parser.add_argument("--losses", nargs="+", help="losses to compare ('all' for every one); "
                        "default: the preset's")
    parser.add_argument("--pack", type=int, nargs="+", default=[None], help="packing degrees to compare")
    parser.add_argument("--seeds", type=int, default=5, help="runs per configuration")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed, first-seed + 1, ...; "
                        "to extend an earlier run's seeds")
    parser.add_argument("--steps", type=int, help="override the preset's steps")
    parser.add_argument("--json", help="write every run's metrics to this file")
    args = parser.parse_args()
    losses = sorted(OBJECTIVES) if args.losses == ["all"] else (args.losses or [None])
    raw: list[dict] = []

    def save() -> None:  # after every row, so an interrupted run keeps what it measured
        if args.json:
            atomic_write_json(args.json, raw)

    for data in args.data:
        base = RunConfig(data=data, preset=args.preset, steps=args.steps)
        if data in ("digits", "idx"):
            seeds = range(args.first_seed, args.first_seed + args.seeds)
            print(f"### {data}: seed(s) {seeds.start}-{seeds.stop - 1}", "", *IMAGE_HEADER, sep="\n", flush=True)
            for preset in args.preset.split(",") if args.preset else [None]:
                config = RunConfig(**{**vars(base), "preset": preset})
                print(image_table(data, f"{preset or data} preset", config, seeds, raw, save), flush=True)
            print(flush=True)
            continue
        configs = []
        for loss in losses:
            for pack in args.pack:
                label = (f"{args.preset or data} preset" + (f", loss {loss}" if loss else "")
                         + (f", pack {pack}" if pack else ""))
                configs.append((label, RunConfig(**{**vars(base), "loss": loss, "pack": pack})))
        mixture_table(data, configs, range(args.first_seed, args.first_seed + args.seeds), raw, save)
    save()


if __name__ == "__main__":
    main()
