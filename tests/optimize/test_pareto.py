import pytest

from greenlm.carbon import CarbonConfig
from greenlm.optimize.pareto import pareto_front, plot_pareto, recommend
from greenlm.optimize.results import Comparison, VariantResult
from greenlm.optimize.tasks import Score

BASE_ROUNDS = [100.0, 104.0, 97.0, 101.0, 99.0]


def v(name, fraction, drop, *, noise=0.0, skipped=None, technique=None, facts=None):
    """A variant whose per-round energy is ``fraction`` of the baseline's, +- ``noise`` alternating."""
    if skipped:
        return VariantResult(name, name, {}, skipped_reason=skipped)
    rounds = [b * fraction * (1 + (noise if i % 2 else -noise)) for i, b in enumerate(BASE_ROUNDS)]
    c = None
    if name != "baseline":
        c = Comparison.paired(
            rounds, BASE_ROUNDS, comparisons=5, confidence=0.95, metric="energy_j_per_1k", min_saving=0.02
        )
    return VariantResult(
        name,
        technique or name,
        {},
        energy_j_per_1k=sorted(rounds)[2],
        quality_drop=drop,
        quality=Score("accuracy", 1 - drop),
        vs_baseline=c,
        energy_by_round=tuple(rounds),
        facts=facts or {},
        repeats=5,
    )


VARIANTS = [
    v("baseline", 1.0, 0.0),
    v("a", 0.6, 0.005, noise=0.01),
    v("b", 0.3, 0.05, noise=0.01),
    v("c", 0.8, 0.02, noise=0.01),
    v("d", None, None, skipped="does not apply"),
]


def test_recommends_the_largest_significant_saving_within_budget():
    cfg = CarbonConfig.build(location="DEU")
    rec = recommend(VARIANTS, "baseline", 0.01, per_token=False, carbon=cfg)
    assert rec.variant == "a" and rec.significant
    a = VARIANTS[1].vs_baseline
    assert rec.energy_ratio == pytest.approx(1 / a.ratio)
    assert rec.energy_ratio_low < rec.energy_ratio < rec.energy_ratio_high
    assert rec.saving_low < rec.saving < rec.saving_high
    assert rec.saving == pytest.approx(0.4, abs=0.01)
    # the baseline's 100 J per 1k inferences x the paired saving, per million inferences
    assert rec.kwh_saved_per_million == pytest.approx(100 * a.saving * 1000 * cfg.pue.value / 3.6e6)
    assert rec.kwh_saved_per_million_low < rec.kwh_saved_per_million < rec.kwh_saved_per_million_high
    assert rec.co2e_g_saved_per_million == pytest.approx(rec.kwh_saved_per_million * cfg.location.intensity_g_per_kwh)
    assert "b" in rec.reason  # cheaper but over budget, and said so


def test_a_larger_budget_picks_the_cheaper_variant():
    rec = recommend(VARIANTS, "baseline", 0.1, per_token=False, carbon=CarbonConfig.build("DEU"))
    assert rec.variant == "b"


def test_keeps_the_baseline_when_nothing_fits():
    rec = recommend(VARIANTS, "baseline", 0.001, per_token=False, carbon=CarbonConfig.build("DEU"))
    assert rec.variant == "baseline" and rec.energy_ratio == 1.0 and not rec.significant
    assert rec.co2e_g_saved_per_million == 0.0


def test_a_saving_within_noise_is_no_significant_difference():
    noisy = [v("baseline", 1.0, 0.0), v("lucky", 0.9, 0.0, noise=0.3)]
    assert noisy[1].energy_j_per_1k < noisy[0].energy_j_per_1k  # cheaper on its median...
    rec = recommend(noisy, "baseline", 0.01, per_token=False, carbon=CarbonConfig.build("DEU"))
    assert rec.variant == "baseline"  # ...but not beyond noise
    assert rec.reason.startswith("no significant difference") and "lucky" in rec.reason


def test_equals_within_noise_go_to_the_simplest():
    # "fast+compile" looks 2 % cheaper than "fast", within the intervals' overlap, and costs
    # a one-off compile: "fast" is recommended, "fast+compile" named as saving as much
    variants = [
        v("baseline", 1.0, 0.0),
        v("fast", 0.50, 0.0, noise=0.03),
        v("fast+compile", 0.49, 0.0, noise=0.03, technique="fast+compile", facts={"compile_energy_j": 5.0}),
    ]
    assert variants[2].vs_baseline.ratio < variants[1].vs_baseline.ratio
    rec = recommend(variants, "baseline", 0.01, per_token=False, carbon=CarbonConfig.build("DEU"))
    assert rec.variant == "fast" and rec.alternatives == ("fast+compile",)


def test_a_clearly_better_variant_wins_over_a_simpler_one():
    variants = [
        v("baseline", 1.0, 0.0),
        v("fast", 0.50, 0.0, noise=0.01),
        v("fast+compile", 0.30, 0.0, noise=0.01, technique="fast+compile", facts={"compile_energy_j": 5.0}),
    ]
    rec = recommend(variants, "baseline", 0.01, per_token=False, carbon=CarbonConfig.build("DEU"))
    assert rec.variant == "fast+compile" and rec.alternatives == ()


def test_pareto_front_excludes_dominated_and_skipped():
    assert set(pareto_front(VARIANTS)) == {"baseline", "a", "b"}


def test_plot_is_written(tmp_path):
    out = plot_pareto(
        VARIANTS, tmp_path / "p.png", per_token=False, quality_metric="accuracy", recommended="a", title="t"
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_among_equally_simple_equals_quality_decides_only_beyond_a_tenth_of_the_budget():
    variants = [
        v("baseline", 1.0, 0.0),
        v("w8", 0.64, -0.0009, noise=0.12),
        v("w4", 0.44, 0.0010, noise=0.12),
    ]
    w8, w4 = variants[1].vs_baseline, variants[2].vs_baseline
    assert w8.verdict == w4.verdict == "saves" and w8.low <= w4.high  # equals within noise
    carbon = CarbonConfig.build("DEU")
    # budget 0.05: a 0.002 difference in perplexity rise is nothing; the larger saving wins
    assert recommend(variants, "baseline", 0.05, per_token=False, carbon=carbon).variant == "w4"
    # budget 0.005: the same difference is more than a tenth of it; the more faithful wins
    assert recommend(variants, "baseline", 0.005, per_token=False, carbon=carbon).variant == "w8"
