"""Pareto front of energy against quality, the recommendation (significant savings only), and its plot."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from greenlm.optimize.results import Comparison, Recommendation, VariantResult

if TYPE_CHECKING:
    from greenlm.carbon import CarbonConfig


def _usable(v: VariantResult, per_token: bool) -> bool:
    return not v.skipped and v.energy(per_token) is not None and v.quality_drop is not None


def pareto_front(variants: Sequence[VariantResult], per_token: bool = False) -> list[str]:
    """Names of variants no other variant beats on both energy and quality drop."""
    pts = [v for v in variants if _usable(v, per_token)]
    front = []
    for v in pts:
        ev, qv = v.energy(per_token), v.quality_drop
        assert ev is not None and qv is not None
        dominated = False
        for w in pts:
            ew, qw = w.energy(per_token), w.quality_drop
            assert ew is not None and qw is not None
            if w is not v and ew <= ev and qw <= qv and (ew < ev or qw < qv):
                dominated = True
                break
        if not dominated:
            front.append(v.name)
    return front


def _overlap(a: Comparison, b: Comparison) -> bool:
    a_lo, a_hi = (a.low, a.high) if a.low is not None and a.high is not None else (a.ratio, a.ratio)
    b_lo, b_hi = (b.low, b.high) if b.low is not None and b.high is not None else (b.ratio, b.ratio)
    return a_lo <= b_hi and b_lo <= a_hi


def _simplest_first(max_quality_drop: float) -> Callable[[VariantResult], tuple[bool, int, float, float, str]]:
    """The order among variants that save as much within noise: no one-off energy (training,
    compiling) first, then fewer steps, then the smaller quality drop in steps of a tenth of
    the budget (closer than that counts as equal), then the larger estimated saving.
    """
    from greenlm.optimize.techniques import one_off_energy_j

    step = max_quality_drop / 10.0

    def key(v: VariantResult) -> tuple[bool, int, float, float, str]:
        assert v.vs_baseline is not None
        drop = v.quality_drop or 0.0
        return (
            one_off_energy_j(v.facts) is not None,
            v.technique.count("+") + 1,
            round(drop / step) if step > 0 else drop,
            v.vs_baseline.ratio,
            v.name,
        )

    return key


def recommend(
    variants: Sequence[VariantResult], baseline: str, max_quality_drop: float, *, per_token: bool, carbon: CarbonConfig
) -> Recommendation | None:
    """The variant to use, or the baseline when none saves energy beyond noise.

    Eligible: variants whose quality drop is within ``max_quality_drop`` and whose saving is
    significant (their paired interval against the baseline lies wholly below "no change",
    see :mod:`greenlm.optimize.stats`). Of those, the largest saving wins; variants whose
    intervals overlap its interval save as much within noise, and the simplest of them is
    recommended (no one-off energy, fewest steps, a smaller quality drop by more than a tenth
    of the budget, then the larger estimated saving), so that noise cannot flip the answer
    between equals. Savings per million inferences are turned into
    facility kWh and CO2e with ``carbon`` (a :class:`greenlm.carbon.CarbonConfig`).
    """
    from greenlm.carbon import account
    from greenlm.optimize.report import saving_interval_text

    base = next((v for v in variants if v.name == baseline), None)
    if base is None or not _usable(base, per_token):
        return None
    metric = "energy_j_per_token" if per_token else "energy_j_per_1k"
    loc = carbon.location
    budget = f"{max_quality_drop:g}"
    compared = [v for v in variants if v.name != baseline and _usable(v, per_token) and v.vs_baseline is not None]
    within = [v for v in compared if (v.quality_drop or 0.0) <= max_quality_drop + 1e-12]
    saving = [v for v in within if v.vs_baseline is not None and v.vs_baseline.significant_saving]
    over = [
        v
        for v in compared
        if (v.quality_drop or 0.0) > max_quality_drop + 1e-12 and v.vs_baseline and v.vs_baseline.significant_saving
    ]
    rounds = max((v.vs_baseline.rounds for v in compared if v.vs_baseline), default=base.repeats)
    confidence = next((v.vs_baseline.family_confidence for v in compared if v.vs_baseline), None)
    keep = Recommendation(
        variant=baseline,
        energy_ratio=1.0,
        quality_drop=0.0,
        kwh_saved_per_million=0.0,
        co2e_g_saved_per_million=0.0,
        energy_metric=metric,
        location=loc.code,
        intensity_g_per_kwh=loc.intensity_g_per_kwh,
        pue=carbon.pue.value,
        reason="",
        energy_ratio_low=1.0,
        energy_ratio_high=1.0,
        saving=0.0,
        saving_low=0.0,
        saving_high=0.0,
        significant=False,
        confidence=confidence,
        rounds=rounds,
    )
    if not saving:
        reason = (
            "no significant difference: no variant within the quality budget "
            f"({budget}) saves energy beyond this machine's noise"
        )
        closest = max(within, key=lambda v: v.vs_baseline.saving if v.vs_baseline else -math.inf, default=None)
        if closest is not None and closest.vs_baseline is not None:
            reason += f" (closest: {closest.name}, {saving_interval_text(closest.vs_baseline)})"
        if over:
            reason += f"; saving but over the quality budget: {', '.join(v.name for v in over)}"
        return dataclasses.replace(keep, reason=reason + ": keep the baseline")
    best = min(saving, key=lambda v: v.vs_baseline.ratio if v.vs_baseline else math.inf)
    assert best.vs_baseline is not None
    ties = [v for v in saving if v.vs_baseline is not None and _overlap(v.vs_baseline, best.vs_baseline)]
    chosen = min(ties, key=_simplest_first(max_quality_drop))
    c = chosen.vs_baseline
    assert c is not None
    reason = f"the largest significant saving within the quality budget ({budget}): {saving_interval_text(c)}"
    others = [v.name for v in ties if v is not chosen]
    if others:
        reason += (
            f"; {', '.join(others)} save as much within noise (overlapping intervals), and {chosen.name} is "
            "the simplest of them (no one-off energy, fewest steps, a smaller quality drop, then the larger estimate)"
        )
    cheaper_over = [v.name for v in over if v.vs_baseline is not None and v.vs_baseline.ratio < c.ratio]
    if cheaper_over:
        reason += f"; cheaper but over the quality budget: {', '.join(cheaper_over)}"

    def saved(fraction: float | None) -> tuple[float | None, float | None]:
        if fraction is None:
            return None, None
        fp = account((base.energy_j_per_1k or 0.0) * fraction * 1000, carbon)
        return fp.energy_kwh, fp.co2e_g

    kwh, co2e = saved(c.saving)
    kwh_lo, co2e_lo = saved(c.saving_low)
    kwh_hi, co2e_hi = saved(c.saving_high)
    return dataclasses.replace(
        keep,
        variant=chosen.name,
        energy_ratio=1.0 / c.ratio,
        quality_drop=chosen.quality_drop or 0.0,
        kwh_saved_per_million=kwh or 0.0,
        co2e_g_saved_per_million=co2e or 0.0,
        reason=reason,
        energy_ratio_low=None if c.high is None else 1.0 / c.high,
        energy_ratio_high=None if c.low is None else 1.0 / c.low,
        saving=c.saving,
        saving_low=c.saving_low,
        saving_high=c.saving_high,
        kwh_saved_per_million_low=kwh_lo,
        kwh_saved_per_million_high=kwh_hi,
        co2e_g_saved_per_million_low=co2e_lo,
        co2e_g_saved_per_million_high=co2e_hi,
        significant=True,
        alternatives=tuple(others),
    )


def plot_pareto(
    variants: Sequence[VariantResult],
    path: Path,
    *,
    per_token: bool,
    quality_metric: str,
    recommended: str | None,
    title: str,
) -> Path:
    """Energy (x) against quality (y) with the Pareto front drawn; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [v for v in variants if _usable(v, per_token) and v.quality is not None and v.quality.value is not None]
    xy = {
        v.name: (
            float(v.energy(per_token) or 0.0),
            float(v.quality.value if v.quality and v.quality.value is not None else 0.0),
        )
        for v in pts
    }
    front = set(pareto_front(variants, per_token))
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for v in pts:
        x, y = xy[v.name]
        on_front = v.name in front
        ax.scatter(
            [x],
            [y],
            s=60 if on_front else 30,
            marker="*" if v.name == recommended else "o",
            color="tab:green" if on_front else "tab:gray",
            zorder=3,
        )
        ax.annotate(v.name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    fr = sorted((v for v in pts if v.name in front), key=lambda v: v.energy(per_token) or 0.0)
    if len(fr) > 1:
        ax.plot(
            [xy[v.name][0] for v in fr],
            [xy[v.name][1] for v in fr],
            color="tab:green",
            lw=1,
            zorder=2,
            label="Pareto front",
        )
        ax.legend(loc="best", fontsize=8)
    ax.set_xlabel("energy per generated token (J)" if per_token else "energy per 1,000 inferences (J)")
    ax.set_ylabel(quality_metric + (" (lower is better)" if quality_metric == "perplexity" else " (higher is better)"))
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
