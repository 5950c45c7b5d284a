"""What a benchmark reports about the machine it ran on: the CPU, the load, how much of the
CPUs other processes took while it ran, and the BLAS each side uses (threadpoolctl's view of
NumPy's, the build summary of PyTorch's)."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import re
from typing import Any

import numpy as np
from threadpoolctl import threadpool_info

from ..cpu_kernels import available as compiled_passes_available

# environment variables that change what the BLAS, OpenMP or the allocator do; reported when set
ENVIRONMENT_PREFIXES = ("OPENBLAS_", "OMP_", "MKL_", "KMP_", "GOMP_", "MALLOC_", "MINIGAN_")
# the lines of torch.__config__.show() that name the libraries its CPU products come from
TORCH_BLAS_WORDS = ("Math Kernel", "MKL-DNN", "oneDNN", "OpenMP", "BLAS_INFO", "CPU capability")


def cpu_model() -> str:
    """The CPU's model name and logical CPU count (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo") as file:
            names = [line.split(":", 1)[1].strip() for line in file if line.startswith("model name")]
        name = names[0]
    except (OSError, IndexError):
        name = platform.processor() or "unknown"
    return f"{name} ({os.cpu_count()} logical CPUs)"


def numpy_blas() -> list[str]:
    """NumPy's BLAS libraries as threadpoolctl sees them now (call it inside a thread limit to
    report that limit): implementation, version, kernel architecture, threads."""
    return [f"{pool['internal_api']} {pool['version']} ({pool.get('architecture')}, "
            f"{pool.get('threading_layer')}, {pool['num_threads']} thread(s))"
            for pool in threadpool_info() if pool["user_api"] == "blas"]


def numpy_blas_threads() -> int:
    """The threads NumPy's BLAS uses now (the most of any of its BLAS libraries; 1 if none is seen),
    so that a PyTorch reference can be given as many."""
    return max([pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"], default=1)


def torch_blas(torch: Any) -> list[str]:
    """The lines of PyTorch's build summary that name its BLAS, oneDNN, OpenMP and CPU kernels
    (the "BLAS_INFO" entry of its build settings instead of the whole long line)."""
    lines = []
    for line in torch.__config__.show().splitlines():
        blas_info = re.search(r"BLAS_INFO=\w+", line)
        if blas_info:
            lines.append(blas_info.group())
        elif any(word in line for word in TORCH_BLAS_WORDS):
            lines.append(line.strip(" -"))
    return lines


def load_average() -> float | None:
    """The 1-minute load average (None where the OS does not give one)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _cpu_seconds() -> tuple[float, float] | None:
    """(CPU seconds every process has used since boot, counting those a hypervisor stole for
    other machines; wall seconds times CPUs since boot), from /proc/stat; None without it."""
    try:
        with open("/proc/stat") as file:
            ticks = [int(value) for value in file.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = ticks + [0] * (8 - len(ticks))
    per_second = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq + steal) / per_second, sum(ticks) / per_second


def _own_seconds() -> float:
    times = os.times()  # this process and the children it has waited for
    return times.user + times.system + times.children_user + times.children_system


class OtherLoad:
    """How much of the CPUs everything but this process (and its finished children) used from
    construction until `share()`: other users of a shared machine, or a hypervisor's other guests."""

    def __init__(self) -> None:
        self.start, self.own = _cpu_seconds(), _own_seconds()

    def share(self) -> float | None:
        """Their CPU seconds over all CPU seconds so far (0: the machine was ours); None where unknown."""
        now = _cpu_seconds()
        if now is None or self.start is None or now[1] <= self.start[1]:
            return None
        others = (now[0] - self.start[0]) - (_own_seconds() - self.own)
        return min(1.0, max(0.0, others / (now[1] - self.start[1])))


def torch_info(torch: Any) -> dict[str, Any]:
    """PyTorch's version, CPU threads and BLAS (`torch_blas`), as the benchmarks report them."""
    return {"version": torch.__version__, "threads": torch.get_num_threads(), "blas": torch_blas(torch)}


def describe(threads: int | None, torch: dict[str, Any] | None, others: OtherLoad | None = None) -> dict[str, Any]:
    """The machine notes of a benchmark against PyTorch: the CPU, the load, the threads per side,
    NumPy and its BLAS (call it inside the run's thread limit), `torch_info` (None: not run),
    with `others` (made when the run began) the share of the CPUs other processes took
    meanwhile, whether the layers' compiled CPU passes ran (`minigan.cpu_kernels`: the Numba
    version, or None), and the BLAS / OpenMP / allocator / minigan environment variables that are set."""
    return {"cpu": cpu_model(), "load_average": load_average(), "threads": threads, "numpy": np.__version__,
            "numpy_blas": numpy_blas(), "compiled_passes": compiled_passes(), "torch": torch,
            "others_share": others.share() if others else None,
            "environment": {name: value for name, value in sorted(os.environ.items())
                            if name.startswith(ENVIRONMENT_PREFIXES)}}


def compiled_passes() -> str | None:
    """The Numba version behind the layers' compiled CPU passes, None when they are off."""
    return importlib.metadata.version("numba") if compiled_passes_available() else None


def torch_line(torch: dict[str, Any]) -> str:
    """One line of `torch_info`: version, threads and BLAS."""
    return f"torch {torch['version']}, {torch['threads']} thread(s): {'; '.join(torch['blas'])}"


def format_machine(machine: dict[str, Any]) -> list[str]:
    """`describe`'s notes as lines (the PyTorch line only when PyTorch ran)."""
    load = "n/a" if machine["load_average"] is None else f"{machine['load_average']:.2f}"
    lines = [f"CPU: {machine['cpu']}; load average {load}"]
    if machine.get("others_share") is not None:
        lines[0] += f"; other processes took {machine['others_share']:.0%} of the CPUs during the run"
    if machine["threads"] is not None:
        lines.append(f"threads per side: {machine['threads']}")
    lines.append(f"NumPy {machine['numpy']}, BLAS: {'; '.join(machine['numpy_blas']) or 'none found'}")
    if "compiled_passes" in machine:  # absent from results saved before minigan compiled any pass
        compiled = machine["compiled_passes"]
        lines.append(f"compiled CPU passes: Numba {compiled}" if compiled else
                     "compiled CPU passes: off (the NumPy code: Numba not installed or MINIGAN_COMPILED=0)")
    if machine.get("environment"):
        lines.append("environment: " + " ".join(f"{name}={value}" for name, value in machine["environment"].items()))
    if machine["torch"]:
        lines.append(torch_line(machine["torch"]))
    return lines
