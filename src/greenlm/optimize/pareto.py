"""Pareto front of energy against quality, the recommendation, and its plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from greenlm.optimize.results import Recommendation, VariantResult

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


def recommend(
    variants: Sequence[VariantResult], baseline: str, max_quality_drop: float, *, per_token: bool, carbon: CarbonConfig
) -> Recommendation | None:
    """The lowest-energy variant whose quality drop is within ``max_quality_drop``.

    The baseline is always eligible, so when nothing beats it the recommendation is to keep
    it. Savings per million inferences are turned into facility kWh and CO2e with
    ``carbon`` (a :class:`greenlm.carbon.CarbonConfig`).
    """
    from greenlm.carbon import account

    base = next((v for v in variants if v.name == baseline), None)
    if base is None or not _usable(base, per_token):
        return None
    eligible = [v for v in variants if _usable(v, per_token) and (v.quality_drop or 0.0) <= max_quality_drop + 1e-12]
    best = min(eligible, key=lambda v: (v.energy(per_token), v.name != baseline))
    e_base = base.energy(per_token)
    e_best = best.energy(per_token)
    assert e_base is not None and e_best is not None
    ratio = e_base / e_best if e_best > 0 else float("inf")
    saved_j_per_million = ((base.energy_j_per_1k or 0.0) - (best.energy_j_per_1k or 0.0)) * 1000
    fp = account(saved_j_per_million, carbon)
    loc = carbon.location
    pue = carbon.pue.value
    rejected = [
        v.name
        for v in variants
        if _usable(v, per_token)
        and (v.energy(per_token) or 0.0) < e_best
        and (v.quality_drop or 0.0) > max_quality_drop
    ]
    metric = "energy_j_per_token" if per_token else "energy_j_per_1k"
    if best.name == baseline:
        reason = "no variant uses less energy within the quality budget: keep the baseline"
    else:
        reason = f"lowest {metric} among variants losing at most {max_quality_drop:g} quality"
    if rejected:
        reason += f"; cheaper but over budget: {', '.join(rejected)}"
    return Recommendation(
        variant=best.name,
        energy_ratio=ratio,
        quality_drop=best.quality_drop or 0.0,
        kwh_saved_per_million=fp.energy_kwh,
        co2e_g_saved_per_million=fp.co2e_g,
        energy_metric=metric,
        location=loc.code,
        intensity_g_per_kwh=loc.intensity_g_per_kwh,
        pue=pue,
        reason=reason,
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
