"""Step-throughput benchmark: the full GAN training step per backend, against its roofline.

For each (batch size, hidden width) cell on the `seed` preset's shape
(G 100 -> H ReLU -> 784 sigmoid, D 784 -> H ReLU -> 1, Adam), it measures the median
milliseconds of `GAN.train_step` (float32) after warm-up, and the *roofline*: the time the
step's matrix products alone take at the same shapes on the same backend, in the same
run. The roofline share (products / step) says how much of the step is spent outside
BLAS. The PyTorch reference (`minigan.bench.torch_reference`) runs only when asked for, in a child process.
The table, the plot and `minigan bench` itself are in `minigan.bench.report`.
"""
from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import sys
import time
import tracemalloc
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

from ..backend import Backend, BackendUnavailableError, get_backend
from ..run.presets import PRESETS, build_gan
from ..run.progress import progress_bar

LATENT, FEATURES = 100, 784


@dataclass
class BenchResult:
    """One row of the table."""

    implementation: str     # "minigan" or "torch"
    device: str             # "cpu" or "cuda"
    batch: int
    hidden: int
    ms_per_step: float      # median over repeats
    roofline_ms: float      # the step's matrix products alone, same shapes and device
    peak_mb: float | None   # memory held by the step: state plus per-step temporaries
    note: str = ""

    @property
    def steps_per_s(self) -> float:
        return 1000.0 / self.ms_per_step

    @property
    def samples_per_s(self) -> float:
        return self.batch * self.steps_per_s

    @property
    def roofline_share(self) -> float:
        return self.roofline_ms / self.ms_per_step

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "steps_per_s": self.steps_per_s, "samples_per_s": self.samples_per_s,
                "roofline_share": self.roofline_share}


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


def median_ms(fn: Callable[[], Any], synchronize: Callable[[], None], repeats: int, warmup: int,
              warmup_s: float = 0.0) -> float:
    """Median wall-clock milliseconds of fn() over `repeats` calls after at least `warmup`
    calls and `warmup_s` seconds of them, synchronizing the device around every timed call."""
    start, calls = time.perf_counter(), 0
    while calls < warmup or (calls and time.perf_counter() - start < warmup_s):
        fn()
        synchronize()
        calls += 1
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


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
        step_ms = median_ms(lambda: self.gan.train_step(self.real), backend.synchronize, repeats, warmup,
                            STEP_WARMUP_S)
        products_ms = roofline_ms(backend.xp, backend.dtype, self.batch, self.hidden,
                                  backend.synchronize, repeats, warmup)
        return step_ms, products_ms


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

    The grid is measured `rounds` times, minigan and PyTorch alternating cell by cell, and
    each row reports the median over rounds of the per-round medians, so a slow spell of
    a shared machine hits both implementations rather than one.

    Returns:
        (results, notes): the rows, and one line per backend or reference that was skipped.
    """
    usable, notes = available_devices(backends)
    worker = None
    if torch:
        worker, torch_notes = TorchWorker.start()
        notes += torch_notes
    keys = [(implementation, where, batch, hidden) for batch in batches for hidden in hiddens
            for implementation, places in (("minigan", usable), ("torch", worker.devices if worker else []))
            for where in places]
    minigan_cells: dict[tuple, MiniganCell] = {}  # built on first use, kept for later rounds
    rows: dict[tuple, list[tuple[float, float]]] = {key: [] for key in keys}
    last_torch_reply: dict[tuple, dict[str, Any]] = {}
    for _ in progress_bar(range(rounds), enabled=progress, unit="round", leave=False):
        for key in keys:
            implementation, where, batch, hidden = key
            if implementation == "minigan":
                if key not in minigan_cells:
                    minigan_cells[key] = MiniganCell(where, batch, hidden)
                rows[key].append(minigan_cells[key].measure(repeats, warmup))
            else:
                reply = last_torch_reply[key] = worker.measure(where, batch, hidden, repeats, warmup)
                rows[key].append((reply["ms_per_step"], reply["roofline_ms"]))
    if worker:
        worker.close()
    results = []
    for key, measured in rows.items():
        implementation, where, batch, hidden = key
        step_ms = statistics.median(step for step, _ in measured)
        products_ms = statistics.median(products for _, products in measured)
        if implementation == "minigan":
            results.append(BenchResult("minigan", "cpu" if where == "numpy" else "cuda", batch, hidden,
                                       step_ms, products_ms, minigan_cells[key].peak_mb, note=where))
        else:
            reply = last_torch_reply[key]
            results.append(BenchResult("torch", where, batch, hidden, step_ms, products_ms,
                                       reply["peak_mb"], note=reply["note"]))
    return results, notes


class TorchWorker:
    """The PyTorch reference in a child process (`python -m minigan.bench.torch_reference`), so that
    PyTorch's threads never run while minigan is timed; one JSON request and reply a line."""

    def __init__(self, process: subprocess.Popen, devices: list[str]):
        self.process, self.devices = process, devices

    @classmethod
    def start(cls) -> tuple["TorchWorker | None", list[str]]:
        """Starts the worker; (None, [why]) when PyTorch is not installed or fails to start."""
        if importlib.util.find_spec("torch") is None:
            return None, ["torch: skipped (not installed; pip install torch==2.13.0 for the CPU build)"]
        process = subprocess.Popen([sys.executable, "-m", "minigan.bench.torch_reference"], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        hello = process.stdout.readline()
        if not hello:
            last_line = (process.stderr.read().strip().splitlines() or ["no output"])[-1]
            return None, [f"torch: failed ({last_line})"]
        hello = json.loads(hello)
        return cls(process, hello["devices"]), hello["notes"]

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


