"""`RunConfig`: everything a training run needs, in one dataclass.

The command line's `train` flags are made from its fields (their `help` metadata), a
preset fills every field left at None, and `asdict(config.resolved())` is the record a
checkpoint keeps, from which `--resume` and `eval` rebuild the run.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..backend import BACKEND_NAMES, DTYPES
from ..data import MIXTURES
from ..objectives import OBJECTIVES
from .presets import PRESETS, Preset

DATA_NAMES = (*MIXTURES, "digits", "idx")
MODEL_NAMES = ("gan", "vae", "vaegan")


def _option(default: Any, help: str, **cli: Any) -> Any:
    """A dataclass field with its command-line help (and argparse options) as metadata."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass
class RunConfig:
    """A training run. None means "the preset's value"."""

    model: str | None = _option(None, "model family (default: the preset's; gan presets are named after "
                                "the data, the vae and vaegan presets after the family)", choices=MODEL_NAMES)
    data: str = _option("ring8", "data set (ring8 | grid25: 2-D mixtures; digits: 8x8 digits; "
                        "idx: Fashion-MNIST IDX files)", choices=DATA_NAMES)
    data_dir: str | None = _option(None, "directory of the IDX files for --data idx "
                                   "(default $MINIGAN_DATA, else /usr/share/datasets/fashion-mnist)")
    preset: str | None = _option(None, "architecture and hyper-parameters (default: the preset named "
                                 "after --data; best: the best configuration measured for --data)",
                                 choices=("best", *sorted(PRESETS)))
    loss: str | None = _option(None, "GAN objective (default: the preset's; another loss brings its "
                               "paper optimizer and critic steps)", choices=sorted(OBJECTIVES))
    pack: int | None = _option(None, "PacGAN packing: D sees this many samples at once", type=int)
    steps: int | None = _option(None, "total training steps (a resumed run continues to it)", type=int)
    batch_size: int | None = _option(None, "examples per step", type=int)
    lr: float | None = _option(None, "learning rate of every optimizer", type=float)
    lr_d: float | None = _option(None, "learning rate of the discriminator (default: --lr when it is given, "
                                 "else the preset's)", type=float)
    seed: int = _option(0, "seed of the weights, the noise and the batch order", type=int)
    backend: str = _option("numpy", "array backend (auto: cupy when a CUDA device is present)",
                           choices=BACKEND_NAMES)
    dtype: str = _option("float32", "float32 to train, float64 to study and cross-check a run",
                         choices=tuple(DTYPES))
    blas_threads: int | None = _option(None, "BLAS threads (default: the preset's, measured fastest)",
                                       type=int)
    sync_bn: bool = _option(False, "on several processes, normalise BatchNorm with the statistics of the "
                            "global batch (all-reduced batch sums) instead of each process's own")
    out: str | None = _option(None, "output directory (default runs/<data>, runs/<data>-<family> for a VAE or VAE-GAN)")
    log_every: int = _option(10, "one history row every this many steps", type=int)
    checkpoint_every: int = _option(1000, "a checkpoint every this many steps (and at the end)", type=int)
    eval_samples: int = _option(2500, "samples drawn for the final metrics", type=int)
    progress: bool = _option(True, "show a progress bar")

    def validate(self) -> None:
        """Raises ValueError naming the first nonsensical value."""
        for item in fields(self):
            choices = item.metadata.get("choices")
            value = getattr(self, item.name)
            if choices and value is not None and value not in choices:
                raise ValueError(f"{item.name} must be one of {list(choices)}, got {value!r}")
        if self.preset == "best" and f"{self.data}-best" not in PRESETS:
            best = sorted(name[:-5] for name in PRESETS if name.endswith("-best"))
            raise ValueError(f"there is no best preset for {self.data}; data sets with one: {best}")
        for name in ("steps", "batch_size", "pack", "blas_threads", "log_every", "checkpoint_every",
                     "eval_samples"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("lr", "lr_d"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")

    def preset_name(self) -> str:
        """The preset this run uses: the one named, else the data set's (GAN) or the family's."""
        if self.preset == "best":
            return f"{self.data}-best"
        return self.preset or (self.model if self.model not in (None, "gan") else self.data)

    def resolved_preset(self) -> Preset:
        """The preset with this configuration's overrides applied."""
        preset = PRESETS[self.preset_name()]
        if self.model is not None and self.model != preset.family:
            raise ValueError(f"preset {self.preset_name()!r} builds a {preset.family}, not a {self.model}; "
                             f"choose a {self.model} preset")
        if preset.family != "gan" and (self.loss is not None or self.pack is not None):
            raise ValueError(f"--loss and --pack apply to GANs; preset {self.preset_name()!r} builds a "
                             f"{preset.family}")
        if preset.family == "vae" and self.lr_d is not None:
            raise ValueError(f"--lr-d applies to models with a discriminator; preset {self.preset_name()!r} "
                             f"builds a vae")
        if self.loss is not None and self.loss != preset.loss:
            # The preset's optimizer settings were tuned for its own loss.
            preset = replace(preset, loss=self.loss, optimizer="paper", lr=None, lr_d=None, d_steps=None,
                             label_smoothing=0.0)
        if self.lr is not None or self.lr_d is not None:  # --lr sets every network's rate, --lr-d then D's
            preset = replace(preset, lr_d=self.lr_d)
        return preset.with_overrides(steps=self.steps, batch_size=self.batch_size, lr=self.lr,
                                     pack=self.pack, blas_threads=self.blas_threads)

    def resolved(self) -> "RunConfig":
        """A copy with every None filled in from the preset, as saved in checkpoints."""
        preset = self.resolved_preset()
        gan = preset.family == "gan"
        return replace(self, model=preset.family, preset=self.preset or self.preset_name(),
                       loss=preset.loss if gan else None, steps=preset.steps,
                       batch_size=preset.batch_size, lr=preset.lr, lr_d=preset.lr_d,
                       pack=preset.pack if gan else None,
                       blas_threads=preset.blas_threads, out=str(self.output_dir()))

    def output_dir(self) -> Path:
        """Where the run writes its files: `out`, else runs/<data> (runs/<data>-<family> for
        families other than GANs)."""
        if self.out is not None:
            return Path(self.out)
        family = self.model or PRESETS[self.preset_name()].family
        return Path("runs") / (self.data if family == "gan" else f"{self.data}-{family}")

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "RunConfig":
        """The configuration a checkpoint recorded (any minigan version: fields added
        since take their defaults); ValueError naming unknown fields."""
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(record) - known)
        if unknown:
            raise ValueError(f"the checkpoint's run configuration has unknown fields {unknown}")
        return cls(**record)

    def record(self) -> dict[str, Any]:
        """The JSON-serialisable dictionary `from_record` reads."""
        return asdict(self)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds one flag per `RunConfig` field (`--batch-size`, ...; `--no-progress` for the bool)."""
    for item in fields(RunConfig):
        options = dict(item.metadata)
        flag = "--" + item.name.replace("_", "-")
        if isinstance(item.default, bool):  # --no-<name> turns a default-on switch off
            switch = f"--no-{item.name.replace('_', '-')}" if item.default else flag
            parser.add_argument(switch, dest=item.name, action="store_false" if item.default else "store_true",
                                help=f"do not {options['help']}" if item.default else options["help"])
            continue
        default = None if item.default is MISSING else item.default
        suffix = f" (default {default})" if default is not None and "default" not in options["help"] else ""
        parser.add_argument(flag, default=default, **{**options, "help": options["help"] + suffix})


def from_arguments(args: argparse.Namespace) -> RunConfig:
    """The `RunConfig` of parsed `add_arguments` flags."""
    return RunConfig(**{item.name: getattr(args, item.name) for item in fields(RunConfig)})
