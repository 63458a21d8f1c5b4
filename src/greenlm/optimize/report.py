"""Writing an optimize report: JSON, CSV, the Pareto plot, a terminal table.

The HTML report (``greenlm report --optimize DIR``) reads ``optimize.json`` from here.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from greenlm import humanize
from greenlm.optimize.results import Comparison, OptimizeReport, VariantResult
from greenlm.optimize.techniques import one_off_energy_facts

CSV_COLUMNS = (
    "name",
    "technique",
    "energy_j_per_1k",
    "energy_j_per_token",
    "latency_p50_ms",
    "latency_p95_ms",
    "throughput_per_s",
    "peak_memory_mb",
    "size_mb",
    "parameter_count",
    "quality_metric",
    "quality",
    "fidelity_metric",
    "fidelity",
    "quality_drop",
    "provenance",
    "repeats",
    "energy_j_per_1k_min",
    "energy_j_per_1k_max",
    "saving",
    "saving_low",
    "saving_high",
    "verdict",
    "skipped_reason",
    "description",
)


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity: write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def to_json(report: OptimizeReport) -> str:
    """The stable ``--json`` object."""
    return json.dumps(_clean(report.to_dict()), indent=2, sort_keys=False)


def _row(v: VariantResult) -> dict[str, Any]:
    return {
        "name": v.name,
        "technique": v.technique,
        "energy_j_per_1k": v.energy_j_per_1k,
        "energy_j_per_token": v.energy_j_per_token,
        "latency_p50_ms": v.latency_p50_ms,
        "latency_p95_ms": v.latency_p95_ms,
        "throughput_per_s": v.throughput_per_s,
        "peak_memory_mb": v.peak_memory_mb,
        "size_mb": v.size_mb,
        "parameter_count": v.parameter_count,
        "quality_metric": v.quality.metric if v.quality else None,
        "quality": v.quality.value if v.quality else None,
        "fidelity_metric": v.fidelity.metric if v.fidelity else None,
        "fidelity": v.fidelity.value if v.fidelity else None,
        "quality_drop": v.quality_drop,
        "provenance": v.provenance,
        "repeats": v.repeats,
        "energy_j_per_1k_min": v.spread.get("energy_j_per_1k_min"),
        "energy_j_per_1k_max": v.spread.get("energy_j_per_1k_max"),
        "saving": v.vs_baseline.saving if v.vs_baseline else None,
        "saving_low": v.vs_baseline.saving_low if v.vs_baseline else None,
        "saving_high": v.vs_baseline.saving_high if v.vs_baseline else None,
        "verdict": v.vs_baseline.verdict if v.vs_baseline else None,
        "skipped_reason": v.skipped_reason,
        "description": v.description,
    }


def write_report(report: OptimizeReport, directory: Path) -> dict[str, Path]:
    """Write ``optimize.json``, ``optimize.csv`` and ``pareto.png`` into ``directory``."""
    from greenlm.optimize.pareto import plot_pareto

    directory.mkdir(parents=True, exist_ok=True)
    paths = {"json": directory / "optimize.json", "csv": directory / "optimize.csv", "png": directory / "pareto.png"}
    paths["json"].write_text(to_json(report) + "\n", encoding="utf-8")
    with paths["csv"].open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for v in report.variants:
            w.writerow(_row(v))
    base = report.variant(report.baseline)
    plot_pareto(
        report.variants,
        paths["png"],
        per_token=report.task == "causal-lm",
        quality_metric=base.quality.metric if base.quality else "quality",
        recommended=report.recommendation.variant if report.recommendation else None,
        title=f"{report.model} ({report.task}): energy vs quality",
    )
    return paths


def _energy_scale(report: OptimizeReport) -> tuple[str, float]:
    """One unit for every energy of the table (the unit of the largest), and its size in J."""
    per_token = report.task == "causal-lm"
    unit = humanize.energy_unit([v.energy(per_token) for v in report.variants if not v.skipped])
    return unit, dict(humanize.ENERGY_UNITS)[unit]


#: Savings below this (a cost of 10x the baseline) are written as "<-999 %": an interval
#: from two rounds can reach -10^20 %, which no one needs to read.
_LOWEST_SAVING = -9.99


def _pct(fraction: float, digits: int = 2) -> str:
    if fraction < _LOWEST_SAVING:
        return "<-999"
    return humanize.sig(fraction * 100, digits)


def saving_cell(c: Comparison | None) -> str:
    """``74 % [72, 77]``: the saving and its interval, in percent (2 significant figures)."""
    if c is None:
        return "-"
    point = _pct(c.saving) + " %"
    if c.saving_low is None or c.saving_high is None:
        return f"{point} [1 round]"
    return f"{point} [{_pct(c.saving_low)}, {_pct(c.saving_high)}]"


def saving_interval_text(c: Comparison) -> str:
    """``saving 74.1 % (72.0 % to 77.3 %)`` or ``saving 3.12 % (no interval: one round)``."""
    point = _pct(c.saving, 3) + " %"
    if c.saving_low is None or c.saving_high is None:
        return f"saving {point} (no interval: one round)"
    return f"saving {point} ({_pct(c.saving_low, 3)} % to {_pct(c.saving_high, 3)} %)"


def _signed(x: float | None, digits: int = 3) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    if x == 0:
        return "0"
    return ("+" if x > 0 else "") + humanize.sig(x, digits)


def _drop(x: float | None) -> str:
    """A quality drop: four decimals below 1 (``+0.0027``), three significant figures above."""
    if x is None or not math.isfinite(x):
        return "-"
    if abs(x) >= 1:
        return _signed(x)
    return f"{x:+.4f}"


def headers(report: OptimizeReport) -> list[str]:
    """Short column names: the table fits 80 columns; the details are in the JSON."""
    unit, _ = _energy_scale(report)
    per = "tok" if report.task == "causal-lm" else "1k"
    return ["variant", f"{unit}/{per}", "saving [interval]", "quality", "Δq"]


def summary_rows(report: OptimizeReport) -> list[list[str]]:
    """Rows for the table: variant (``*`` = recommended), energy, saving, quality, quality drop."""
    per_token = report.task == "causal-lm"
    _, size = _energy_scale(report)
    rec = report.recommendation.variant if report.recommendation else None
    rows = []
    for v in report.variants:
        name = v.name + (" *" if v.name == rec else "")
        if v.skipped:
            rows.append([name, "skipped", "-", "-", "-"])
            continue
        e = v.energy(per_token)
        q = v.quality.value if v.quality else None
        rows.append(
            [
                name,
                humanize.sig(e / size) if e is not None else "-",
                "-" if v.name == report.baseline else saving_cell(v.vs_baseline),
                humanize.sig(q) if q is not None else "-",
                "-" if v.name == report.baseline else _drop(v.quality_drop),
            ]
        )
    return rows


def notes(report: OptimizeReport) -> list[str]:
    """The lines under the table: what the columns mean, skipped variants, one-off energies."""
    base = report.variant(report.baseline)
    per_token = report.task == "causal-lm"
    unit, _ = _energy_scale(report)
    comparisons = [v.vs_baseline for v in report.variants if v.vs_baseline is not None]
    metric = base.quality.metric if base.quality else "quality"
    rounds = max((c.rounds for c in comparisons), default=0)
    conf = comparisons[0].family_confidence if comparisons else None
    what = "per generated token" if per_token else "per 1,000 inferences"
    lines = [
        f"{unit}/{'tok' if per_token else '1k'}: energy {what} (median of {rounds} rounds). saving: 1 - variant/"
        f"baseline energy, paired by round"
        + (f", {humanize.percent(conf, 2)} family-wise interval" if conf is not None else "")
        + f". quality: {metric}; Δq: quality drop (budget {report.max_quality_drop:g}). * recommended."
    ]
    facts = one_off_energy_facts()
    for v in report.variants:
        if v.skipped:
            lines.append(f"{v.name}: skipped: {v.skipped_reason}")
            continue
        spent = [(what, v.facts[fact]) for fact, what in facts.items() if v.facts.get(fact) is not None]
        if not spent:
            continue
        cost = " and ".join(f"{what} {humanize.energy(j)}" for what, j in spent)
        paid = v.facts.get("payback_inferences")
        if paid is None:
            lines.append(f"{v.name}: never pays back its {cost}")
        else:
            lines.append(f"{v.name}: pays back its {cost} after {humanize.count(round(paid))} inferences")
    return lines


def recommendation_text(report: OptimizeReport) -> str:
    r = report.recommendation
    if r is None:
        return "No recommendation: the baseline could not be measured."
    if r.variant == report.baseline:
        return f"Keep the baseline: {r.reason}."
    ratio = f"{humanize.sig(r.energy_ratio)}x less energy"
    if r.energy_ratio_low is not None and r.energy_ratio_high is not None:
        ratio += f" ({humanize.sig(r.energy_ratio_low)}x to {humanize.sig(r.energy_ratio_high)}x)"
    text = (
        f"Recommended: {r.variant}: {ratio} per "
        f"{'generated token' if r.energy_metric == 'energy_j_per_token' else 'inference'}, "
        f"quality drop {humanize.sig(r.quality_drop)} (budget {report.max_quality_drop:g})"
    )
    if r.confidence is not None:
        text += f"; {humanize.percent(r.confidence, 2)} family-wise interval over {r.rounds} interleaved rounds"
    kwh_j = r.kwh_saved_per_million * 3.6e6
    text += f". Per million inferences it saves {humanize.energy(kwh_j)}"
    if r.kwh_saved_per_million_low is not None and r.kwh_saved_per_million_high is not None:
        text += (
            f" ({humanize.energy(r.kwh_saved_per_million_low * 3.6e6)} to "
            f"{humanize.energy(r.kwh_saved_per_million_high * 3.6e6)})"
        )
    text += (
        f" and {humanize.co2e(r.co2e_g_saved_per_million)} in {r.location} "
        f"({humanize.sig(r.intensity_g_per_kwh)} g/kWh, PUE {humanize.sig(r.pue)})."
    )
    if r.alternatives:
        text += f" Saving as much within noise: {', '.join(r.alternatives)}."
    return text


def render(report: OptimizeReport, console: Any) -> None:
    """Print the table, the notes and the recommendation with rich (80 columns suffice)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=Text(f"greenlm optimize: {report.model} ({report.task}, {report.device})"),
        box=box.SIMPLE_HEAD,
        show_edge=False,
        collapse_padding=True,
    )
    rows = summary_rows(report)
    for i, h in enumerate(headers(report)):
        # only the variant column may wrap (long stacked names fold); numbers never split
        table.add_column(Text(h), justify="left" if i == 0 else "right", overflow="fold", no_wrap=i > 0)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    console.print(table)
    console.print()
    for line in notes(report):
        console.print(Text(line))
    console.print(Text(recommendation_text(report)))
    for w in report.warnings:
        console.print(Text.assemble(("note:", "yellow"), " ", w))
