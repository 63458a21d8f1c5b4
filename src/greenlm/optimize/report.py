"""Writing an optimize report: JSON, CSV, the Pareto plot, a terminal table.

The HTML report (``greenlm report --optimize DIR``) reads ``optimize.json`` from here.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from greenlm.optimize.techniques import one_off_energy_facts
from greenlm.optimize.results import OptimizeReport, VariantResult

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


def _fmt(x: float | None, spec: str = ".3g") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return format(x, spec)


def summary_rows(report: OptimizeReport) -> list[list[str]]:
    """Rows for a table: variant, energy, ratio, latency, size, quality, drop, notes."""
    per_token = report.task == "causal-lm"
    base = report.variant(report.baseline)
    e_base = base.energy(per_token)
    rows = []
    for v in report.variants:
        if v.skipped:
            rows.append([v.name, "-", "-", "-", "-", "-", "-", f"skipped: {v.skipped_reason}"])
            continue
        e = v.energy(per_token)
        ratio = e_base / e if e_base and e else None
        note = ""
        trained = " and ".join(what for fact, what in one_off_energy_facts().items() if fact in v.facts)
        if v.facts.get("payback_inferences") is not None:
            note = f"pays back its {trained} energy after {v.facts['payback_inferences']:,.0f} inferences"
        elif trained:
            note = f"never pays back its {trained} energy"
        if report.recommendation and v.name == report.recommendation.variant:
            note = ("recommended; " + note).rstrip("; ")
        rows.append(
            [
                v.name,
                _fmt(e),
                _fmt(ratio, ".2f") + "x",
                _fmt(v.latency_p50_ms, ".2f"),
                _fmt(v.size_mb, ".1f"),
                f"{v.quality.metric}={_fmt(v.quality.value, '.4g')}" if v.quality else "-",
                _fmt(v.quality_drop, "+.4f"),
                note,
            ]
        )
    return rows


def headers(report: OptimizeReport) -> list[str]:
    unit = "J/token" if report.task == "causal-lm" else "J/1k inf"
    return ["variant", unit, "saving", "p50 ms", "size MB", "quality", "drop", "notes"]


def recommendation_text(report: OptimizeReport) -> str:
    r = report.recommendation
    if r is None:
        return "No recommendation: the baseline could not be measured."
    if r.variant == report.baseline:
        return f"Keep the baseline: {r.reason} (max quality drop {report.max_quality_drop:g})."
    return (
        f"Recommended: {r.variant}: {r.energy_ratio:.2f}x less energy "
        f"({r.energy_metric}), quality drop {r.quality_drop:+.4f} "
        f"(budget {report.max_quality_drop:g}). Per million inferences it saves "
        f"{r.kwh_saved_per_million:.3g} kWh and {r.co2e_g_saved_per_million:.3g} g CO2e in "
        f"{r.location} ({r.intensity_g_per_kwh:g} g/kWh, PUE {r.pue:g})."
    )


def render(report: OptimizeReport, console: Any) -> None:
    """Print the table and the recommendation with rich."""
    from rich.table import Table

    table = Table(title=f"greenlm optimize: {report.model} ({report.task}, {report.device})")
    for h in headers(report):
        table.add_column(h, overflow="fold")
    for row in summary_rows(report):
        table.add_row(*row)
    console.print(table)
    console.print(recommendation_text(report))
    for w in report.warnings:
        console.print(f"[yellow]note:[/yellow] {w}")
