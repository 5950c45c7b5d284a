"""Data parallelism: K processes train one model exactly as one process would with the
same global batch (DESIGN.md, idea 10).

Everything a run on K processes does differently lives here, and it is small because
each network keeps its gradients in one flat buffer:

- `launched_processes()` reads how many processes an MPI launcher (`mpirun`) started;
  `world()` joins them. A single process never imports mpi4py.
- `Communicator`: the few collectives a run needs, on mpi4py: an in-place sum
  all-reduce of a flat buffer (over NCCL for CuPy arrays, MPI only bootstrapping it),
  broadcasts, an all-gather of text, and `abort`.
- `DataParallel`: a model family on one of K ranks. It refuses ranks whose
  configurations differ, broadcasts rank 0's state, averages every network's flat
  gradient with one in-place all-reduce before each optimizer step (the optimizer's
  `gradient_hook`), optionally synchronises BatchNorm's batch sums (`sync_bn`), and runs
  each step on this rank's rows of the global batch and of the global noise.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import sysconfig
import time
from typing import Any, Iterator, Sequence

import numpy as np

from .backend import import_cupy
from .norm import BatchNorm
from .version import __version__

MPI_INSTALL_HINT = "pip install 'minigan[mpi]' (mpi4py and Open MPI from PyPI)"
# Variables by which MPI launchers tell a process how many processes they started.
SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")
RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK")
_WORLD: list["Communicator | None"] = []  # the communicator, once `world()` has joined it


class DistributedError(RuntimeError):
    """MPI is needed but unavailable, or the processes of a run disagree."""


def launched_processes() -> int:
    """How many processes the MPI launcher that started this one started (1 without one)."""
    for variable in SIZE_VARIABLES:
        value = os.environ.get(variable, "")
        if value.isdigit() and int(value) > 1:
            return int(value)
    return 1


def launched_rank() -> int:
    """This process's rank as its MPI launcher numbered it (0 without one); known before
    MPI starts, so that only rank 0 prints."""
    for variable in RANK_VARIABLES:
        value = os.environ.get(variable, "")
        if value.isdigit():
            return int(value)
    return 0


def find_mpirun() -> str | None:
    """The mpirun on the PATH, else the one the `mpi` extra installed beside this Python."""
    return shutil.which("mpirun") or shutil.which("mpirun", path=sysconfig.get_path("scripts"))


def world() -> "Communicator | None":
    """The communicator of all processes a launcher started (joined on the first call),
    or None for a single process.

    Raises:
        DistributedError: several processes were launched but mpi4py is not installed.
    """
    if launched_processes() == 1:
        return None
    if not _WORLD:
        _WORLD.append(_join())
    return _WORLD[0]


def _join() -> "Communicator | None":
    # Waiting ranks yield their core instead of polling (2 ranks on 2 cores otherwise
    # spin against each other's BLAS work); set before MPI starts, unless the user chose.
    os.environ.setdefault("OMPI_MCA_mpi_yield_when_idle", "1")
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise DistributedError(f"this process is one of {launched_processes()} started by an MPI launcher, "
                               f"but mpi4py is not installed ({error}); {MPI_INSTALL_HINT}") from None
    communicator = Communicator(MPI.COMM_WORLD)
    return communicator if communicator.size > 1 else None


class Communicator:
    """The collectives of a data-parallel run, over an mpi4py communicator.

    Attributes:
        rank, size: this process's index and the number of processes.
        local_rank, local_size: the same among the processes on this machine.
        allreduce_seconds: wall time spent in `allreduce_sum_` so far (for benchmarks).
    """

    def __init__(self, mpi_comm: Any):
        from mpi4py import MPI
        self.MPI, self.comm = MPI, mpi_comm
        self.rank, self.size = mpi_comm.Get_rank(), mpi_comm.Get_size()
        local = mpi_comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
        local.Free()
        self.allreduce_seconds = 0.0
        self._nccl: Any = None

    def allreduce_sum_(self, array: Any) -> Any:
        """Replaces a contiguous array by its sum over all processes; returns it."""
        start = time.perf_counter()
        if isinstance(array, np.ndarray):
            self.comm.Allreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM)
        else:
            self._nccl_allreduce_sum_(array)
        self.allreduce_seconds += time.perf_counter() - start
        return array

    def _nccl_allreduce_sum_(self, array: Any) -> None:
        """The device all-reduce: NCCL between GPUs, bootstrapped by one MPI broadcast."""
        cupy = import_cupy()
        nccl = cupy.cuda.nccl
        if not getattr(nccl, "available", False):
            raise DistributedError("data-parallel training on GPUs needs NCCL, which CuPy cannot load here; "
                                   "pip install nvidia-nccl-cu12 (CUDA 12) or nvidia-nccl-cu13 (CUDA 13)")
        if self._nccl is None:
            unique_id = np.array(nccl.get_unique_id() if self.rank == 0 else [0] * 128, dtype=np.int64)
            self.comm.Bcast(unique_id, root=0)
            self._nccl = nccl.NcclCommunicator(self.size, tuple(int(v) for v in unique_id), self.rank)
        dtype = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64}[array.dtype]
        stream = cupy.cuda.get_current_stream()
        self._nccl.allReduce(array.data.ptr, array.data.ptr, array.size, dtype, nccl.NCCL_SUM, stream.ptr)

    def broadcast_(self, array: np.ndarray) -> np.ndarray:
        """Overwrites a contiguous host array with rank 0's; returns it."""
        self.comm.Bcast(array, root=0)
        return array

    def broadcast_text(self, text: str) -> str:
        """Rank 0's text, on every rank."""
        return self.comm.bcast(text, root=0)

    def allgather_text(self, text: str) -> list[str]:
        """Every rank's text, in rank order, on every rank."""
        return self.comm.allgather(text)

    def abort(self, message: str, code: int = 1) -> None:
        """Prints one line naming this rank and ends every process of the job."""
        print(f"minigan: rank {self.rank} of {self.size}: {message}", file=sys.stderr, flush=True)
        self.comm.Abort(code)

    def select_device(self) -> None:
        """One GPU per process on each machine: device `local_rank` (before any allocation)."""
        cupy = import_cupy()
        cupy.cuda.Device(self.local_rank % cupy.cuda.runtime.getDeviceCount()).use()


