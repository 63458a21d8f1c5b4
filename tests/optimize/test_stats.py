"""The statistics behind the recommendation: t quantiles, paired log-ratio intervals."""

import math
import random

import pytest

from greenlm.optimize.results import NO_DIFFERENCE, SAVES, TOO_FEW_ROUNDS, Comparison
from greenlm.optimize.stats import paired_ratio, per_variant_confidence, round_spread, t_cdf, t_quantile

# two-sided 95 % and 99 % critical values from the standard tables
TABLE = {1: (12.706, 63.657), 2: (4.303, 9.925), 4: (2.776, 4.604), 9: (2.262, 3.250), 29: (2.045, 2.756)}


@pytest.mark.parametrize("df", sorted(TABLE))
def test_t_quantiles_match_the_tables(df):
    t95, t99 = TABLE[df]
    assert t_quantile(0.975, df) == pytest.approx(t95, abs=1e-3)
    assert t_quantile(0.995, df) == pytest.approx(t99, abs=1e-3)
    assert t_quantile(0.025, df) == pytest.approx(-t95, abs=1e-3)


def test_t_cdf_agrees_with_scipy_everywhere():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 4, 5, 7, 10, 19, 40):
        for t in (-8.0, -2.5, -0.3, 0.0, 0.7, 1.96, 4.0, 30.0):
            assert t_cdf(t, df) == pytest.approx(stats.t.cdf(t, df), abs=1e-10)
        for p in (0.9, 0.975, 0.99875, 0.9996875):
            assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-7)


def test_a_constant_ratio_is_recovered_exactly_with_a_zero_width_interval():
    base = [10.0, 12.0, 9.0, 11.0]
    est = paired_ratio([b * 0.5 for b in base], base, 0.95)
    assert est.ratio == pytest.approx(0.5)
    assert est.low == pytest.approx(0.5) and est.high == pytest.approx(0.5)
    assert est.saving == pytest.approx(0.5) and est.significant_saving


def test_pairing_by_round_cancels_a_drift_shared_by_all_variants():
    # the machine gets 3x busier over the run; the variant always costs 0.8 of the baseline
    # in the same round, with 2 % noise: the paired interval is tight around 0.8
    rng = random.Random(1)
    load = [1.0, 1.5, 2.0, 2.5, 3.0]
    base = [100 * x * (1 + rng.gauss(0, 0.02)) for x in load]
    var = [80 * x * (1 + rng.gauss(0, 0.02)) for x in load]
    est = paired_ratio(var, base, 0.95)
    assert 0.74 < est.low < 0.8 < est.high < 0.86
    # unpaired, the same numbers would say nothing: the load swamps the 20 % saving
    assert max(var) > min(base) * 2


def test_one_round_gives_no_interval_and_no_verdict():
    c = Comparison.paired([5.0], [10.0], comparisons=1, confidence=0.95, metric="energy_j_per_1k")
    assert c.low is None and c.high is None and c.verdict == TOO_FEW_ROUNDS
    assert not c.significant_saving


def test_rounds_without_energy_are_left_out():
    est = paired_ratio([0.0, 5.0, 5.0], [10.0, 0.0, 10.0], 0.95)
    assert est.rounds == 1 and est.ratio == pytest.approx(0.5)


def test_bonferroni_widens_each_interval_with_more_variants():
    assert per_variant_confidence(0.95, 1) == pytest.approx(0.95)
    assert per_variant_confidence(0.95, 10) == pytest.approx(0.995)
    rng = random.Random(2)
    base = [10 + rng.random() for _ in range(6)]
    var = [b * (0.9 + 0.05 * rng.random()) for b in base]
    one = paired_ratio(var, base, per_variant_confidence(0.95, 1))
    ten = paired_ratio(var, base, per_variant_confidence(0.95, 10))
    assert ten.low < one.low < one.ratio < one.high < ten.high


def test_a_saving_below_the_margin_is_no_significant_difference():
    base = [10.0, 10.5, 9.8, 10.2, 10.1]
    c = Comparison.paired(
        [b * 0.99 for b in base], base, comparisons=1, confidence=0.95, metric="energy_j_per_1k", min_saving=0.02
    )
    assert c.saving == pytest.approx(0.01) and c.saving_low > 0  # real but tiny
    assert c.verdict == NO_DIFFERENCE
    c = Comparison.paired(
        [b * 0.9 for b in base], base, comparisons=1, confidence=0.95, metric="energy_j_per_1k", min_saving=0.02
    )
    assert c.verdict == SAVES


def test_round_spread_reports_scatter_and_trend():
    cv, trend = round_spread([10.0, 10.0, 10.0, 10.0])
    assert cv == 0 and trend == 0
    cv, trend = round_spread([10.0, 11.0, 12.0, 13.0])
    assert trend == pytest.approx(3.0 / 11.5) and cv > 0.05
    assert round_spread([5.0]) == (None, None)
    assert math.isfinite(round_spread([1.0, 2.0])[0])
