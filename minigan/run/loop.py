"""The training loop: one loop for any model family (`minigan.trainable.Trainable`).

`train(RunConfig(...))` builds (or resumes) a model, trains it and writes to the output
directory: `checkpoint.npz`, `history.csv` (the step statistics), `metrics.json`,
`samples.png` and `losses.png`. Real batches are a pure function of (seed, batch index)
and the noise comes from the checkpointed generator, so a resumed run is bit-identical
to one that never stopped. The loop owns the progress bar, the history, periodic and
final checkpoints, the NaN guard (no NumPy warning reaches the terminal; divergence is
one error naming the step and the statistic, and the last good checkpoint is kept) and
Ctrl-C (the current step finishes, a checkpoint is written, `TrainingInterrupted`).

Started by an MPI launcher on K processes, the same `train` runs data-parallel
(`minigan.distributed`): each rank computes its rows of every global batch, gradients
are averaged before every optimizer step, and rank 0 alone writes files and shows the
progress bar. A stop request on any rank (Ctrl-C, SIGTERM, SIGUSR1) stops all of them
after the same step; an error that only some ranks see ends the whole job.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..backend import cuda_available, get_backend
from ..checkpoint import load_checkpoint, save_checkpoint
from ..distributed import DataParallel, abort_on_error, agree, blas_threads_per_rank, world
from ..files import atomic_write, atomic_write_json
from .config import RunConfig
from .evaluate import evaluate
from .pictures import write_pictures
from .presets import build_model
from .progress import progress_bar
from .realdata import RealData, real_data
from .threads import blas_threads


class TrainingDiverged(RuntimeError):
    """A statistic or a parameter became NaN or infinite."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; a checkpoint of the last completed step was written."""

    def __init__(self, step: int, out: Path):
        super().__init__(f"interrupted at step {step}; checkpoint saved in {out}/checkpoint.npz, "
                         f"continue with --resume {out}")
        self.step, self.out = step, out


@contextlib.contextmanager
def deferred_interrupt(signals: tuple[int, ...] = (signal.SIGINT,)) -> Iterator[list[bool]]:
    """Inside the block a first Ctrl-C (or another of `signals`) only sets flag[0] (the
    caller finishes its step and stops cleanly); a second one acts at once, as it would
    outside. Outside the main thread: no effect."""
    flag = [False]
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous: dict[int, Any] = {}

    def restore() -> None:
        for number, handler in previous.items():
            signal.signal(number, handler)

    def request_stop(signum: int, frame: Any) -> None:
        flag[0] = True
        restore()

    for number in signals:
        previous[number] = signal.signal(number, request_stop)
    try:
        yield flag
    finally:
        restore()


def read_history(path: Path, up_to_step: int) -> list[dict[str, float]]:
    """The rows of history.csv up to `up_to_step` ([] when there is no file)."""
    if not path.is_file():
        return []
    with path.open(newline="") as file:
        rows = [{key: int(value) if key == "step" else float(value) for key, value in row.items()}
                for row in csv.DictReader(file)]
    return [row for row in rows if row["step"] <= up_to_step]


def write_history(path: Path, columns: tuple[str, ...], history: list[dict[str, float]]) -> None:
    """Writes history.csv atomically."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows({key: row[key] for key in columns} for row in history)
    atomic_write(path, lambda file: file.write(text.getvalue().encode()))


def _resume(config: RunConfig, resume: str) -> tuple[RunConfig, Any, dict[str, float]]:
    """The saved run's configuration (with the new steps, out, progress), model and base lrs."""
    model, extra = load_checkpoint(Path(resume) / "checkpoint.npz")
    if "config" not in extra:
        raise ValueError(f"{resume}/checkpoint.npz records no training run, so it cannot be resumed")
    saved = RunConfig.from_record(extra["config"])
    config = RunConfig.from_record({**extra["config"], "steps": config.steps or saved.steps,
                                    "out": config.out or str(resume), "progress": config.progress})
    base_lr = extra["base_lr"]
    if isinstance(base_lr, list):  # minigan 0.1 saved [D's, G's]
        base_lr = {"d_opt": base_lr[0], "g_opt": base_lr[1]}
    return config, model, base_lr


def _finite(model: Any) -> bool:
    return all(bool(model.backend.xp.isfinite(net.params).all()) for net in model.models.values())


