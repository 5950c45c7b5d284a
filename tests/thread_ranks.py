"""K ranks in one process: a `minigan.distributed.Communicator` stand-in whose ranks are
threads, so that `DataParallel` can be tested in-process on every backend, quickly, and
without MPI. Its sums add the ranks' arrays in rank order, so every rank gets the same
bits, as an MPI all-reduce gives them."""
from __future__ import annotations

import threading
from typing import Any, Callable


class ThreadRanks:
    """The shared state of `size` thread ranks."""

    def __init__(self, size: int):
        self.size = size
        self.barrier = threading.Barrier(size, timeout=60)
        self.slots: list[Any] = [None] * size

    def exchange(self, rank: int, value: Any) -> list[Any]:
        """Every rank's value, in rank order, on every rank."""
        self.slots[rank] = value
        self.barrier.wait()
        values = list(self.slots)
        self.barrier.wait()
        return values

    def run(self, work: Callable[["ThreadCommunicator"], Any]) -> list[Any]:
        """Runs work(comm) on every rank in its own thread; returns the results in rank
        order, or re-raises the first rank's exception."""
        results: list[Any] = [None] * self.size
        errors: list[BaseException | None] = [None] * self.size

        def target(rank: int) -> None:
            try:
                results[rank] = work(ThreadCommunicator(self, rank))
            except BaseException as error:  # re-raised in the caller's thread
                errors[rank] = error
                self.barrier.abort()

        threads = [threading.Thread(target=target, args=(rank,)) for rank in range(self.size)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for error in errors:
            if error is not None and not isinstance(error, threading.BrokenBarrierError):
                raise error
        return results


class ThreadCommunicator:
    """One thread rank's view, with `Communicator`'s interface."""

    def __init__(self, ranks: ThreadRanks, rank: int):
        self.ranks, self.rank, self.size = ranks, rank, ranks.size
        self.local_rank, self.local_size = rank, ranks.size
        self.allreduce_seconds = 0.0
        self.allreduce_calls = 0

    def allreduce_sum_(self, array: Any) -> Any:
        self.allreduce_calls += 1
        values = self.ranks.exchange(self.rank, array.copy())
        total = values[0].copy()
        for value in values[1:]:
            total += value
        array[...] = total
        return array

    def broadcast_(self, array: Any) -> Any:
        array[...] = self.ranks.exchange(self.rank, array.copy())[0]
        return array

    def broadcast_text(self, text: str) -> str:
        return self.ranks.exchange(self.rank, text)[0]

    def allgather_text(self, text: str) -> list[str]:
        return self.ranks.exchange(self.rank, text)

    def abort(self, message: str, code: int = 1) -> None:
        raise RuntimeError(f"abort from rank {self.rank}: {message}")
