"""The window's state without threads or clocks: marks, phases, steps, thinning, forecast."""

from __future__ import annotations

import tracemalloc

import pytest

from greenlm.tracking.forecast import PREFIX_POINTS, StepForecaster, forecast_total
from greenlm.tracking.window import Window


def _linear(w: Window, until_s: float, dt: float = 0.1, power_w: float = 100.0, start_s: float = 0.0) -> None:
    t = start_s
    while t < until_s - 1e-12:
        t = round(t + dt, 9)
        w.add_sample(t, [power_w * t])


def test_a_mark_gets_the_interpolated_energy_at_the_next_sample():
    w = Window(["gpu"])
    m = w.mark(0.05)
    assert m.energy_j is None
    w.add_sample(0.1, [10.0])
    assert m.energy_j == pytest.approx(5.0)


def test_phases_fold_into_one_aggregate_per_path():
    w = Window(["gpu"])
    for i in range(1000):
        w.enter(i, "train", i * 0.1)
        w.add_steps(1, [w.open_phases[i]], None)
        w.leave(i, i * 0.1 + 0.05)
        w.add_sample((i + 1) * 0.1, [100.0 * (i + 1) * 0.1])
    (train,) = w.phases(g_per_j=0.0)
    assert train.entries == 1000 and train.steps == 1000
    assert train.energy_j == pytest.approx(1000 * 5.0)
    assert train.duration_s == pytest.approx(50.0)
    assert not w._ended and not w._marks, "nothing is kept per entry once resolved"


def test_a_phase_still_open_at_the_end_is_closed_at_the_stop_time():
    w = Window(["gpu"])
    w.enter(1, "train", 0.0)
    w.enter(2, "train/forward", 0.5)
    _linear(w, 2.0)
    assert sorted(w.close_open_phases(2.0)) == ["train", "train/forward"]
    w.resolve_all()
    got = {p.path: p for p in w.phases(0.0)}
    assert got["train"].energy_j == pytest.approx(200.0)
    assert got["train/forward"].energy_j == pytest.approx(150.0)


def test_thinning_keeps_memory_bounded_and_energy_exact_at_kept_samples():
    w = Window(["gpu"], history_samples=1000)
    _linear(w, 500.0, dt=0.1)  # 5,000 samples into a 1,000-sample history
    assert len(w.times) <= 1000
    assert w.energy_j == pytest.approx(50_000.0)
    for t in (1.0, 123.4, 499.9):
        assert w.energy_at(t) == pytest.approx(100.0 * t, rel=1e-9)  # linear power: exact anywhere
    pts = w.timeline(points=50)
    assert len(pts) <= 51 and all(p.power_w["gpu"] == pytest.approx(100.0) for p in pts)


def test_phase_memory_does_not_grow_with_steps():
    w = Window(["gpu"])

    def work(n: int, t0: float) -> float:
        t = t0
        for _ in range(n):
            for k, path in enumerate(("train", "train/forward", "train/backward", "train/optimizer")):
                w.enter(k, path, t)
                w.leave(k, t + 0.001)
            w.add_steps(1, [], t)
            t += 0.004
            w.add_sample(t, [t * 100.0])
        return t

    t = work(2_000, 0.0)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    work(20_000, t)
    grew = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    # the sample history grows (bounded by HISTORY_SAMPLES, 8 bytes a number); phases and
    # steps must not: 20,000 steps through 4 phases once cost ~200 bytes per entry (16 MB)
    assert grew < 20_000 * 3 * 8 * 1.5 + 100_000, grew


def test_forecaster_steps_in_groups_equal_single_steps():
    a, b = StepForecaster(warmup_steps=2), StepForecaster(warmup_steps=2)
    energies = [5.0, 4.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0]
    for e in energies:
        a.add(e, 0.1)
    b.add(5.0, 0.1)
    b.add(4.0, 0.1)
    b.add(1.0, 0.1, count=3)
    b.add(2.0, 0.1, count=4)
    fa, fb = a.forecast(20), b.forecast(20)
    assert fa.energy_j == pytest.approx(fb.energy_j) and fa.low_j == pytest.approx(fb.low_j)
    assert fa.high_j == pytest.approx(fb.high_j)
    assert fa == forecast_total(energies, 20, warmup_steps=2, step_times_s=[0.1] * len(energies))


def test_forecaster_memory_is_bounded_and_stays_accurate_past_the_bound():
    fc = StepForecaster(warmup_steps=0)
    n = PREFIX_POINTS * 4 + 123
    for i in range(n):
        fc.add(1.0 + (i % 7) * 0.1)
    assert len(fc._steady_prefix_j) <= PREFIX_POINTS + 1
    got = fc.forecast(2 * n)
    mean = sum(1.0 + (i % 7) * 0.1 for i in range(n)) / n
    assert got.energy_j == pytest.approx(n * mean * 2, rel=1e-9)
    assert got.low_j <= got.energy_j <= got.high_j
