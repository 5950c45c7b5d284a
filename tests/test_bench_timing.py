"""The fair-timing helper (minigan.bench.timing) and the per-phase profile
(minigan.bench.phases) on a fake clock and fake steps: what runs before a timed block, who
goes first in which round, how the rounds are summarised. No real timings are asserted."""
import itertools

import numpy as np
import pytest
from hypothesis import given, strategies as st

import minigan as mg
from minigan.bench import timing
from minigan.bench.phases import PHASES, phase_profile, timing_phases


class FakeClock:
    """A clock that only moves when told to; sleep() moves it and is logged."""

    def __init__(self):
        self.now = 0.0
        self.log: list[str] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.log.append(f"pause {seconds}")
        self.now += seconds


def test_a_block_pauses_then_runs_untimed_steps_then_times_each_step():
    clock = FakeClock()
    durations = iter([5.0, 5.0, 0.001, 0.002, 0.004])  # two untimed steps, three timed ones

    def step():
        clock.log.append("step")
        clock.now += next(durations)

    times = timing.timed_block(step, repeats=3, untimed=2, pause_s=0.3, clock=clock, sleep=clock.sleep)
    assert clock.log == ["pause 0.3", "step", "step", "step", "step", "step"]
    assert times == pytest.approx([1.0, 2.0, 4.0])


def test_untimed_steps_last_at_least_the_asked_time_but_only_when_asked_for():
    clock = FakeClock()
    calls = []

    def step():
        calls.append(1)
        clock.now += 0.125

    timing.timed_block(step, repeats=3, untimed=2, pause_s=0, untimed_s=0.5, clock=clock, sleep=clock.sleep)
    assert len(calls) == 4 + 3 and clock.log == []  # 0.5 s of 0.125 s steps, then the timed ones; no pause
    calls.clear()
    timing.timed_block(step, repeats=3, untimed=0, pause_s=0, untimed_s=0.5, clock=clock, sleep=clock.sleep)
    assert len(calls) == 3


def test_synchronize_runs_inside_the_timing_of_every_step():
    clock = FakeClock()
    log = []
    times = timing.timed_block(lambda: log.append("step"), repeats=2, untimed=1, pause_s=0,
                               synchronize=lambda: (log.append("sync"), setattr(clock, "now", clock.now + 0.5)),
                               clock=clock, sleep=clock.sleep)
    assert log == ["step", "sync"] * 3 and times == pytest.approx([500.0, 500.0])


@given(sides=st.lists(st.text(min_size=1), min_size=1, max_size=4, unique=True), rounds=st.integers(1, 9))
def test_every_side_runs_once_a_round_and_goes_first_in_turn(sides, rounds):
    orders = [timing.round_order(sides, r) for r in range(rounds)]
    assert all(sorted(order) == sorted(sides) for order in orders)
    firsts = [order[0] for order in orders]
    assert firsts == [sides[r % len(sides)] for r in range(rounds)]
    for side in sides:  # no side goes first more than once more than any other
        assert rounds // len(sides) <= firsts.count(side) <= -(-rounds // len(sides))


def test_two_sides_alternate_and_every_cell_sees_both_orders():
    calls = []

    def measure(cell, side):
        calls.append((cell, side))
        return len(calls)

    done = []
    runs = timing.alternate(["small", "large"], ["minigan", "torch"], 3, measure, after_round=done.append)
    assert calls == [("small", "minigan"), ("small", "torch"), ("large", "minigan"), ("large", "torch"),
                     ("small", "torch"), ("small", "minigan"), ("large", "torch"), ("large", "minigan"),
                     ("small", "minigan"), ("small", "torch"), ("large", "minigan"), ("large", "torch")]
    assert done == [0, 1, 2]
    assert [(run.result, run.first, run.round_index) for run in runs["large", "torch"]] == \
        [(4, False, 0), (7, True, 1), (12, False, 2)]
    assert [run.first for run in runs["small", "minigan"]] == [True, False, True]


