"""The array backend: which array module (NumPy or CuPy), which dtype, which random stream.

A `Backend` travels with every model instead of living in a global, so two models on
different devices or dtypes can sit side by side in one process. This is the only module
that imports CuPy or talks to a CUDA device; every other module uses `backend.xp`, the
array module, through NumPy-API calls that CuPy also provides, and moves data to the host
only through `Backend.to_numpy` (`to_host`).

The random generator is always a host-side `numpy.random.Generator` (PCG64): the same
seed gives the same initial weights, noise batches and data on every backend, so a CPU
run and a GPU run can be compared number by number, and its state is plain JSON for
checkpoints.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

import numpy as np

from .cpu_kernels import available as compiled_passes_available

BACKEND_NAMES = ("numpy", "cupy", "auto")
HOST_ARRAY_MODULES: dict[str, Any] = {}  # name -> array module, see `register_array_module`
DTYPES = {"float32": np.float32, "float64": np.float64}
CUPY_INSTALL_HINT = ("pip install 'minigan[cuda12]' (CUDA 12) or 'minigan[cuda13]' (CUDA 13), "
                     "i.e. the cupy-cuda12x / cupy-cuda13x wheel")

# what CuPy's CUDA runtime and cuBLAS errors say when an allocation on the device fails
OUT_OF_MEMORY_MARKERS = ("cudaErrorMemoryAllocation", "CUBLAS_STATUS_ALLOC_FAILED")

# the most bytes of a temporary that a host pass makes in pieces, so that each piece stays
# in the CPU's cache (the convolutions' column matrices: docs/benchmarks.md)
HOST_CHUNK_BYTES = 4 * 2**20


class BackendUnavailableError(RuntimeError):
    """A backend was asked for that this machine cannot provide."""


class Backend:
    """An array module, a floating dtype and a seeded random generator.

    Attributes:
        xp: the array module (`numpy` or `cupy`, or a registered stand-in).
        name: "numpy" or "cupy" (or a stand-in's name, see `register_array_module`).
        dtype: the floating dtype every parameter and activation uses.
        rng: the seeded `numpy.random.Generator` behind every random draw.
        chunk_bytes: how large a temporary may grow before work that can is done a piece
            at a time: `HOST_CHUNK_BYTES` on the host; None (never in pieces) on a GPU,
            where one large kernel beats several small ones.
        compiled: whether the layers take their compiled CPU passes (`minigan.cpu_kernels`,
            the same bits as their NumPy code in fewer passes over memory): on the NumPy
            backend when Numba is installed and $MINIGAN_COMPILED is not "0". Set it to
            False to run the NumPy code.
    """

    def __init__(self, xp: Any, name: str, dtype: np.dtype, seed: int):
        self.xp = xp
        self.name = name
        self.dtype = np.dtype(dtype)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.shard: tuple[int, int] | None = None  # (rank, ranks) inside `sharded`
        self.chunk_bytes = None if name == "cupy" else HOST_CHUNK_BYTES
        self.compiled = name == "numpy" and compiled_passes_available()

    def __repr__(self) -> str:
        return f"Backend(name={self.name!r}, dtype={self.dtype.name!r}, seed={self.seed})"

    def asarray(self, array: Any) -> Any:
        """Returns `array` as an array of this backend in this backend's dtype."""
        return self.xp.asarray(array, dtype=self.dtype)

    def to_numpy(self, array: Any) -> np.ndarray:
        """Returns a host NumPy copy (or the array itself when it already is one)."""
        return to_host(array)

    def synchronize(self) -> None:
        """Waits until the device has finished all queued work (a no-op on NumPy)."""
        if self.name == "cupy":
            self.xp.cuda.get_current_stream().synchronize()

    def standard_normal(self, shape: tuple[int, ...]) -> Any:
        """Draws N(0, 1) samples of `shape` from `rng`, as a backend array.

        Drawn in float64 and rounded, so float32 and float64 backends with one seed see
        the same noise."""
        return self.asarray(self._draw(self.rng.standard_normal, shape))

    def uniform(self, shape: tuple[int, ...]) -> Any:
        """Draws U[0, 1) samples of `shape` from `rng`, as a backend array (float64, rounded)."""
        return self.asarray(self._draw(self.rng.random, shape))

    def _draw(self, draw: Any, shape: tuple[int, ...]) -> np.ndarray:
        """draw(shape); inside `sharded`, this process's rows of the draw for all processes."""
        if self.shard is None:
            return draw(shape)
        rank, ranks = self.shard
        rows = shape[0]
        return draw((ranks * rows, *shape[1:]))[rank * rows:(rank + 1) * rows]  # (rows, ...)

    @contextlib.contextmanager
    def sharded(self, rank: int, ranks: int) -> Iterator[None]:
        """Inside the block every draw of shape (n, ...) is this process's share of one
        global draw: the generator draws (ranks * n, ...) and rows [rank * n, (rank + 1) * n)
        are returned. So `ranks` processes with one seed see together exactly the noise
        that one process sees for the global batch, and their generators stay in step."""
        self.shard = (rank, ranks)
        try:
            yield
        finally:
            self.shard = None

    def rng_state(self) -> dict:
        """The generator's state, JSON-serialisable."""
        return self.rng.bit_generator.state

    def set_rng_state(self, state: dict) -> None:
        """Restores a state returned by `rng_state`."""
        self.rng.bit_generator.state = state


def import_cupy() -> Any:
    """The imported CuPy module: the one way other modules (`kernels`) get hold of CuPy.

    Raises:
        BackendUnavailableError: CuPy is not installed (the message says how to install it).
    """
    try:
        import cupy
    except ImportError as error:
        raise BackendUnavailableError(f"the cupy backend needs CuPy, which is not installed "
                                      f"({error}); install it with {CUPY_INSTALL_HINT}") from None
    return cupy


def _cuda_device_count(cupy: Any) -> int:
    try:
        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # CUDA driver missing or broken: CuPy raises its own runtime errors
        return 0


def cuda_available() -> bool:
    """True when CuPy imports and at least one CUDA device is present."""
    try:
        cupy = import_cupy()
    except BackendUnavailableError:
        return False
    return _cuda_device_count(cupy) > 0


def device_properties(backend: Backend) -> dict[str, Any]:
    """The CUDA device a cupy backend computes on: name, memory, compute capability, CUDA
    runtime and driver versions, CuPy's version; {} for a host backend."""
    if backend.name != "cupy":
        return {}
    cupy = backend.xp
    runtime = cupy.cuda.runtime
    device = cupy.cuda.Device()
    properties = runtime.getDeviceProperties(device.id)
    name = properties["name"]
    return {"name": name.decode() if isinstance(name, bytes) else str(name),
            "memory_gib": properties["totalGlobalMem"] / 2**30,
            "compute_capability": f"{properties['major']}.{properties['minor']}",
            "multiprocessors": properties["multiProcessorCount"],
            "cuda_runtime": runtime.runtimeGetVersion(), "cuda_driver": runtime.driverGetVersion(),
            "cupy": cupy.__version__}


def is_out_of_memory(error: BaseException) -> bool:
    """True when `error` says the CUDA device ran out of memory: CuPy's
    `cupy.cuda.memory.OutOfMemoryError`, or a CUDA runtime / library error of CuPy's
    reporting a failed allocation.

    Judged by the error's class name and module, so it needs no CuPy (which may not even be
    installed) and never imports it."""
    cupy_classes = [kind for kind in type(error).__mro__
                    if (kind.__module__ or "").split(".")[0] in ("cupy", "cupy_backends")]
    if any(kind.__name__ == "OutOfMemoryError" for kind in cupy_classes):
        return True
    return bool(cupy_classes) and any(marker in str(error) for marker in OUT_OF_MEMORY_MARKERS)


def register_array_module(xp: Any) -> None:
    """Makes `get_backend(xp.__name__)` give backends on `xp`, a host array module with CuPy's API.

    This is how the test suite runs every numeric test on its strict CuPy stand-in
    (tests/strict_cupy.py), which computes with NumPy but refuses what CuPy refuses. `xp`
    must offer `ndarray` (the type of its arrays) and `asnumpy` (the copy to the host), as
    CuPy does. Code that branches on `backend.name == "cupy"` (the fused optimizer kernels,
    `synchronize`) takes its NumPy path on such a backend.
    """
    HOST_ARRAY_MODULES[xp.__name__] = xp


def array_module(array: Any) -> Any:
    """The array module an array belongs to: NumPy for host data, CuPy for device arrays."""
    if isinstance(array, (np.ndarray, np.generic)):
        return np
    for xp in HOST_ARRAY_MODULES.values():
        if isinstance(array, xp.ndarray):
            return xp
    return import_cupy()


def to_host(array: Any) -> np.ndarray:
    """A NumPy view or copy of any backend's array."""
    if isinstance(array, (np.ndarray, np.generic)):
        return np.asarray(array)
    return array_module(array).asnumpy(array)


def _resolve_dtype(dtype: Any) -> np.dtype:
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved.name not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return resolved


def get_backend(name: str | None = None, dtype: Any = "float32", seed: int = 0) -> Backend:
    """Creates a backend.

    Args:
        name: "numpy", "cupy", or "auto" (CuPy when it imports and a CUDA device is
            present, else NumPy), or a name given to `register_array_module`. None reads
            `$MINIGAN_BACKEND`, defaulting to "numpy".
        dtype: "float32" (training) or "float64" (gradient checks).
        seed: seed of the backend's random generator.

    Raises:
        ValueError: unknown name or dtype, or a negative seed.
        BackendUnavailableError: CuPy asked for but not installed, or no CUDA device.
    """
    if name is None:
        name = os.environ.get("MINIGAN_BACKEND", "numpy")
    name = name.strip().lower()
    if name not in BACKEND_NAMES and name not in HOST_ARRAY_MODULES:
        raise ValueError(f"backend must be one of {BACKEND_NAMES + tuple(HOST_ARRAY_MODULES)}, "
                         f"got {name!r}")
    resolved_dtype = _resolve_dtype(dtype)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if name == "auto":
        name = "cupy" if cuda_available() else "numpy"
    if name == "numpy":
        return Backend(np, "numpy", resolved_dtype, int(seed))
    if name in HOST_ARRAY_MODULES:
        return Backend(HOST_ARRAY_MODULES[name], name, resolved_dtype, int(seed))
    cupy = import_cupy()
    if _cuda_device_count(cupy) == 0:
        raise BackendUnavailableError("CuPy is installed but no CUDA device is available "
                                      "(check the driver and CUDA_VISIBLE_DEVICES), "
                                      "or use backend 'numpy'")
    return Backend(cupy, "cupy", resolved_dtype, int(seed))
