"""The command line: `minigan train | sample | eval | bench` (also `python -m minigan`).

Every expected failure (bad arguments, missing or corrupt files, an unavailable
backend, a diverged run) prints one line, `minigan: error: ...`, and exits with 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from .backend import BackendUnavailableError, get_backend
from .bench_report import add_bench_parser, run_bench
from .checkpoint import load_checkpoint
from .files import atomic_write
from .objectives import OBJECTIVES
from .presets import PRESETS
from .train import DATA_NAMES, RealData, TrainConfig, TrainingDiverged, evaluate, train

EXPECTED_ERRORS = (ValueError, FileNotFoundError, ImportError, BackendUnavailableError,
                   TrainingDiverged, OSError)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and no usage dump."""

    def error(self, message: str) -> None:
        raise SystemExit(_fail(f"{self.prog}: {message}"))


def _fail(message: str) -> int:
    print(f"minigan: error: {message}", file=sys.stderr)
    return 2


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a GAN (default: ring8, under a minute)")
    parser.add_argument("--data", choices=DATA_NAMES, default="ring8", help="data set (default ring8)")
    parser.add_argument("--data-dir", help="directory of the IDX files for --data idx "
                        "(default $MINIGAN_DATA, else /usr/share/datasets/fashion-mnist)")
    parser.add_argument("--preset", choices=["best", *sorted(PRESETS)], help="architecture and "
                        "hyper-parameters (default: the preset named after --data; best: the best "
                        "configuration measured for --data)")
    parser.add_argument("--loss", choices=sorted(OBJECTIVES), help="GAN objective (default: the "
                        "preset's; another loss brings its paper optimizer and critic steps)")
    parser.add_argument("--pack", type=_positive_int, help="PacGAN packing: D sees this many samples at once")
    parser.add_argument("--steps", type=_positive_int, help="total generator steps")
    parser.add_argument("--batch-size", type=_positive_int)
    parser.add_argument("--lr", type=float, help="Adam learning rate of both players")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="numpy", choices=("numpy", "cupy", "auto"))
    parser.add_argument("--out", help="output directory (default runs/<data>)")
    parser.add_argument("--resume", metavar="DIR", help="continue the run saved in DIR")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _add_sample(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sample", help="draw samples from a checkpoint")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--n", type=_positive_int, default=64)
    parser.add_argument("--out", required=True, help="FILE.png (a picture) or FILE.npy (the array)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise")
    parser.add_argument("--backend", choices=("numpy", "cupy", "auto"), help="default: as recorded")


def _add_eval(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="print a checkpoint's quality metrics")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--n", type=_positive_int, default=2500, help="samples to evaluate")
    parser.add_argument("--data-dir", help="directory of the IDX files (default: as recorded)")
    parser.add_argument("--backend", choices=("numpy", "cupy", "auto"), help="default: as recorded")


def build_parser() -> argparse.ArgumentParser:
    """The `minigan` argument parser with its subcommands."""
    parser = OneLineParser(prog="minigan", description="A from-scratch GAN library: train, sample, "
                           "evaluate and benchmark hand-written GANs.")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    _add_train(subparsers)
    _add_sample(subparsers)
    _add_eval(subparsers)
    add_bench_parser(subparsers)
    return parser


def _load(args: argparse.Namespace):
    backend = None if args.backend is None else get_backend(args.backend, "float32")
    return load_checkpoint(args.checkpoint, backend)


def run_train(args: argparse.Namespace) -> int:
    config = TrainConfig(data=args.data, preset=args.preset, loss=args.loss, pack=args.pack, steps=args.steps,
                         batch_size=args.batch_size, lr=args.lr, seed=args.seed, backend=args.backend,
                         data_dir=args.data_dir, out=args.out, progress=not args.no_progress)
    metrics = train(config, resume=args.resume)
    out = Path(args.out or args.resume or config.output_dir())
    print(json.dumps(metrics))
    print(f"wrote {out}/checkpoint.npz, metrics.json, history.csv, samples.png, losses.png")
    return 0


def run_sample(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix not in (".png", ".npy"):
        raise ValueError(f"--out must end in .png or .npy, got {out.name}")
    gan, extra = _load(args)
    noise = np.random.default_rng(args.seed).standard_normal((args.n, gan.latent_dim))
    samples = gan.backend.to_numpy(gan.sample(args.n, noise))
    if out.suffix == ".npy":
        atomic_write(out, lambda file: np.save(file, samples))
    else:
        _save_sample_picture(out, samples, extra)
    print(f"wrote {args.n} samples to {out}")
    return 0


def _save_sample_picture(out: Path, samples: np.ndarray, extra: dict) -> None:
    from . import plots
    from .data import MIXTURES
    data = extra.get("config", {}).get("data")
    if samples.shape[1] == 2:
        mixture = MIXTURES.get(data)
        plots.save_scatter(out, samples, None if mixture is None else mixture.modes,
                           std=None if mixture is None else mixture.std)
    else:
        side = int(round(samples.shape[1] ** 0.5))
        if side * side != samples.shape[1]:
            raise ValueError(f"cannot draw {samples.shape[1]}-feature samples as square images; use .npy")
        plots.save_image_grid(out, np.clip(samples, 0, 1), (side, side))


def run_eval(args: argparse.Namespace) -> int:
    gan, extra = _load(args)
    saved = extra.get("config")
    if saved is None:
        raise ValueError(f"{args.checkpoint} records no training data set, so it cannot be evaluated")
    config = TrainConfig(**saved)
    data = RealData(config.data, config.batch_size, config.seed, args.data_dir or config.data_dir)
    print(json.dumps(evaluate(gan, data, args.n, config.seed), indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        handler = {"train": run_train, "sample": run_sample, "eval": run_eval, "bench": run_bench}[args.command]
        return handler(args)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    except KeyboardInterrupt:
        return _fail("interrupted")
    except EXPECTED_ERRORS as error:
        return _fail(str(error))