def test_summary_splits_the_rounds_by_order():
    summary = timing.Summary.of([3.0, 10.0, 4.0, 2.0], [True, False, True, False])
    assert (summary.median, summary.low, summary.high) == (3.5, 2.0, 10.0)
    assert (summary.when_first, summary.when_second) == (3.5, 6.0)
    assert summary.spread() == "2.00-10.00" and summary.by_order(1) == "3.5 / 6.0"
    only_first = timing.Summary.of([1.0], [True])
    assert only_first.when_second is None and only_first.by_order() == "1.00 / n/a"
    with pytest.raises(ValueError, match="one 'went first' flag per value"):
        timing.Summary.of([1.0, 2.0], [True])


def test_summary_of_runs_reads_the_value_out_of_each_result():
    runs = [timing.Run((5.0, 1.0), True, 0), timing.Run((7.0, 2.0), False, 1)]
    assert timing.Summary.of_runs(runs, lambda result: result[1]).as_dict() == \
        {"median": 1.5, "low": 1.0, "high": 2.0, "when_first": 1.0, "when_second": 2.0}


def test_median_ms_does_not_pause(monkeypatch):
    monkeypatch.setattr(timing.time, "sleep", lambda seconds: pytest.fail("paused"))
    assert timing.median_ms(lambda: None, lambda: None, repeats=3, warmup=1) >= 0


def small_gan(loss="non_saturating"):
    backend = mg.get_backend("numpy", "float32", seed=0)
    G = mg.Sequential([mg.Dense(3, 8), mg.ReLU(), mg.Dense(8, 5)], backend=backend)
    D = mg.Sequential([mg.Dense(5, 8), mg.LeakyReLU(0.2), mg.Dense(8, 1)], backend=backend)
    return mg.GAN(G, D, loss=loss), np.random.default_rng(0).random((4, 5), dtype=np.float32)


@pytest.mark.parametrize("loss", ["non_saturating", "lsgan"])
def test_every_phase_is_timed_once_per_call_and_the_methods_come_back(loss):
    gan, real = small_gan(loss)
    ticks = itertools.count()
    spent = {}
    with timing_phases(gan, spent, clock=lambda: float(next(ticks))):
        gan.train_step(real)
    # a fake clock that ticks once per reading: each outermost timed call lasts exactly 1
    assert spent == {"G forward": 1, "D forward": 2, "loss": 2, "D backward": 1, "D optimizer": 1,
                     "D backward (G step)": 1, "G backward": 1, "G optimizer": 1}
    for owner in (gan.generator, gan.discriminator, gan.objective, gan.d_opt, gan.g_opt):
        assert not {"forward", "backward", "step", "discriminator", "generator"} & set(vars(owner))


def test_the_profile_names_every_phase_and_the_step_matches_an_unprofiled_one():
    gan, real = small_gan()
    twin, _ = small_gan()
    profile = phase_profile(gan, real, repeats=3, untimed=1, pause_s=0)
    assert list(profile) == [*PHASES, "step"] and all(value >= 0 or phase == "other"
                                                      for phase, value in profile.items())
    for _ in range(4):  # the profile's untimed step and its three timed ones
        twin.train_step(real)
    assert gan.train_step(real) == twin.train_step(real)  # profiling changed no number


def test_round_arguments_default_and_refuse_nonsense(capsys):
    import argparse
    from minigan.bench.timing import add_round_arguments
    parser = argparse.ArgumentParser()
    add_round_arguments(parser, rounds=3)
    args = parser.parse_args([])
    assert (args.batch_sizes, args.rounds, args.repeats) == ([64, 256], 3, 10)
    assert parser.parse_args(["--batch-sizes", "8", "16", "--repeats", "2"]).batch_sizes == [8, 16]
    for bad in (["--rounds", "0"], ["--batch-sizes", "-4"], ["--repeats", "two"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
        assert bad[0] in capsys.readouterr().err
