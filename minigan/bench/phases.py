"""Where one GAN training step spends its time: a per-phase profile of `GAN.train_step`.

It times the real step, not a copy of it. While `phase_profile` runs, the step's parts are
wrapped on the instances (the GAN's networks, its objective and its two optimizers) by
timers that add their time to a phase; leaving restores the classes' methods. A call inside
another timed call (e.g. an objective's per-half terms inside its `discriminator`) counts
for the outer one only. "other" is the step's time outside every phase: the noise draw, the
[real; fake] concatenation, packing, reading the statistics, Python itself.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any, Callable, Iterator

from .timing import PAUSE_S, timed_block

# In the order a step runs them; "D backward (G step)" is D's input gradient only (no parameter gradients).
PHASES = ("G forward", "D forward", "loss", "D backward", "D optimizer", "D backward (G step)",
          "G backward", "G optimizer", "other")


def _d_backward_phase(args: tuple, kwargs: dict[str, Any]) -> str:
    return "D backward" if kwargs.get("param_grads", True) else "D backward (G step)"


def _timed_parts(gan: Any) -> list[tuple[Any, str, str | Callable[[tuple, dict], str]]]:
    """(owner, method name, phase or a function of the call's arguments giving the phase)."""
    objective = gan.objective
    return [(gan.generator, "forward", "G forward"), (gan.generator, "backward", "G backward"),
            (gan.discriminator, "forward", "D forward"), (gan.discriminator, "backward", _d_backward_phase),
            *((objective, name, "loss") for name in ("discriminator", "discriminator_real",
                                                     "discriminator_fake", "generator")),
            (gan.d_opt, "step", "D optimizer"), (gan.g_opt, "step", "G optimizer")]


@contextlib.contextmanager
def timing_phases(gan: Any, spent: dict[str, float], synchronize: Callable[[], None] = lambda: None,
                  clock: Callable[[], float] = time.perf_counter) -> Iterator[None]:
    """Inside the block, every phase of `gan`'s steps adds its seconds to spent[phase]."""
    depth = [0]  # timed calls in progress: only the outermost one counts

    def timer(method: Callable[..., Any], phase: str | Callable[[tuple, dict], str]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if depth[0]:
                return method(*args, **kwargs)
            depth[0] += 1
            start = clock()
            try:
                return method(*args, **kwargs)
            finally:
                synchronize()
                name = phase(args, kwargs) if callable(phase) else phase
                spent[name] = spent.get(name, 0.0) + clock() - start
                depth[0] -= 1
        return timed

    parts = _timed_parts(gan)
    for owner, name, phase in parts:
        setattr(owner, name, timer(getattr(owner, name), phase))
    try:
        yield
    finally:
        for owner, name, _ in parts:
            vars(owner).pop(name, None)


def phase_profile(gan: Any, real: Any, repeats: int, untimed: int = 1,
                  synchronize: Callable[[], None] = lambda: None, pause_s: float = PAUSE_S) -> dict[str, float]:
    """Median ms of each phase (`PHASES`) over `repeats` steps of gan.train_step(real), after a
    pause and `untimed` untimed steps; "step" is the median of the whole step. Each median is
    taken on its own, so the phases need not add up to "step" exactly."""
    spent: dict[str, float] = {}
    per_step: list[dict[str, float]] = []

    def step() -> None:
        spent.clear()
        gan.train_step(real)
        per_step.append(dict(spent))

    with timing_phases(gan, spent, synchronize):
        totals = timed_block(step, repeats, untimed, pause_s, synchronize)
    timed_steps = per_step[-repeats:]
    profile = {phase: statistics.median(1000.0 * spent.get(phase, 0.0) for spent in timed_steps)
               for phase in PHASES[:-1]}
    profile["other"] = statistics.median(total - 1000.0 * sum(spent.values())
                                         for total, spent in zip(totals, timed_steps))
    profile["step"] = statistics.median(totals)
    return profile
