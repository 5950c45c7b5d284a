"""Fair timing for the benchmarks against PyTorch: what runs before each timed block, which
side goes first in each round, and how a side's rounds are summarised.

Two implementations timed one right after the other on a CPU do not see the same machine:
the second inherits the first one's spinning BLAS / OpenMP threads and its state of the
caches (PyTorch ran 20-25% slower right after OpenBLAS work in the same process). So every
timed block of either side is
  1. a pause (`PAUSE_S`), in which the other side's idle threads stop spinning;
  2. at least one untimed step of the same side, which wakes its own threads and caches;
  3. the timed steps, one clock reading around each;
and the sides take turns going first: in round r they run in `round_order(sides, r)`,
(a, b), (b, a), (a, b), ... A side's per-round values become a `Summary`: the median,
the min-max spread, and the medians of the rounds in which it went first and second, so
that an order effect shows instead of hiding in the median.

The MLP step (`minigan bench`), the DCGAN step and the VAE comparison all time through
this module, each side in its own process or not. The clock and the sleep are parameters,
so the order and the counting are tested without timing anything.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Sequence, TypeVar

from ..run.arguments import positive

PAUSE_S = 0.3  # idle time before every timed block

Result = TypeVar("Result")
Cell = TypeVar("Cell", bound=Hashable)


def timed_block(step: Callable[[], Any], repeats: int, untimed: int = 1, pause_s: float = PAUSE_S,
                synchronize: Callable[[], None] = lambda: None, untimed_s: float = 0.0,
                clock: Callable[[], float] = time.perf_counter,
                sleep: Callable[[float], None] = time.sleep) -> list[float]:
    """Milliseconds of each of `repeats` calls of step(), after a pause of `pause_s` seconds
    and at least `untimed` untimed calls (and, when `untimed` > 0, at least `untimed_s`
    seconds of them). `synchronize` runs after every call (a GPU's queue), inside the timing.
    """
    if pause_s > 0:
        sleep(pause_s)
    start, calls = clock(), 0
    while calls < untimed or (calls and clock() - start < untimed_s):
        step()
        synchronize()
        calls += 1
    times = []
    for _ in range(repeats):
        start = clock()
        step()
        synchronize()
        times.append((clock() - start) * 1000.0)
    return times


def median_ms(step: Callable[[], Any], synchronize: Callable[[], None], repeats: int, warmup: int,
              warmup_s: float = 0.0) -> float:
    """Median ms of step() over `repeats` calls after `warmup` untimed calls (and `warmup_s`
    seconds of them), with no pause: for pieces of one side's work, such as a matrix product."""
    return statistics.median(timed_block(step, repeats, warmup, 0.0, synchronize, warmup_s))


def round_order(sides: Sequence[str], round_index: int) -> list[str]:
    """The order in which `sides` run in round `round_index`: rotated by the round, so with
    two sides each one goes first in every other round."""
    shift = round_index % len(sides)
    return [*sides[shift:], *sides[:shift]]


@dataclass(frozen=True)
class Run:
    """One side's measurement in one round of one cell."""

    result: Any
    first: bool      # the side went first in this cell and round
    round_index: int


def alternate(cells: Sequence[Cell], sides: Sequence[str], rounds: int,
              measure: Callable[[Cell, str], Result],
              after_round: Callable[[int], None] = lambda round_index: None) -> dict[tuple[Cell, str], list[Run]]:
    """Runs measure(cell, side) for every cell and side, `rounds` times over the whole grid:
    in round r every cell runs its sides in `round_order(sides, r)`. A slow spell of a
    shared machine therefore hits every side of a cell, and no side always goes first.

    `measure` is expected to time through `timed_block` (a pause and an untimed step first).
    `after_round(r)` is called when round r is done (progress).

    Returns:
        {(cell, side): [Run(result, went first?, round), one per round]}.
    """
    runs: dict[tuple[Cell, str], list[Run]] = {(cell, side): [] for cell in cells for side in sides}
    for round_index in range(rounds):
        for cell in cells:
            for position, side in enumerate(round_order(sides, round_index)):
                runs[cell, side].append(Run(measure(cell, side), position == 0, round_index))
        after_round(round_index)
    return runs


@dataclass(frozen=True)
class Summary:
    """A side's per-round values: median, spread (min, max), and the medians of the rounds in
    which it went first and in which it did not (None when there were no such rounds)."""

    median: float
    low: float
    high: float
    when_first: float | None
    when_second: float | None

    @classmethod
    def of(cls, values: Sequence[float], firsts: Sequence[bool]) -> "Summary":
        """The summary of per-round `values`; firsts[i] says whether round i went first."""
        if not values or len(values) != len(firsts):
            raise ValueError(f"need one 'went first' flag per value, got {len(values)} values "
                             f"and {len(firsts)} flags")
        first = [value for value, went_first in zip(values, firsts) if went_first]
        second = [value for value, went_first in zip(values, firsts) if not went_first]
        return cls(statistics.median(values), min(values), max(values),
                   statistics.median(first) if first else None, statistics.median(second) if second else None)

    @classmethod
    def of_runs(cls, runs: Sequence[Run], value: Callable[[Any], float] = float) -> "Summary":
        """The summary of `value(run.result)` over the rounds of one side of one cell."""
        return cls.of([value(run.result) for run in runs], [run.first for run in runs])

    def spread(self, digits: int = 2) -> str:
        """"low-high", e.g. "3.05-3.30"."""
        return f"{self.low:.{digits}f}-{self.high:.{digits}f}"

    def by_order(self, digits: int = 2) -> str:
        """"first / second" medians, e.g. "3.10 / 3.21" (n/a for an order that never ran)."""
        return " / ".join("n/a" if value is None else f"{value:.{digits}f}"
                          for value in (self.when_first, self.when_second))

    def as_dict(self) -> dict[str, float | None]:
        return {"median": self.median, "low": self.low, "high": self.high,
                "when_first": self.when_first, "when_second": self.when_second}


def add_round_arguments(parser: Any, rounds: int, batch_sizes: Sequence[int] = (64, 256)) -> None:
    """--batch-sizes, --rounds (default `rounds`) and --repeats (default 10): the grid and the
    rounds of a benchmark whose sides take turns (`alternate`)."""
    parser.add_argument("--batch-sizes", type=positive, nargs="+", default=list(batch_sizes))
    parser.add_argument("--rounds", type=positive, default=rounds, help="rounds alternating which side goes first")
    parser.add_argument("--repeats", type=positive, default=10, help="timed steps per side and round")
