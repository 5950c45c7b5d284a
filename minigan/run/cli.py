"""The command line: `minigan train | launch | sample | eval | bench` (also `python -m minigan`).

Every expected failure (bad arguments, missing or corrupt files, an unavailable
backend, a GPU out of memory, a diverged run) prints one line, `minigan: error: ...`, and
exits with 2; Ctrl-C exits with 130 (during training, after saving a checkpoint of the
current step).
The benchmark code is imported only when `minigan bench` runs.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..backend import BACKEND_NAMES, BackendUnavailableError, get_backend, is_out_of_memory
from ..checkpoint import load_checkpoint, read_config
from ..distributed import DistributedError, launched_rank
from ..files import atomic_write
from .arguments import int_at_least, positive
from .config import RunConfig, add_arguments, from_arguments
from .loop import TrainingDiverged, TrainingInterrupted, train
from .threads import blas_threads

EXPECTED_ERRORS = (ValueError, FileNotFoundError, ImportError, BackendUnavailableError,
                   TrainingDiverged, DistributedError, OSError)
INTERRUPTED = 130  # the shell's status for a process ended by SIGINT
OUT_OF_MEMORY = {  # command -> (what it was doing, what to try instead) when the GPU runs out of memory
    "train": ("training", "try a smaller --batch-size, or --backend numpy"),
    "sample": ("sampling", "try a smaller --n, or --backend numpy"),
    "eval": ("evaluating", "try a smaller --n, or --backend numpy"),
    "bench": ("benchmarking", "try smaller --batch-sizes and --hidden, or --backends numpy"),
}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and no usage dump."""

    def error(self, message: str) -> None:
        raise SystemExit(_fail(f"{self.prog}: {message}"))


def _fail(message: str, status: int = 2) -> int:
    """Prints the one-line error (on rank 0 alone when MPI started several processes:
    they all raise it) and returns `status`."""
    if launched_rank() == 0:
        print(f"minigan: error: {message}", file=sys.stderr)
    return status


def _out_of_memory(command: str, error: BaseException) -> str:
    """The one-line message for CuPy's out-of-memory `error` during `command`."""
    doing, hint = OUT_OF_MEMORY.get(command, ("running", OUT_OF_MEMORY["train"][1]))
    detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return f"out of GPU memory while {doing} ({detail}): {hint}"


def _add_train(subparsers: Any) -> None:
    parser = subparsers.add_parser("train", help="train a model (default: a GAN on ring8, under a minute)")
    add_arguments(parser)
    parser.add_argument("--resume", metavar="DIR", help="continue the run saved in DIR "
                        "(only --steps, --out and --no-progress apply)")


