import pytest

from greenlm.carbon import CarbonConfig
from greenlm.optimize.pareto import pareto_front, plot_pareto, recommend
from greenlm.optimize.results import VariantResult
from greenlm.optimize.tasks import Score


def v(name, energy, drop, skipped=None):
    return VariantResult(
        name,
        name,
        {},
        energy_j_per_1k=energy,
        quality_drop=drop,
        quality=Score("accuracy", 1 - drop if drop is not None else None),
        skipped_reason=skipped,
    )


VARIANTS = [
    v("baseline", 100.0, 0.0),
    v("a", 60.0, 0.005),
    v("b", 30.0, 0.05),
    v("c", 80.0, 0.02),
    v("d", None, None, skipped="does not apply"),
]


def test_recommends_lowest_energy_within_budget():
    cfg = CarbonConfig.build(location="DEU")
    rec = recommend(VARIANTS, "baseline", 0.01, per_token=False, carbon=cfg)
    assert rec.variant == "a"
    assert rec.energy_ratio == pytest.approx(100 / 60)
    # 40 J per 1k inferences saved = 40,000 J per million
    assert rec.kwh_saved_per_million == pytest.approx(40_000 * cfg.pue.value / 3.6e6)
    assert rec.co2e_g_saved_per_million == pytest.approx(rec.kwh_saved_per_million * cfg.location.intensity_g_per_kwh)
    assert "b" in rec.reason  # cheaper but over budget, and said so


def test_a_larger_budget_picks_the_cheaper_variant():
    rec = recommend(VARIANTS, "baseline", 0.1, per_token=False, carbon=CarbonConfig.build("DEU"))
    assert rec.variant == "b"


def test_keeps_the_baseline_when_nothing_fits():
    rec = recommend(VARIANTS, "baseline", 0.001, per_token=False, carbon=CarbonConfig.build("DEU"))
    assert rec.variant == "baseline" and rec.energy_ratio == 1.0
    assert rec.co2e_g_saved_per_million == 0.0


def test_pareto_front_excludes_dominated_and_skipped():
    assert set(pareto_front(VARIANTS)) == {"baseline", "a", "b"}


def test_plot_is_written(tmp_path):
    out = plot_pareto(
        VARIANTS, tmp_path / "p.png", per_token=False, quality_metric="accuracy", recommended="a", title="t"
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
