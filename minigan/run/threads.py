"""BLAS thread control for a run: small matrix products run faster on one OpenBLAS thread
than on two, and two threads fight a second busy process for the cores (measured in
docs/benchmarks.md). threadpoolctl sets the limit when it is installed."""
from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def blas_threads(count: int | None) -> Iterator[None]:
    """Limits the BLAS libraries NumPy uses to `count` threads inside the block (no
    limit when None, or when threadpoolctl is not installed)."""
    if count is None:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=count, user_api="blas"):
        yield
