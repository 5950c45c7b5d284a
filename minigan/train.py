"""A training run: configuration, real-data batches, the loop, evaluation and the files it writes.

`train(TrainConfig(...))` trains a preset on a data set and writes to its output
directory: `checkpoint.npz`, `metrics.json`, `history.csv` (the losses), `samples.png`
and `losses.png`. Real batches are a pure function of (seed, batch index) and the noise
comes from the checkpointed generator, so a resumed run is bit-identical to one that
never stopped.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .backend import get_backend
from .checkpoint import load_checkpoint, save_checkpoint
from .data import MIXTURES, BatchIterator, load_dataset
from .files import atomic_write, atomic_write_json
from .gan import GAN
from .objectives import OBJECTIVES
from .presets import PRESETS, Preset, build_gan
from .progress import progress_bar

DATA_NAMES = (*MIXTURES, "digits", "idx")
HISTORY_COLUMNS = ("step", "d_loss", "g_loss", "d_real", "d_fake")


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite."""


@dataclass
class TrainConfig:
    """Everything a run needs. None means "the preset's value"."""

    data: str = "ring8"              # ring8 | grid25 | digits | idx
    preset: str | None = None        # a name in PRESETS, or "best" (PRESETS["<data>-best"]);
                                     # None: the preset named after the data
    loss: str | None = None          # a name in OBJECTIVES; another loss than the preset's
                                     # brings that loss's paper optimizer and critic steps
    pack: int | None = None          # PacGAN packing degree
    steps: int | None = None         # total generator steps (a resumed run continues to it)
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    backend: str = "numpy"           # numpy | cupy | auto
    data_dir: str | None = None      # for data "idx": the directory of the four IDX files
    out: str | None = None           # output directory; None: runs/<data>
    log_every: int = 10              # one history row every this many steps
    checkpoint_every: int = 1000     # a checkpoint every this many steps (and at the end)
    eval_samples: int = 2500         # samples drawn for the final metrics
    progress: bool = True            # show a progress bar

    def validate(self) -> None:
        """Raises ValueError naming the first nonsensical value."""
        if self.data not in DATA_NAMES:
            raise ValueError(f"data must be one of {DATA_NAMES}, got {self.data!r}")
        if self.preset is not None and self.preset not in PRESETS and self.preset != "best":
            raise ValueError(f"preset must be 'best' or one of {sorted(PRESETS)}, got {self.preset!r}")
        if self.preset == "best" and f"{self.data}-best" not in PRESETS:
            best = sorted(name[:-5] for name in PRESETS if name.endswith("-best"))
            raise ValueError(f"there is no best preset for {self.data}; data sets with one: {best}")
        if self.loss is not None and self.loss not in OBJECTIVES:
            raise ValueError(f"loss must be one of {sorted(OBJECTIVES)}, got {self.loss!r}")
        for name in ("steps", "batch_size", "pack", "log_every", "checkpoint_every", "eval_samples"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")

    def resolved_preset(self) -> Preset:
        """The preset with this configuration's overrides applied."""
        name = self.preset or self.data
        preset = PRESETS[f"{self.data}-best" if name == "best" else name]
        if self.loss is not None and self.loss != preset.loss:
            # The preset's optimizer settings were tuned for its own loss.
            preset = replace(preset, loss=self.loss, optimizer="paper", lr=None, d_steps=None,
                             label_smoothing=0.0)
        return preset.with_overrides(steps=self.steps, batch_size=self.batch_size, lr=self.lr,
                                     pack=self.pack)

    def resolved(self) -> "TrainConfig":
        """A copy with every None filled in from the preset, as saved in checkpoints."""
        preset = self.resolved_preset()
        return replace(self, preset=self.preset or self.data, loss=preset.loss, steps=preset.steps,
                       batch_size=preset.batch_size, lr=preset.lr, pack=preset.pack,
                       out=str(self.output_dir()))

    def output_dir(self) -> Path:
        """Where the run writes its files."""
        return Path(self.out if self.out is not None else Path("runs") / self.data)


class RealData:
    """Real batches for a run: fresh draws from a 2-D mixture, or shuffled image batches."""

    def __init__(self, name: str, batch_size: int, seed: int, data_dir: str | None = None):
        self.name, self.batch_size, self.seed = name, batch_size, seed
        self.mixture = MIXTURES.get(name)
        self.dataset = None if self.mixture else load_dataset(name, data_dir, seed)
        if self.dataset is not None:
            self.iterator = BatchIterator(self.dataset.x_train, batch_size, seed)
        self.features = 2 if self.mixture else self.dataset.x_train.shape[1]

    def batch(self, index: int) -> np.ndarray:
        """Real batch number `index` (batch_size, features), float32; depends only on (seed, index)."""
        if self.mixture is not None:
            return self.mixture.sample(self.batch_size, np.random.default_rng([self.seed, 1, index]),
                                       dtype=np.float32)
        return self.iterator.batch(index)


def evaluation_noise(gan: GAN, n: int, seed: int) -> np.ndarray:
    """A fixed noise batch for pictures and metrics, independent of the training stream."""
    return np.random.default_rng([seed, 2]).standard_normal((n, gan.latent_dim))


def evaluate(gan: GAN, data: RealData, n: int, seed: int = 0) -> dict[str, Any]:
    """Quality metrics of n samples: PacGAN's mode metrics, or the classifier Fréchet distance."""
    from . import metrics
    from .classifier import FeatureClassifier
    samples = gan.backend.to_numpy(gan.sample(n, evaluation_noise(gan, n, seed))).astype(np.float64)
    if data.mixture is not None:
        return metrics.mode_stats(samples, data.mixture)
    dataset = data.dataset
    classifier = FeatureClassifier(dataset.x_train.shape[1], dataset.num_classes, seed=seed)
    classifier.fit(dataset.x_train, dataset.y_train)
    return metrics.image_stats(samples, dataset, classifier)


def _read_history(path: Path, up_to_step: int) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with path.open(newline="") as file:
        rows = [{key: int(value) if key == "step" else float(value) for key, value in row.items()}
                for row in csv.DictReader(file)]
    return [row for row in rows if row["step"] <= up_to_step]


def _write_history(path: Path, history: list[dict[str, float]]) -> None:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=HISTORY_COLUMNS)
    writer.writeheader()
    writer.writerows({key: row[key] for key in HISTORY_COLUMNS} for row in history)
    atomic_write(path, lambda file: file.write(text.getvalue().encode()))