def _add_checkpoint_reader(subparsers: Any, name: str, help: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--backend", choices=BACKEND_NAMES, help="default: as recorded")
    return parser


def _add_bench(subparsers: Any) -> None:
    parser = subparsers.add_parser("bench", help="time the training step per backend (and PyTorch)")
    parser.add_argument("--batch-sizes", type=positive, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--hidden", type=positive, nargs="+", default=[256, 1024])
    parser.add_argument("--backends", nargs="+", default=["numpy", "cupy"], choices=["numpy", "cupy"])
    parser.add_argument("--torch", action="store_true", help="add the PyTorch reference (CPU, and CUDA "
                        "when present); needs torch installed")
    parser.add_argument("--repeats", type=positive, default=20, help="timed steps per cell and round")
    parser.add_argument("--rounds", type=positive, default=3, help="passes over the grid, "
                        "implementations alternating; the median over rounds is reported")
    parser.add_argument("--warmup", type=int_at_least(0), default=5, help="untimed steps first")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw steps/s against batch size")
    parser.add_argument("--no-progress", action="store_true")


def _add_launch(subparsers: Any) -> None:
    parser = subparsers.add_parser("launch", help="run `train` data-parallel on several processes through "
                                   "mpirun (Ctrl-C stops them all and saves a checkpoint)")
    parser.add_argument("-n", "--processes", type=positive, required=True, help="number of processes")
    parser.add_argument("--mpirun-args", default="", metavar="ARGS", help="further mpirun options, "
                        "one quoted string, e.g. \"--hostfile hosts\"")
    parser.add_argument("train_command", nargs=argparse.REMAINDER, metavar="train ...",
                        help="the train command and its flags")


def build_parser() -> argparse.ArgumentParser:
    """The `minigan` argument parser with its subcommands."""
    parser = OneLineParser(prog="minigan", description="A from-scratch generative-model library: "
                           "train, sample, evaluate and benchmark hand-written models.")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    _add_train(subparsers)
    _add_launch(subparsers)
    sample = _add_checkpoint_reader(subparsers, "sample", "draw samples from a checkpoint")
    sample.add_argument("--n", type=positive, default=64)
    sample.add_argument("--out", required=True, help="FILE.png (a picture) or FILE.npy (the array)")
    sample.add_argument("--seed", type=int, default=0, help="seed of the noise")
    evaluate = _add_checkpoint_reader(subparsers, "eval", "print a checkpoint's quality metrics")
    evaluate.add_argument("--n", type=positive, default=2500, help="samples to evaluate")
    evaluate.add_argument("--data-dir", help="directory of the IDX files (default: as recorded)")
    _add_bench(subparsers)
    return parser


def _load(args: argparse.Namespace) -> tuple[Any, dict]:
    backend = None
    if args.backend is not None:
        recorded = read_config(args.checkpoint)["backend"]
        backend = get_backend(args.backend, recorded["dtype"], recorded["seed"])
    return load_checkpoint(args.checkpoint, backend)


def run_train(args: argparse.Namespace) -> int:
    config = from_arguments(args)
    metrics = train(config, resume=args.resume)
    if launched_rank() > 0:  # rank 0 reports for all processes
        return 0
    out = Path(config.out or args.resume or config.output_dir())
    files = metrics.pop("files")
    print(json.dumps(metrics))
    print(f"wrote {out}/{files[0]}, {', '.join(files[1:])}")
    return 0


def run_sample(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix not in (".png", ".npy"):
        raise ValueError(f"--out must end in .png or .npy, got {out.name}")
    model, extra = _load(args)
    noise = np.random.default_rng(args.seed).standard_normal((args.n, model.latent_dim))
    samples = model.backend.to_numpy(model.sample(args.n, noise))
    if out.suffix == ".npy":
        atomic_write(out, lambda file: np.save(file, samples))
    else:
        _save_sample_picture(out, samples, extra)
    print(f"wrote {args.n} samples to {out}")
    return 0


def _save_sample_picture(out: Path, samples: np.ndarray, extra: dict) -> None:
    from .. import plots
    from ..data import MIXTURES
    from .realdata import to_data_space
    data = extra.get("config", {}).get("data")
    preset = RunConfig.from_record(extra["config"]).resolved_preset() if "config" in extra else None
    symmetric = preset is not None and preset.data_range == "symmetric"
    samples = to_data_space(samples, symmetric)  # (n, features)
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
    from .evaluate import evaluate
    from .realdata import real_data
    model, extra = _load(args)
    if "config" not in extra:
        raise ValueError(f"{args.checkpoint} records no training data set, so it cannot be evaluated")
    config = RunConfig.from_record(extra["config"])
    if args.data_dir:
        config = dataclasses.replace(config, data_dir=args.data_dir)
    preset = config.resolved_preset()
    data = real_data(config, preset)
    # the classifier trains with the run's BLAS threads: another thread count rounds its
    # products differently, and the distance moves (docs/quality.md), so on the same machine
    # eval repeats the run's metrics.json
    with blas_threads(preset.blas_threads):
        print(json.dumps(evaluate(model, data, args.n, config.seed), indent=2))
    return 0


def run_launch(args: argparse.Namespace) -> int:
    from .launch import launch
    return launch(args.processes, args.train_command, args.mpirun_args)


def run_bench(args: argparse.Namespace) -> int:
    from ..bench.report import run_bench as bench
    return bench(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = build_parser()
    args: argparse.Namespace | None = None
    try:
        args = parser.parse_args(argv)
        handler = {"train": run_train, "launch": run_launch, "sample": run_sample, "eval": run_eval,
                   "bench": run_bench}[args.command]
        return handler(args)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    except TrainingInterrupted as interrupted:
        return _fail(str(interrupted), INTERRUPTED)
    except KeyboardInterrupt:
        return _fail("interrupted", INTERRUPTED)
    except EXPECTED_ERRORS as error:
        return _fail(str(error))
    except Exception as error:  # CuPy's out-of-memory errors; anything else is a bug: re-raised
        if not is_out_of_memory(error):
            raise
        return _fail(_out_of_memory(args.command if args else "", error))
