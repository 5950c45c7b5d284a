"""The GPU report's benchmark and its outputs: the training step on the CPU (NumPy) and on a
device backend, how much of the device's peak it uses, and the report's markdown.

Rows: the MLP GAN step (the `seed` preset's shape, G 100 -> H -> 784, D 784 -> H -> 1, Adam,
as in `minigan.bench.step`) and the DCGAN step (the `dcgan-paper` preset on 28x28x1 images, as in
`minigan.bench.dcgan`), float32, at each batch size on each backend. A cell is the median
milliseconds of `GAN.train_step` over `repeats` steps after warm-up, the device
synchronised around every timed step (`step.median_ms`). Its FLOPs are those of the step's
matrix products (each benchmark's `step_products`: 2 m k n per product), so achieved
FLOP/s over the device's FP32 peak (`PEAK_FP32_TFLOPS`, by device name) is the share of
the GPU the step uses. The command is benchmarks/gpu_report.py (benchmarks/gpu_report.sh on
a fresh machine), which adds the test phases.
"""
from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..backend import Backend, device_properties, get_backend, is_out_of_memory
from ..run.presets import PRESETS, build_gan
from .dcgan import IMAGE
from .dcgan import step_products as dcgan_products
from .machine import cpu_model, numpy_blas
from .step import FEATURES, STEP_WARMUP_S, StepRate, median_ms, seed_shaped_gan
from .step import step_products as mlp_products

# Peak FP32 (non-tensor-core) TFLOP/s from the vendor's data sheets; the first name that is
# part of the device's name wins, so a longer name comes before its prefix ("L40S", "L4").
PEAK_FP32_TFLOPS = (
    ("H200 NVL", 60.0), ("H200", 67.0), ("H100 PCIe", 51.2), ("H100 NVL", 60.0), ("H100", 67.0),
    ("A100", 19.5), ("L40S", 91.6), ("L40", 90.5), ("L4", 30.3), ("A10", 31.2), ("T4", 8.1),
    ("V100", 15.7),
)


def peak_tflops(device_name: str) -> float | None:
    """The device's peak FP32 TFLOP/s, or None for a device not in `PEAK_FP32_TFLOPS`."""
    for name, tflops in PEAK_FP32_TFLOPS:
        if name in device_name:
            return tflops
    return None


def machine(device: Backend | None) -> dict[str, Any]:
    """The CPU, NumPy and its BLAS, and the device (`device_properties` and its peak; only
    the backend's name when it is a host backend, nothing when it could not be created)."""
    device_info: dict[str, Any] = {}
    if device is not None:
        properties = device_properties(device)
        device_info = {"backend": device.name, **properties,
                       "peak_fp32_tflops": peak_tflops(properties.get("name", ""))}
    return {"cpu": cpu_model(), "python": platform.python_version(), "numpy": np.__version__,
            "numpy_blas": numpy_blas(), "device": device_info}


def product_flops(shape_a: tuple[int, int], shape_b: tuple[int, int], transpose_a: bool,
                  transpose_b: bool, count: int) -> int:
    """FLOPs of `count` products A^T? @ B^T? of the stored shapes: 2 m k n each."""
    rows, inner = shape_a[::-1] if transpose_a else shape_a
    columns = shape_b[0] if transpose_b else shape_b[1]
    return 2 * rows * inner * columns * count


def mlp_case(backend: Backend, batch: int, hidden: int) -> tuple[Any, Any, int]:
    """(the seed-shaped GAN, a real batch (N, 784) in [0, 1), FLOPs of one step's products)."""
    gan = seed_shaped_gan(backend, hidden)
    real = backend.asarray(np.random.default_rng(1).random((batch, FEATURES)))  # (N, 784)
    return gan, real, sum(product_flops(*product) for product in mlp_products(batch, hidden))


def dcgan_case(backend: Backend, batch: int) -> tuple[Any, Any, int]:
    """(the dcgan-paper preset's GAN, a real batch (N, 28, 28, 1) in [-1, 1), FLOPs of one step's products)."""
    gan = build_gan(PRESETS["dcgan-paper"], IMAGE, backend)
    real = backend.asarray(np.random.default_rng(1).uniform(-1, 1, (batch, *IMAGE)))  # (N, 28, 28, 1)
    flops = sum(product_flops(p.a, p.b, p.transpose_a, p.transpose_b, p.count) for p in dcgan_products(gan, batch))
    return gan, real, flops


@dataclass
class Row(StepRate):
    """One cell of the table: one model, batch size and backend."""

    model: str                  # "mlp" or "dcgan"
    batch: int
    hidden: int | None          # the MLP's hidden width (None for the DCGAN)
    backend: str                # "numpy" (the CPU), "cupy", or a stand-in's name
    ms_per_step: float          # median over the repeats
    flops_per_step: int         # the step's matrix products
    peak_tflops: float | None   # the device's FP32 peak (None: the CPU, or an unknown GPU)

    @property
    def tflops(self) -> float:
        """Achieved TFLOP/s of the step's matrix products."""
        return self.flops_per_step * self.steps_per_s / 1e12

    @property
    def peak_share(self) -> float | None:
        return self.tflops / self.peak_tflops if self.peak_tflops else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "steps_per_s": self.steps_per_s, "samples_per_s": self.samples_per_s,
                "tflops": self.tflops, "peak_share": self.peak_share}


