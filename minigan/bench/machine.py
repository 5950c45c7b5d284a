"""What a benchmark reports about the machine it ran on: the CPU and NumPy's BLAS."""
from __future__ import annotations

import os
import platform

from threadpoolctl import threadpool_info


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
