"""Draws one class side by side: a row of real test images, then a row of samples from each
checkpoint, every image one that the metric's classifier assigns to that class. This is
the picture behind `class_frechet_distance` (docs/quality.md, "DCGAN").

The classifier is `minigan eval`'s for the first checkpoint's data set and seed, trained
under that run's BLAS threads; each checkpoint draws 2,500 samples from the fixed
evaluation noise (as `minigan eval` does) and its first `--per-row` of the class are shown.

    python benchmarks/class_samples.py --class-index 8 --out docs/images/dcgan_bags.png \\
        --checkpoint "DCGAN seed 0=runs/dcgan/checkpoint.npz" --checkpoint "MLP seed 0=runs/idx/checkpoint.npz"
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from minigan import plots
from minigan.checkpoint import load_checkpoint
from minigan.run.config import RunConfig
from minigan.run.evaluate import fitted_classifier
from minigan.run.realdata import evaluation_noise, real_data, to_data_space
from minigan.run.threads import blas_threads

FASHION_CLASSES = ("T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
SAMPLES = 2500  # drawn per checkpoint, as `minigan eval` draws


def labelled(text: str) -> tuple[str, Path]:
    """argparse type: "LABEL=PATH" of a checkpoint."""
    label, separator, path = text.partition("=")
    if not separator or not label or not path:
        raise argparse.ArgumentTypeError(f"expected LABEL=PATH, got {text!r}")
    return label, Path(path)


def class_rows(checkpoints: list[tuple[str, Path]], class_index: int, per_row: int) -> tuple[list[str], np.ndarray]:
    """(row labels, images (rows * per_row, H*W) in [0, 1]): real test images of the class, then
    each checkpoint's samples of it."""
    models = [(label, *load_checkpoint(path)) for label, path in checkpoints]
    config = RunConfig.from_record(models[0][2]["config"])
    preset = config.resolved_preset()
    data = real_data(config, preset)
    if data.dataset is None:
        raise ValueError(f"{checkpoints[0][1]} was trained on {config.data}, not on images")
    if not 0 <= class_index < data.dataset.num_classes:
        raise ValueError(f"--class-index must lie in [0, {data.dataset.num_classes}), got {class_index}")
    with blas_threads(preset.blas_threads):
        classifier = fitted_classifier(data.dataset, config.seed)
    groups = [("real", data.dataset.x_test)]
    for label, model, record in models:
        symmetric = RunConfig.from_record(record["config"]).resolved_preset().data_range == "symmetric"
        samples = model.sample(SAMPLES, evaluation_noise(model.latent_dim, SAMPLES, config.seed))
        pixels = to_data_space(model.backend.to_numpy(samples), symmetric)  # its own pixel range
        if pixels.shape[1:] != data.dataset.x_test.shape[1:]:
            raise ValueError(f"{label} draws {pixels.shape[1]}-pixel images, the data set has "
                             f"{data.dataset.x_test.shape[1]}")
        groups.append((label, pixels))
    rows = []
    for label, images in groups:
        chosen = images[classifier.predict(images) == class_index][:per_row]
        if len(chosen) < per_row:
            raise ValueError(f"{label}: only {len(chosen)} images of class {class_index}, fewer than --per-row {per_row}")
        rows.append(chosen)
    return [label for label, _ in groups], np.concatenate(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=labelled, action="append", required=True,
                        help='"LABEL=PATH", once per row (the first sets the data set and seed)')
    parser.add_argument("--class-index", type=int, required=True, help="the class (8: Fashion-MNIST's bags)")
    parser.add_argument("--per-row", type=int, default=10, help="images per row")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    if args.per_row < 1:
        parser.error(f"--per-row must be at least 1, got {args.per_row}")
    try:
        labels, images = class_rows(args.checkpoint, args.class_index, args.per_row)
    except (OSError, ValueError) as error:
        print(f"class_samples: error: {error}", file=sys.stderr)
        return 2
    side = int(round(images.shape[1] ** 0.5))
    name = FASHION_CLASSES[args.class_index] if side == 28 else f"class {args.class_index}"
    plots.save_image_grid(args.out, np.clip(images, 0, 1), (side, side), columns=args.per_row,
                          title=f"{name}, rows: " + " / ".join(labels))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
