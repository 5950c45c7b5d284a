"""Step-throughput benchmark: the full GAN training step per backend, against its roofline.

For each (batch size, hidden width) cell on the `seed` preset's shape
(G 100 -> H ReLU -> 784 sigmoid, D 784 -> H ReLU -> 1, Adam), it measures the median
milliseconds of `GAN.train_step` (float32) and the *roofline*: the time the step's matrix
products alone take at the same shapes on the same backend, in the same run. The roofline
share (products / step) says how much of the step is spent outside BLAS. Timing is fair
(`minigan.bench.timing`): each side's timed block follows a pause and untimed steps, and the
sides take turns going first. The PyTorch reference (`minigan.bench.torch_reference`) runs
only when asked for, in a child process, with as many threads as NumPy's BLAS has. After the
grid, each minigan cell's step is profiled per phase (`minigan.bench.phases`). The table,
the plot and `minigan bench` itself are in `minigan.bench.report`.
"""
from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import sys
import tracemalloc
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

from ..backend import Backend, BackendUnavailableError, get_backend
from ..run.presets import PRESETS, build_gan
from ..run.progress import progress_bar
from .machine import numpy_blas_threads, torch_line
from .phases import phase_profile
from .timing import Run, Summary, alternate, median_ms, timed_block

LATENT, FEATURES = 100, 784


class StepRate:
    """steps/s and samples/s of a timed result with `batch` rows and `ms_per_step` (median ms)."""

    batch: int
    ms_per_step: float

    @property
    def steps_per_s(self) -> float:
        return 1000.0 / self.ms_per_step

    @property
    def samples_per_s(self) -> float:
        return self.batch * self.steps_per_s


@dataclass
class BenchResult(StepRate):
    """One row of the table: the medians over rounds, with the spread of the step's time."""

    implementation: str     # "minigan" or "torch"
    device: str             # "cpu" or "cuda"
    batch: int
    hidden: int
    ms_per_step: float      # median over rounds of each round's median step
    roofline_ms: float      # the step's matrix products alone, same shapes and device
    peak_mb: float | None   # memory held by the step: state plus per-step temporaries
    note: str = ""
    ms_low: float | None = None     # fastest and slowest round
    ms_high: float | None = None
    ms_first: float | None = None   # median of the rounds in which this side went first
    ms_second: float | None = None  # ... and in which it did not
    phases: dict[str, float] | None = None  # minigan: median ms per phase (`minigan.bench.phases`)

    @property
    def roofline_share(self) -> float:
        return self.roofline_ms / self.ms_per_step

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "steps_per_s": self.steps_per_s, "samples_per_s": self.samples_per_s,
                "roofline_share": self.roofline_share}

    @classmethod
    def from_runs(cls, implementation: str, device: str, batch: int, hidden: int, runs: list[Run],
                  peak_mb: float | None, note: str) -> "BenchResult":
        """The row of one side of one cell; each run's result is (step ms, roofline ms)."""
        step = Summary.of_runs(runs, lambda result: result[0])
        roofline = Summary.of_runs(runs, lambda result: result[1])
        return cls(implementation, device, batch, hidden, step.median, roofline.median, peak_mb, note,
                   step.low, step.high, step.when_first, step.when_second)


def step_products(batch: int, hidden: int) -> list[tuple[tuple[int, int], tuple[int, int], bool, bool, int]]:
    """The matrix products one training step needs at minimum, with multiplicities.

    Each entry: (shape of A, shape of B, A transposed?, B transposed?, count), meaning
    A^T? @ B^T? is computed `count` times. Shapes are of the stored arrays.
    """
    n, h, z, f = batch, hidden, LATENT, FEATURES
    return [
        ((n, z), (z, h), False, False, 1),   # G forward, layer 1
        ((n, h), (h, f), False, False, 1),   # G forward, layer 2
        ((n, f), (f, h), False, False, 3),   # D forward layer 1: real, fake, fake after D's update
        ((n, h), (h, 1), False, False, 3),   # D forward layer 2
        ((n, h), (n, 1), True, False, 2),    # dV2 = h^T dy (real and fake batch)
        ((n, 1), (h, 1), False, True, 3),    # dh = dy V2^T (real, fake, G step)
        ((n, f), (n, h), True, False, 2),    # dV1 = x^T dh (real and fake batch)
        ((n, h), (f, h), False, True, 1),    # D's input gradient in the G step: dx = dh V1^T
        ((n, h), (n, f), True, False, 1),    # G backward: dW2 = h^T dy
        ((n, f), (h, f), False, True, 1),    # G backward: dh = dy W2^T
        ((n, z), (n, h), True, False, 1),    # G backward: dW1 = z^T dh
    ]


