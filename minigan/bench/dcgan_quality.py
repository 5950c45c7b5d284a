"""The quality measure of the DCGAN recipe benchmarks (benchmarks/dcgan_recipes.py and its
PyTorch twin benchmarks/dcgan_torch_quality.py): the classifier Fréchet distance of a
generator's samples from the fixed evaluation noise, as `minigan eval` computes it, the
table both scripts print, one row per evaluation, and the options of a run they share."""
from __future__ import annotations

import argparse
from typing import Any, Callable

import numpy as np

from .. import metrics
from ..model import Sequential
from ..run.arguments import int_at_least, positive
from ..run.evaluate import fitted_classifier
from ..run.presets import PRESETS
from ..run.realdata import RealData, evaluation_noise

TABLE_HEAD = "| step | training s | Fréchet distance (eval mode) | its worst class | train mode |"
TABLE_RULE = "|---:|---:|---:|---|---:|"

# draw(noise (samples, latent), training_mode) -> images (samples, H, W, C) in model space, NumPy
Draw = Callable[[np.ndarray, bool], np.ndarray]


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a recipe run both scripts take: the data, Adam's learning rate, the
    run's length and evaluations, the seed, the JSON file of the rows, and D's MLP head."""
    parser.add_argument("--data", choices=["idx", "digits"], default="idx")
    parser.add_argument("--lr", type=float, default=PRESETS["dcgan-paper"].lr, help="Adam's learning rate of D and G")
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--eval-every", type=int, default=2000)
    parser.add_argument("--samples", type=int_at_least(2), default=2500, help="samples per evaluation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the rows to this file")
    parser.add_argument("--discriminator-mlp-head", type=positive, nargs="+", metavar="WIDTH", default=[],
                        help="an MLP head of these hidden widths beside D's convolutions (D then has two logits)")


def check_run_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """One line and exit 2 (`parser.error`) for a run that cannot be: fewer than 1 step, an
    evaluation interval outside [1, steps], a learning rate <= 0."""
    if args.steps < 1 or not 1 <= args.eval_every <= args.steps:
        parser.error("--steps must be >= 1 and --eval-every in [1, --steps]")
    if not args.lr > 0:
        parser.error(f"--lr must be > 0, got {args.lr}")


class Scorer:
    """The classifier Fréchet distance of a generator's samples, as `minigan eval` computes it
    (the classifier and the evaluation noise of `seed`), with the classifier trained once."""

    def __init__(self, data: RealData, latent_dim: int, samples: int, seed: int):
        self.data, self.noise = data, evaluation_noise(latent_dim, samples, seed)  # (samples, latent)
        self.classifier = fitted_classifier(data.dataset, seed)

    def __call__(self, images: np.ndarray) -> tuple[float, str]:
        """The distance of `images` (samples, H, W, C), drawn from `noise` in model space,
        rounded as the tables print it, and its worst class (`distance`)."""
        distance, worst_class = self.distance(images)
        return round(distance, 2), worst_class

    def distance(self, images: np.ndarray) -> tuple[float, str]:
        """The unrounded distance of `images` (samples, H, W, C) in model space, and its worst
        class as "index: distance" (class by class, as `minigan eval` prints them)."""
        samples = self.data.to_data_space(images)  # (samples, pixels)
        stats = metrics.image_stats(samples, self.data.dataset, self.classifier)
        per_class = [(-1.0 if distance is None else distance, label)
                     for label, distance in enumerate(stats["class_frechet_distance"])]
        worst_distance, worst_label = max(per_class)
        return stats["frechet_distance"], f"{worst_label}: {worst_distance:.1f}"

    def row(self, step: int, trained_s: float, draw: Draw) -> dict[str, Any]:
        """One table row: the distances of `draw`'s samples in evaluation mode (running
        BatchNorm statistics) with their worst class, then in training mode (the samples'
        own batch statistics)."""
        (eval_mode, worst_class), (train_mode, _) = self(draw(self.noise, False)), self(draw(self.noise, True))
        return {"step": step, "train_s": round(trained_s, 3), "eval_mode": eval_mode,
                "worst_class": worst_class, "train_mode": train_mode}


def generator_samples(generator: Sequential, noise: np.ndarray, training_mode: bool) -> np.ndarray:
    """A minigan generator's images (n, H, W, C) of `noise` (n, latent) in training or
    evaluation mode, as NumPy; the generator is left in training mode."""
    generator.train(training_mode)
    try:
        images = generator.forward(generator.backend.asarray(noise))  # (n, H, W, C)
    finally:
        generator.train(True)
    return generator.backend.to_numpy(images)


def table_row(row: dict[str, Any]) -> str:
    """The row's cells under TABLE_HEAD."""
    return (f"| {row['step']:,} | {row['train_s']} | {row['eval_mode']:.2f} | {row['worst_class']} | "
            f"{row['train_mode']:.2f} |")


def eval_mode_summary(rows: list[dict[str, Any]]) -> str:
    """The evaluation-mode distances joined as docs/quality.md quotes them."""
    return "evaluation mode: " + " / ".join(f"{row['eval_mode']:.2f}" for row in rows)