def write_pictures(gan: GAN, data: RealData, out: Path, history: list[dict[str, float]], seed: int) -> None:
    """Writes samples.png (scatter over the modes, or an image grid) and losses.png."""
    from . import plots
    if data.mixture is not None:
        noise = evaluation_noise(gan, 2500, seed)
        samples = gan.backend.to_numpy(gan.sample(len(noise), noise))
        plots.save_scatter(out / "samples.png", samples, data.mixture.modes, std=data.mixture.std,
                           title=f"{data.name}: {len(samples)} samples after {gan.steps} steps")
    else:
        noise = evaluation_noise(gan, 100, seed)
        samples = gan.backend.to_numpy(gan.sample(len(noise), noise))
        plots.save_image_grid(out / "samples.png", samples, data.dataset.image_shape,
                              title=f"{data.name}: samples after {gan.steps} steps")
    if history:
        plots.save_loss_curves(out / "losses.png", {key: [row[key] for row in history]
                                                   for key in HISTORY_COLUMNS},
                               title=f"{data.name}: losses and discriminator outputs")


def _resume(config: TrainConfig, resume: str) -> tuple[TrainConfig, GAN, list[float]]:
    """The saved run's configuration (with the new steps, out, progress), GAN and base lrs."""
    gan, extra = load_checkpoint(Path(resume) / "checkpoint.npz")
    saved = TrainConfig(**extra["config"])
    config = replace(saved, steps=config.steps or saved.steps, out=config.out or str(resume),
                     progress=config.progress)
    return config, gan, extra["base_lr"]


def train(config: TrainConfig, resume: str | None = None) -> dict[str, Any]:
    """Trains (or resumes) a run and writes its files; returns the final metrics.

    Args:
        config: the run; with `resume`, only its steps, out and progress are used.
        resume: a directory holding a previous run's checkpoint.npz to continue from.
    """
    config.validate()
    gan = None
    if resume is not None:
        config, gan, base_lr = _resume(config, resume)
    config = config.resolved()
    preset = config.resolved_preset()
    data = RealData(config.data, preset.batch_size, config.seed, config.data_dir)
    if gan is None:
        gan = build_gan(preset, data.features, get_backend(config.backend, "float32", config.seed))
        base_lr = [gan.d_opt.lr, gan.g_opt.lr]  # lr_decay scales these
    out = config.output_dir()
    out.mkdir(parents=True, exist_ok=True)
    history = _read_history(out / "history.csv", gan.steps)
    extra = {"config": asdict(config), "base_lr": base_lr}

    bar = progress_bar(enabled=config.progress, total=preset.steps, initial=gan.steps, unit="step",
                       dynamic_ncols=True, leave=True)
    while gan.steps < preset.steps:
        if preset.lr_decay == "linear":  # from the base learning rate to 0 over the run
            remaining = 1 - gan.steps / preset.steps
            gan.d_opt.lr, gan.g_opt.lr = (lr * remaining for lr in base_lr)
        first = gan.steps * gan.d_steps
        stats = gan.train_step([data.batch(first + i) for i in range(gan.d_steps)])
        if not all(math.isfinite(value) for value in stats.values()):
            raise TrainingDiverged(f"training diverged at step {gan.steps}: {stats}; "
                                   f"try a smaller --lr")
        if gan.steps % config.log_every == 0 or gan.steps == preset.steps:
            history.append({"step": gan.steps, **stats})
            if bar is not None:
                bar.set_postfix_str(f"D {stats['d_loss']:.3f}  G {stats['g_loss']:.3f}  "
                                    f"D(x) {stats['d_real']:.2f}  D(G(z)) {stats['d_fake']:.2f}")
        if bar is not None:
            bar.update(1)
        if gan.steps % config.checkpoint_every == 0:
            save_checkpoint(out / "checkpoint.npz", gan, extra)
            _write_history(out / "history.csv", history)
    if bar is not None:
        bar.close()
    save_checkpoint(out / "checkpoint.npz", gan, extra)
    _write_history(out / "history.csv", history)
    metrics = {"data": config.data, "steps": gan.steps, **evaluate(gan, data, config.eval_samples, config.seed)}
    atomic_write_json(out / "metrics.json", metrics)
    write_pictures(gan, data, out, history, config.seed)
    return metrics
