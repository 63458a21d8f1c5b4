import random

import pytest

from greenlm.errors import ConfigError
from greenlm.estimate import forecast_total


def test_steady_steps_extrapolate_exactly():
    f = forecast_total([100.0] * 10, total_steps=1000, warmup_steps=0)
    assert f.energy_j == pytest.approx(100_000)
    assert f.low_j == pytest.approx(100_000) and f.high_j == pytest.approx(100_000)
    assert f.fraction_done == pytest.approx(0.01)


def test_warmup_is_excluded_from_the_rate_but_counted_as_spent():
    steps = [5000.0, 100.0, 100.0, 100.0, 100.0]  # compile step, then steady
    f = forecast_total(steps, total_steps=1000, warmup_steps=1)
    assert f.energy_j == pytest.approx(5000 + 999 * 100)
    naive = sum(steps) / len(steps) * 1000
    assert f.energy_j < naive / 5


def test_band_covers_the_true_total_for_noisy_steps():
    rng = random.Random(7)
    all_steps = [rng.gauss(100.0, 10.0) for _ in range(2000)]
    f = forecast_total(all_steps[:50], total_steps=2000, warmup_steps=0)
    truth = sum(all_steps)
    assert f.low_j <= truth <= f.high_j
    assert f.low_j < f.energy_j < f.high_j
    assert (f.high_j - f.low_j) / f.energy_j < 0.2


def test_a_drift_widens_the_band():
    flat = forecast_total([100.0, 101.0] * 10, total_steps=1000, warmup_steps=0)
    rising = forecast_total([100.0 + i for i in range(20)], total_steps=1000, warmup_steps=0)
    assert (rising.high_j - rising.low_j) > 2 * (flat.high_j - flat.low_j)


def test_complete_run_collapses_to_the_measurement():
    f = forecast_total([1.0, 2.0, 3.0], total_steps=3, warmup_steps=1)
    assert f.energy_j == f.low_j == f.high_j == pytest.approx(6.0)


def test_duration_forecast_when_step_times_given():
    f = forecast_total([10.0] * 4, total_steps=8, warmup_steps=0, step_times_s=[0.5] * 4)
    assert f.duration_s == pytest.approx(4.0)
    with pytest.raises(ConfigError, match="one duration per completed step"):
        forecast_total([10.0] * 4, total_steps=8, step_times_s=[0.5] * 3)


@pytest.mark.parametrize(
    ("steps", "total", "warm", "match"),
    [
        ([1.0, 1.0], 10, 1, "at least 2 steps after"),
        ([1.0] * 5, 3, 0, "total_steps"),
        ([1.0, -1.0, 1.0], 10, 0, "step_energies_j"),
        ([1.0, float("nan"), 1.0], 10, 0, "finite"),
    ],
)
def test_bad_forecast_inputs(steps, total, warm, match):
    with pytest.raises(ConfigError, match=match):
        forecast_total(steps, total_steps=total, warmup_steps=warm)


def _reference(steps: list[float], total: int, warm: int, times: list[float]) -> dict[str, float]:
    """The forecast written out directly from its definition (module docstring)."""
    import math
    import statistics

    steady = steps[warm:]
    n, remaining, spent = len(steady), total - len(steps), math.fsum(steps)
    mean, sd = statistics.fmean(steady), statistics.stdev(steady)
    central = spent + remaining * mean
    spread = 2.0 * math.sqrt(remaining**2 * sd**2 / n + remaining * sd**2)
    halves = (statistics.fmean(steady[: n // 2]), statistics.fmean(steady[n // 2 :]))
    return {
        "energy_j": central,
        "low_j": max(spent, min(central - spread, spent + remaining * min(halves))),
        "high_j": max(central + spread, spent + remaining * max(halves)),
        "duration_s": math.fsum(times) + remaining * statistics.fmean(times[warm:]),
    }


@pytest.mark.parametrize("seed", range(5))
def test_incremental_forecast_matches_the_definition_at_every_step(seed: int) -> None:
    import random

    from greenlm.estimate.forecast import StepForecaster

    rng = random.Random(seed)
    warm = rng.randint(0, 3)
    steps = [rng.uniform(50, 150) * (1 + 0.002 * i) for i in range(300)]  # noisy, drifting
    times = [rng.uniform(0.1, 0.3) for _ in steps]
    fc = StepForecaster(warm)
    for k, (e, t) in enumerate(zip(steps, times), start=1):
        fc.add(e, t)
        if k >= warm + 2 and k % 37 == 0:
            got = fc.forecast(1000).to_dict()
            want = _reference(steps[:k], 1000, warm, times[:k])
            for key, value in want.items():
                assert got[key] == pytest.approx(value, rel=1e-9), (key, k)
