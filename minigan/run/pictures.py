"""The pictures a run writes: samples.png (a scatter over the true modes, or an image
grid), losses.png, and for a VAE reconstructions.png (rows of real test images, each
followed by its reconstruction). matplotlib is optional: without it the run still succeeds and
says once how to get the pictures."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from .realdata import RealData, evaluation_noise

PLOTS_HINT = "pip install 'minigan[plots]'"


def write_pictures(model: Any, data: RealData, out: Path, history: list[dict[str, float]],
                   seed: int) -> list[str]:
    """Writes samples.png and losses.png into `out`; returns the names written ([] and one
    note on stderr when matplotlib is missing)."""
    try:
        from .. import plots
        plots.require_matplotlib()
    except ImportError:
        print(f"note: matplotlib is not installed, so samples.png and losses.png were skipped "
              f"({PLOTS_HINT})", file=sys.stderr)
        return []
    n = 2500 if data.mixture is not None else 100
    samples = data.to_data_space(model.backend.to_numpy(model.sample(n, evaluation_noise(model.latent_dim, n, seed))))
    if data.mixture is not None:
        plots.save_scatter(out / "samples.png", samples, data.mixture.modes, std=data.mixture.std,
                           title=f"{data.name}: {n} samples after {model.steps} steps")
    else:
        plots.save_image_grid(out / "samples.png", samples.clip(0, 1), data.dataset.image_shape,
                              title=f"{data.name}: samples after {model.steps} steps")
    written = ["samples.png"]
    if hasattr(model, "reconstruct") and data.dataset is not None:
        real = data.dataset.x_test[:50]  # (50, pixels) in [0, 1]
        rebuilt = data.to_data_space(model.backend.to_numpy(model.reconstruct(data.to_model_space(real))))
        pairs = np.stack([real.reshape(5, 10, -1), rebuilt.reshape(5, 10, -1)], axis=1)  # (5, 2, 10, pixels)
        plots.save_image_grid(out / "reconstructions.png", pairs.reshape(100, -1).clip(0, 1),
                              data.dataset.image_shape, title=f"{data.name}: test images (odd rows) and "
                              f"their reconstructions (even rows)")
        written.append("reconstructions.png")
    if history:
        columns = [key for key in history[0] if key != "step"]
        plots.save_loss_curves(out / "losses.png", {key: [row[key] for row in history]
                                                   for key in ("step", *columns)},
                               title=f"{data.name}: training statistics")
        written.append("losses.png")
    return written