def measure(device_backend: str, mlp_batches: Sequence[int], dcgan_batches: Sequence[int],
            hiddens: Sequence[int], repeats: int, warmup: int, warmup_s: float = STEP_WARMUP_S,
            progress: Callable[[str], None] = lambda message: None) -> Iterator[Row | str]:
    """Times every (model, batch) cell on NumPy and on `device_backend` (module docstring),
    yielding each `Row` as soon as it is measured.

    A cell that runs out of device memory yields a note (a str) instead of a row; any other
    error propagates.
    """
    peak = peak_tflops(device_properties(get_backend(device_backend)).get("name", ""))
    cells = [("mlp", batch, hidden) for hidden in hiddens for batch in mlp_batches]
    cells += [("dcgan", batch, None) for batch in dcgan_batches]
    for model, batch, hidden in cells:
        for name in dict.fromkeys(("numpy", device_backend)):  # once when the device is NumPy too
            progress(f"{model} batch {batch}{f' hidden {hidden}' if hidden else ''} on {name}")
            backend = get_backend(name, "float32", seed=0)
            try:
                gan, real, flops = (mlp_case(backend, batch, hidden) if model == "mlp"
                                    else dcgan_case(backend, batch))
                ms = median_ms(lambda: gan.train_step(real), backend.synchronize, repeats, warmup, warmup_s)
            except Exception as error:
                if not is_out_of_memory(error):
                    raise
                yield f"{model} batch {batch} on {name}: out of GPU memory ({error})"
                continue
            finally:
                gan = real = None  # frees the device memory for the next cell
            yield Row(model, batch, hidden, name, ms, flops, peak if name == "cupy" else None)


def _number(value: float | None, format: str, missing: str = "n/a") -> str:
    return missing if value is None else format.format(value)


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows (`Row.as_dict()`) as one markdown table; each device row with its speed-up
    over the NumPy row of the same cell."""
    cpu = {(row["model"], row["batch"], row["hidden"]): row for row in rows if row["backend"] == "numpy"}
    lines = ["| model | batch | backend | ms/step | steps/s | samples/s | GFLOP/step | TFLOP/s "
             "| share of peak | vs numpy |", "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        model = f"MLP (hidden {row['hidden']})" if row["hidden"] else "DCGAN"
        reference = cpu.get((row["model"], row["batch"], row["hidden"]))
        speedup = "" if row["backend"] == "numpy" else _number(
            reference and reference["ms_per_step"] / row["ms_per_step"], "{:.2f}x")
        lines.append(f"| {model} | {row['batch']} | {row['backend']} | {row['ms_per_step']:.3f} "
                     f"| {row['steps_per_s']:.1f} | {row['samples_per_s']:,.0f} "
                     f"| {row['flops_per_step'] / 1e9:.3g} | {row['tflops']:.3g} "
                     f"| {_number(row['peak_share'], '{:.1%}', '')} | {speedup} |")
    return "\n".join(lines)


def format_markdown(report: dict[str, Any]) -> str:
    """The whole report: the machine, each phase's result, the table and the notes."""
    machine, settings = report["machine"], report["settings"]
    device = machine["device"]
    if "name" in device:
        title = f"{device['name']} ({_number(device['peak_fp32_tflops'], '{:g}', 'unknown')} TFLOP/s FP32 peak)"
    else:
        title = f"{settings['device_backend']} backend, no GPU"
    lines = [f"## GPU report: {title}", "",
             f"- CPU: {machine['cpu']}; Python {machine['python']}, NumPy {machine['numpy']}, "
             f"BLAS: {'; '.join(machine['numpy_blas']) or 'unknown'}"]
    if "cupy" in device:
        lines.append(f"- GPU: CuPy {device['cupy']}, CUDA runtime {device['cuda_runtime']}, driver "
                     f"{device['cuda_driver']}, compute capability {device['compute_capability']}, "
                     f"{device['multiprocessors']} SMs, {device['memory_gib']:.0f} GiB")
    for name, phase in report["phases"].items():
        lines.append(f"- {name}: **{phase['result']}** ({phase['seconds']:.0f} s) {phase['detail']}".rstrip())
    lines += ["", f"float32; each cell the median of {settings['repeats']} timed steps after "
                  f"{settings['warmup']} untimed, the device synchronised around every step; FLOPs "
                  f"are the step's matrix products, the share of peak is of the GPU's FP32 peak.", "",
              format_table(report["rows"])]
    lines += [f"\nnote: {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"
