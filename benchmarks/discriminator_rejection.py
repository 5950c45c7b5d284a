"""Can D pick G's better samples? Scores a GAN checkpoint's samples chosen by its own
discriminator's logits, against the samples `minigan eval` scores (docs/quality.md,
"What did not help").

A discriminator trained to optimality has logit log p_data(x) / p_g(x) (for the minimax and
non-saturating losses), so weighting G's samples by exp(logit) would correct G's
distribution towards the data's: discriminator rejection sampling (Azadi et al. 2019) and
importance resampling rest on that. The script draws `--pool` times 2,500 samples from
the fixed evaluation noise (the first 2,500 are exactly `minigan eval`'s), takes D's logits
in evaluation mode (the mean over its heads), and prints the classifier Fréchet distance,
and the worst class, of 2,500 samples chosen four ways:

- the first 2,500 (no choice: `minigan eval`'s number);
- those left after dropping the pool's lowest-scored 10% (the first 2,500 of them);
- the 2,500 with the highest logits;
- 2,500 drawn with replacement with probability proportional to exp(logit).

    python benchmarks/discriminator_rejection.py --checkpoint runs/dcgan-best/checkpoint.npz
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from minigan.bench.dcgan_quality import Scorer
from minigan.checkpoint import load_checkpoint
from minigan.gan import GAN
from minigan.model import evaluating
from minigan.run.config import RunConfig
from minigan.run.realdata import real_data
from minigan.run.threads import blas_threads

SAMPLES = 2500  # scored per choice, as `minigan eval` scores
SELECTIONS = ("first 2,500 (minigan eval)", "without the lowest-scored 10%", "the highest logits",
              "resampled by exp(logit)")


def choices(logits: np.ndarray, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Indices of n samples per selection (`SELECTIONS`), from one logit per pooled sample."""
    kept = np.flatnonzero(logits > np.quantile(logits, 0.1))
    weights = np.exp(logits - logits.max())
    chosen = [np.arange(n), kept[:n], np.argsort(-logits, kind="stable")[:n],
              rng.choice(len(logits), n, replace=True, p=weights / weights.sum())]
    return dict(zip(SELECTIONS, chosen))


def pooled_samples(gan: GAN, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(samples (pool, *shape) in model space, D's logits averaged over its heads (pool,)),
    drawn and scored SAMPLES at a time, D in evaluation mode."""
    samples, logits = [], []
    for start in range(0, len(noise), SAMPLES):
        batch = gan.sample(SAMPLES, noise[start:start + SAMPLES])
        with evaluating(gan.discriminator):
            logits.append(gan.backend.to_numpy(gan.discriminator.forward(batch)).mean(axis=1))
        samples.append(gan.backend.to_numpy(batch))
    return np.concatenate(samples), np.concatenate(logits)


def rejection_rows(path: Path, pool: int) -> list[dict[str, object]]:
    """One row per selection: its Fréchet distance, its worst class, and how many distinct
    samples it holds."""
    gan, extra = load_checkpoint(path)
    if not isinstance(gan, GAN):
        raise ValueError(f"{path} holds a {type(gan).__name__}, which has no discriminator to choose with")
    if gan.pack != 1:
        raise ValueError(f"{path} packs {gan.pack} samples per discriminator input, so D cannot score one sample")
    config = RunConfig.from_record(extra["config"])
    preset = config.resolved_preset()
    data = real_data(config, preset)
    if data.dataset is None:
        raise ValueError(f"{path} was trained on {config.data}, not on images")
    with blas_threads(preset.blas_threads):  # the classifier trains as `minigan eval` trains it
        score = Scorer(data, gan.latent_dim, pool * SAMPLES, config.seed)  # its noise: the whole pool
        samples, logits = pooled_samples(gan, score.noise)
        rows = []
        for name, indices in choices(logits, SAMPLES, np.random.default_rng(config.seed)).items():
            distance, worst_class = score.distance(samples[indices])
            rows.append({"selection": name, "frechet_distance": distance, "worst_class": worst_class,
                         "distinct": len(set(indices.tolist())), "mean_logit": float(logits[indices].mean())})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="a GAN checkpoint trained on images")
    parser.add_argument("--pool", type=int, default=4, help="samples drawn, in multiples of 2,500 (at least 2)")
    args = parser.parse_args(argv)
    if args.pool < 2:
        parser.error(f"--pool must be at least 2, got {args.pool}")
    try:
        rows = rejection_rows(args.checkpoint, args.pool)
    except (OSError, ValueError) as error:
        print(f"discriminator_rejection: error: {error}", file=sys.stderr)
        return 2
    print(f"### {args.checkpoint}: {args.pool} x {SAMPLES} samples, chosen by D's logits\n")
    print("| samples | Fréchet distance | worst class | distinct samples | mean logit |")
    print("|---|---:|---|---:|---:|")
    for row in rows:
        print(f"| {row['selection']} | {row['frechet_distance']:.2f} | {row['worst_class']} | "
              f"{row['distinct']} | {row['mean_logit']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