@contextlib.contextmanager
def abort_on_error(comm: "Communicator | None", consistent: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Inside the block, an exception that only some ranks may see (anything but the
    `consistent` ones, which every rank raises at the same step) ends the whole job with
    one line naming the rank, rather than leaving the others waiting in an all-reduce."""
    try:
        yield
    except consistent:
        raise
    except BaseException as error:
        if comm is None:
            raise
        comm.abort(f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)
        raise


def agree(comm: "Communicator | None", action: Any) -> Any:
    """Runs `action()` on every rank; if it raises on any, raises on all: DistributedError
    naming the first rank that failed and its message (the exception itself on a single
    process). For setup work (reading files, building models) that may fail on some ranks."""
    if comm is None:
        return action()
    try:
        result, failure = action(), ""
    except Exception as error:  # reported on every rank below
        result, failure = None, str(error) or type(error).__name__
    failures = comm.allgather_text(failure)
    for rank, message in enumerate(failures):
        if message:
            prefix = "" if all(failures) and len(set(failures)) == 1 else f"rank {rank}: "
            raise DistributedError(prefix + message)
    return result


def rows_of(batch: Any, rank: int, ranks: int) -> Any:
    """This rank's rows of a global batch (N, ...): rows [rank * N / ranks, (rank + 1) * N / ranks)."""
    count = batch.shape[0]
    if count % ranks:
        raise ValueError(f"the global batch of {count} examples cannot be split evenly over {ranks} processes; "
                         f"choose a --batch-size divisible by {ranks}")
    share = count // ranks
    return batch[rank * share:(rank + 1) * share]


class DataParallel:
    """A model family (`minigan.Trainable`) trained on one of `comm.size` processes.

    Construction checks that every rank holds the same `record` (configuration) and
    minigan version, then broadcasts rank 0's parameters, buffers, optimizer state, step
    count and random state, so that every rank starts from rank 0's model.

    Args:
        model: the model family instance, built identically on every rank.
        comm: the communicator.
        record: a JSON-serialisable description that must agree across ranks.
        sync_bn: BatchNorm normalises with the statistics of the global batch (its batch
            sums are all-reduced); otherwise each rank uses its own rows' statistics and
            the running statistics are averaged over the ranks after every step.
    """

    def __init__(self, model: Any, comm: Communicator, record: dict[str, Any], sync_bn: bool = False):
        self.model, self.comm, self.sync_bn = model, comm, sync_bn
        check_same_configuration(comm, {"minigan": __version__, **record})
        self.broadcast_state()
        for optimizer in model.optimizers.values():
            optimizer.gradient_hook = self.average_
        for network in model.models.values():
            for layer in network.walk_layers():
                if isinstance(layer, BatchNorm):
                    layer.reduce_sums = self.comm.allreduce_sum_ if sync_bn else None

    def average_(self, array: Any) -> None:
        """Replaces a flat buffer by its mean over the ranks (in place)."""
        self.comm.allreduce_sum_(array)
        array /= self.comm.size

    def broadcast_state(self) -> None:
        """Every rank takes rank 0's state: arrays, step count and random state."""
        model = self.model
        state = model.state_dict()  # host copies, same names and shapes on every rank
        for name in sorted(state):
            state[name] = self.comm.broadcast_(np.array(state[name], order="C"))  # 0-d stays 0-d
        model.load_state_dict(state)
        meta = json.loads(self.comm.broadcast_text(json.dumps(
            {"steps": model.steps, "rng_state": model.backend.rng_state()})))
        model.steps = meta["steps"]
        model.backend.set_rng_state(meta["rng_state"])

    def train_step(self, batch: Any | Sequence[Any], stop: bool = False) -> tuple[dict[str, float], bool]:
        """One training step of the model on this rank's rows of the global batch (or
        batches) and of the global noise.

        Args:
            batch: the global batch (N, ...), or a list of them, as `train_step` takes.
            stop: this rank was asked to stop (Ctrl-C, a signal).

        Returns:
            (stats, stop): the step's statistics averaged over the ranks, which equal one
            process's on the global batch, and whether any rank asked to stop.
        """
        rank, ranks = self.comm.rank, self.comm.size
        local = [rows_of(b, rank, ranks) for b in batch] if isinstance(batch, list) else rows_of(batch, rank, ranks)
        with self.model.backend.sharded(rank, ranks):
            stats = self.model.train_step(local)
        if not self.sync_bn:
            for network in self.model.models.values():
                if network.buffers.size:
                    self.average_(network.buffers)
        values = np.array([*stats.values(), float(stop)], dtype=np.float64)
        self.comm.allreduce_sum_(values)
        values /= ranks
        return {name: float(value) for name, value in zip(stats, values)}, bool(values[-1] > 0)


def check_same_configuration(comm: Communicator, record: dict[str, Any]) -> None:
    """DistributedError on every rank unless all ranks hold the same `record`, naming
    the first rank that differs and each key where it differs from rank 0."""
    texts = comm.allgather_text(json.dumps(record, sort_keys=True, default=str))
    reference = json.loads(texts[0])
    for rank, text in enumerate(texts[1:], start=1):
        if text != texts[0]:
            other = json.loads(text)
            keys = sorted(key for key in set(reference) | set(other) if reference.get(key) != other.get(key))
            differences = ", ".join(f"{key}={other.get(key)!r} (rank 0: {reference.get(key)!r})" for key in keys)
            raise DistributedError(f"the processes disagree: rank {rank} has {differences}; "
                                   f"start every rank with the same command and minigan version")


def blas_threads_per_rank(comm: Communicator, requested: int | None) -> int:
    """BLAS threads for one rank: the cores this process may use, shared among the ranks on
    this machine unless the launcher already bound each rank to its own cores, and at
    most `requested`."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    bound = cores < (os.cpu_count() or cores)
    share = cores if bound else max(1, cores // comm.local_size)
    return share if requested is None else max(1, min(requested, share))
