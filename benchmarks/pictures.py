"""Draws the README's pictures: samples of the plain preset beside the best configuration on
the 2-D mixtures, and sample grids of the image presets (seed 0).

    python benchmarks/pictures.py                    # everything, into docs/images/
    python benchmarks/pictures.py --data ring8       # one data set
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from minigan import plots
from minigan.checkpoint import load_checkpoint
from minigan.data import MIXTURES
from minigan.run.config import RunConfig
from minigan.run.loop import train
from minigan.run.realdata import evaluation_noise


def trained_samples(data: str, preset: str | None, n: int) -> tuple[np.ndarray, dict]:
    """Trains a preset (seed 0) and returns n samples from the fixed evaluation noise, and its metrics."""
    with tempfile.TemporaryDirectory() as out:
        metrics = train(RunConfig(data=data, preset=preset, out=out, progress=False))
        gan, _ = load_checkpoint(Path(out) / "checkpoint.npz")
        samples = gan.backend.to_numpy(gan.sample(n, evaluation_noise(gan.latent_dim, n, seed=0)))
    return samples, metrics


def mixture_panels(data: str, out: Path) -> Path:
    """The plain preset and the best configuration side by side."""
    mixture = MIXTURES[data]
    panels = []
    for preset, label in ((None, "plain GAN"), ("best", "best")):
        samples, m = trained_samples(data, preset, 2500)
        panels.append((f"{label}: {m['modes_covered']}/{m['num_modes']} modes, "
                       f"{100 * m['high_quality']:.1f}% high quality", samples))
    return plots.save_scatter_grid(out / f"{data}.png", panels, mixture.modes, std=mixture.std)


def image_grid(data: str, out: Path, image_shape: tuple[int, int]) -> Path:
    samples, m = trained_samples(data, None, 100)
    return plots.save_image_grid(out / f"{data}.png", np.clip(samples, 0, 1), image_shape,
                                 title=f"{data}: Fréchet distance {m['frechet_distance']:.2f} "
                                       f"(real-data floor {m['frechet_floor']:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["ring8", "grid25", "digits", "idx"])
    parser.add_argument("--out", default="docs/images")
    args = parser.parse_args()
    out = Path(args.out)
    for data in args.data:
        if data in MIXTURES:
            print(mixture_panels(data, out), flush=True)
        else:
            print(image_grid(data, out, (8, 8) if data == "digits" else (28, 28)), flush=True)


if __name__ == "__main__":
    main()