STEP_WARMUP_S = 0.2  # the least warm-up time of a training step: caches and allocator settle


def step_block_ms(step: Callable[[], Any], synchronize: Callable[[], None], repeats: int, warmup: int) -> float:
    """One fair timed block of a training step (either side): a pause, `warmup` untimed steps
    (at least STEP_WARMUP_S seconds of them), then the median ms of `repeats` steps."""
    return statistics.median(timed_block(step, repeats, warmup, synchronize=synchronize,
                                         untimed_s=STEP_WARMUP_S))


def roofline_ms(xp: Any, dtype: Any, batch: int, hidden: int, synchronize: Callable[[], None],
                repeats: int, warmup: int) -> float:
    """Summed median time of the step's matrix products (`step_products`) on array module xp.

    Products with inner dimension 1 are outer products, timed as the broadcast multiply
    minigan uses for them (a rank-1 GEMM call is several times slower in NumPy)."""
    rng = np.random.default_rng(0)
    total = 0.0
    for shape_a, shape_b, transpose_a, transpose_b, count in step_products(batch, hidden):
        a = xp.asarray(rng.standard_normal(shape_a), dtype=dtype)
        b = xp.asarray(rng.standard_normal(shape_b), dtype=dtype)
        a, b = (a.T if transpose_a else a), (b.T if transpose_b else b)
        out = xp.empty((a.shape[0], b.shape[1]), dtype=dtype)
        product = xp.multiply if a.shape[1] == 1 else xp.matmul
        total += count * median_ms(lambda: product(a, b, out=out), synchronize, repeats, warmup)
    return total


def seed_shaped_gan(backend: Backend, hidden: int) -> Any:
    """The `seed` preset's GAN with hidden width `hidden`."""
    preset = PRESETS["seed"].with_overrides(generator_hidden=(hidden,), discriminator_hidden=(hidden,))
    return build_gan(preset, (FEATURES,), backend)


class MiniganCell:
    """minigan's train_step (float32) at one (backend, batch, hidden), built once, timed per round."""

    def __init__(self, backend_name: str, batch: int, hidden: int):
        self.backend = get_backend(backend_name, "float32", seed=0)
        self.batch, self.hidden = batch, hidden
        self.gan = seed_shaped_gan(self.backend, hidden)
        self.real = self.backend.asarray(np.random.default_rng(1).random((batch, FEATURES)))
        self.peak_mb = _peak_mb(self.gan, self.real, self.backend)

    def measure(self, repeats: int, warmup: int) -> tuple[float, float]:
        """(median ms per step, roofline ms) of one round."""
        backend = self.backend
        step_ms = step_block_ms(lambda: self.gan.train_step(self.real), backend.synchronize, repeats, warmup)
        products_ms = roofline_ms(backend.xp, backend.dtype, self.batch, self.hidden,
                                  backend.synchronize, repeats, warmup)
        return step_ms, products_ms

    def phases(self, repeats: int, warmup: int) -> dict[str, float]:
        """Median ms per phase of the step (`minigan.bench.phases.phase_profile`)."""
        return phase_profile(self.gan, self.real, repeats, max(1, warmup), self.backend.synchronize)


def _peak_mb(gan: Any, real: Any, backend: Backend) -> float | None:
    """State bytes (parameters, gradients, optimizer buffers) plus one step's peak temporaries."""
    state = sum(array.nbytes for model in (gan.generator, gan.discriminator)
                for array in (model.params, model.grads))
    state += sum(getattr(opt, name).nbytes + opt.work.nbytes
                 for opt in (gan.d_opt, gan.g_opt) for name in opt.state_names)
    if backend.name == "numpy":
        tracemalloc.start()
        gan.train_step(real)
        temporaries = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    else:
        pool = backend.xp.get_default_memory_pool()
        temporaries = max(0, pool.total_bytes() - state)
    return (state + temporaries) / 2**20


def available_devices(backend_names: list[str]) -> tuple[list[str], list[str]]:
    """The backends that can run here, and a note for each one that cannot."""
    usable, notes = [], []
    for name in backend_names:
        try:
            get_backend(name, "float32")
            usable.append(name)
        except BackendUnavailableError as error:
            notes.append(f"{name}: skipped ({error})")
    return usable, notes