def train(config: RunConfig, resume: str | None = None) -> dict[str, Any]:
    """Trains (or resumes) a run and writes its files; returns the final metrics.

    Under an MPI launcher every process calls this with the same arguments; `batch_size`
    is then the global batch, split evenly over the processes.

    Args:
        config: the run; with `resume`, only its steps, out and progress are used.
        resume: a directory holding a previous run's checkpoint.npz to continue from
            (on several machines, a directory every process can read).

    Raises:
        TrainingDiverged: a NaN or infinity (the last good checkpoint is kept).
        TrainingInterrupted: Ctrl-C (a checkpoint at the current step is written).
        DistributedError: MPI needed but missing, or processes that disagree.
    """
    config.validate()
    comm = world()
    model = None
    if resume is not None:
        config, model, base_lr = agree(comm, lambda: _resume(config, resume))
    config = config.resolved()
    preset = config.resolved_preset()
    threads = preset.blas_threads if comm is None else blas_threads_per_rank(comm, preset.blas_threads)
    rank0 = comm is None or comm.rank == 0
    with blas_threads(threads):
        data = agree(comm, lambda: real_data(config, preset))
        parallel = None
        if comm is not None:
            _check_split(preset, comm.size)
        if model is None:
            if comm is not None and config.backend != "numpy" and cuda_available():
                comm.select_device()
            backend = get_backend(config.backend, config.dtype, config.seed)
            if config.backend == "auto" and backend.name == "numpy" and rank0:
                print("note: --backend auto found no CuPy with a CUDA device, so this run uses numpy",
                      file=sys.stderr)
            model = build_model(preset.family, preset, data.shape, backend)
            base_lr = {name: optimizer.lr for name, optimizer in model.optimizers.items()}
        if comm is not None:
            parallel = DataParallel(model, comm, config.record(), config.sync_bn)
        out = config.output_dir()
        if rank0:
            out.mkdir(parents=True, exist_ok=True)
        history = fit(model, data, config, preset, base_lr, out, parallel)
        metrics = None
        if rank0:
            with abort_on_error(comm):
                metrics = {"data": config.data, "steps": model.steps,
                           **evaluate(model, data, config.eval_samples, config.seed)}
                atomic_write_json(out / "metrics.json", metrics)
                metrics["files"] = ["checkpoint.npz", "history.csv", "metrics.json",
                                    *write_pictures(model, data, out, history, config.seed)]
        if comm is not None:
            metrics = json.loads(comm.broadcast_text(json.dumps(metrics)))
    return metrics


def _check_split(preset: Any, ranks: int) -> None:
    """ValueError unless the global batch splits evenly over `ranks` (in whole PacGAN packs)."""
    share, left = divmod(preset.batch_size, ranks)
    if left:
        raise ValueError(f"--batch-size {preset.batch_size} is the global batch and must be divisible by "
                         f"the {ranks} processes")
    if preset.family == "gan" and share % preset.pack:
        raise ValueError(f"each of the {ranks} processes gets {share} examples, not a multiple of "
                         f"--pack {preset.pack}")


def fit(model: Any, data: RealData, config: RunConfig, preset: Any, base_lr: dict[str, float],
        out: Path, parallel: DataParallel | None = None) -> list[dict[str, float]]:
    """The loop itself: steps until `preset.steps`, with history, checkpoints, the NaN guard
    and Ctrl-C; returns the history. With `parallel`, each step is this rank's share of
    the global step, and only rank 0 writes."""
    columns = ("step", *model.stat_names)
    extra = {"config": config.record(), "base_lr": base_lr}
    last_saved = model.steps
    comm = None if parallel is None else parallel.comm
    rank0 = comm is None or comm.rank == 0
    history = read_history(out / "history.csv", model.steps) if rank0 else []
    if comm is not None:  # every rank continues rank 0's history (only rank 0 reads the file)
        history = json.loads(comm.broadcast_text(json.dumps(history)))

    def save() -> None:
        """Writes the checkpoint and history, unless a parameter is no longer finite."""
        nonlocal last_saved
        if not _finite(model):
            raise TrainingDiverged(f"training diverged by step {model.steps}: a parameter is not "
                                   f"finite; the last good checkpoint (step {last_saved}) is kept in {out}")
        if rank0:
            save_checkpoint(out / "checkpoint.npz", model, extra)
            write_history(out / "history.csv", columns, history)
        last_saved = model.steps

    signals = (signal.SIGINT,) if comm is None else (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
    bar = progress_bar(enabled=config.progress and rank0, total=preset.steps, initial=model.steps,
                       unit="step", dynamic_ncols=True, leave=True)
    try:
        with deferred_interrupt(signals) as stop, np.errstate(all="ignore"), \
                abort_on_error(comm, consistent=(TrainingDiverged, TrainingInterrupted)):
            while model.steps < preset.steps:
                if preset.lr_decay == "linear":  # from the base learning rate to 0 over the run
                    remaining = 1 - model.steps / preset.steps
                    for name, optimizer in model.optimizers.items():
                        optimizer.lr = base_lr[name] * remaining
                first = model.steps * model.batches_per_step
                batches = [data.batch(first + i) for i in range(model.batches_per_step)]
                batch = batches if len(batches) > 1 else batches[0]
                if parallel is None:
                    stats, stopping = model.train_step(batch), stop[0]
                else:
                    stats, stopping = parallel.train_step(batch, stop[0])
                bad = [name for name, value in stats.items() if not math.isfinite(value)]
                if bad:
                    raise TrainingDiverged(f"training diverged at step {model.steps}: {bad[0]} is "
                                           f"{stats[bad[0]]}; the last good checkpoint (step {last_saved}) "
                                           f"is kept in {out}; try a smaller --lr")
                if model.steps % config.log_every == 0 or model.steps == preset.steps:
                    history.append({"step": model.steps, **stats})
                    if bar is not None:
                        bar.set_postfix_str("  ".join(f"{key} {stats[key]:.3f}" for key in model.stat_names))
                if bar is not None:
                    bar.update(1)
                if model.steps % config.checkpoint_every == 0:
                    save()
                if stopping:
                    if last_saved != model.steps:
                        save()
                    raise TrainingInterrupted(model.steps, out)
            save()
    finally:
        if bar is not None:
            bar.close()
    return history