def run_grid(batches: list[int], hiddens: list[int], backends: list[str], torch: bool,
             repeats: int = 20, warmup: int = 5, rounds: int = 3,
             progress: bool = False) -> tuple[list[BenchResult], list[str]]:
    """Benchmarks every cell for every usable backend (and PyTorch if asked and installed).

    The grid is measured `rounds` times; in each round every cell runs its sides (minigan per
    backend, PyTorch per device) in turn, the side that goes first changing from round to
    round, each timed block after a pause and untimed steps (`minigan.bench.timing`). A row
    holds the median over rounds of the per-round medians, the spread, and the medians by
    order. Then every minigan cell is profiled per phase (`BenchResult.phases`).

    Returns:
        (results, notes): the rows; one line per backend or reference that was skipped, and
        one with the PyTorch reference's version, threads and BLAS.
    """
    usable, notes = available_devices(backends)
    worker = None
    if torch:
        worker, torch_notes = TorchWorker.start(numpy_blas_threads())
        notes += torch_notes
        if worker and "torch" in worker.hello:
            notes.append(torch_line(worker.hello["torch"]))
    sides = [("minigan", name) for name in usable] + [("torch", device) for device in (worker.devices if worker else [])]
    cells = [(batch, hidden) for batch in batches for hidden in hiddens]
    minigan_cells: dict[tuple, MiniganCell] = {}  # built on first use, kept for later rounds
    last_torch_reply: dict[tuple, dict[str, Any]] = {}
    bar = progress_bar(total=rounds, enabled=progress, unit="round", leave=False)

    def advance(round_index: int) -> None:
        if bar is not None:
            bar.update(1)

    def measure(cell: tuple[int, int], side: str) -> tuple[float, float]:
        implementation, where = side.split(" ")
        batch, hidden = cell
        if implementation == "minigan":
            if (where, batch, hidden) not in minigan_cells:
                minigan_cells[where, batch, hidden] = MiniganCell(where, batch, hidden)
            return minigan_cells[where, batch, hidden].measure(repeats, warmup)
        reply = last_torch_reply[where, batch, hidden] = worker.measure(where, batch, hidden, repeats, warmup)
        return reply["ms_per_step"], reply["roofline_ms"]

    try:
        runs = alternate(cells, [" ".join(side) for side in sides], rounds, measure,
                         after_round=advance)
    finally:
        if bar is not None:
            bar.close()
        if worker:
            worker.close()
    results = []
    for batch, hidden in cells:
        for implementation, where in sides:
            side_runs = runs[(batch, hidden), f"{implementation} {where}"]
            if implementation == "minigan":
                cell = minigan_cells[where, batch, hidden]
                results.append(BenchResult.from_runs("minigan", "cpu" if where == "numpy" else "cuda", batch,
                                                     hidden, side_runs, cell.peak_mb, where))
                results[-1].phases = cell.phases(repeats, warmup)
            else:
                reply = last_torch_reply[where, batch, hidden]
                results.append(BenchResult.from_runs("torch", where, batch, hidden, side_runs,
                                                     reply["peak_mb"], reply["note"]))
    return results, notes


class TorchWorker:
    """The PyTorch reference in a child process (`python -m minigan.bench.torch_reference`), so that
    PyTorch's threads never run while minigan is timed; one JSON request and reply a line.
    `hello` holds what it reported at start: devices, notes, version, threads, BLAS."""

    def __init__(self, process: subprocess.Popen, hello: dict[str, Any]):
        self.process, self.hello, self.devices = process, hello, hello["devices"]

    @classmethod
    def start(cls, threads: int) -> tuple["TorchWorker | None", list[str]]:
        """Starts the worker with `threads` CPU threads; (None, [why]) when PyTorch is not
        installed or fails to start."""
        if importlib.util.find_spec("torch") is None:
            return None, ["torch: skipped (not installed; pip install torch==2.13.0 for the CPU build)"]
        process = subprocess.Popen([sys.executable, "-m", "minigan.bench.torch_reference", "--threads", str(threads)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        hello = process.stdout.readline()
        if not hello:
            last_line = (process.stderr.read().strip().splitlines() or ["no output"])[-1]
            return None, [f"torch: failed ({last_line})"]
        hello = json.loads(hello)
        return cls(process, hello), hello["notes"]

    def measure(self, device: str, batch: int, hidden: int, repeats: int, warmup: int) -> dict[str, Any]:
        """One round of one cell: ms_per_step, roofline_ms, peak_mb, note."""
        request = {"device": device, "batch": batch, "hidden": hidden, "repeats": repeats, "warmup": warmup}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        reply = self.process.stdout.readline()
        if not reply:
            raise RuntimeError(f"the PyTorch reference process died: {self.process.stderr.read()[-500:]}")
        return json.loads(reply)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)
