"""View models: greenlm's results turned into what a page shows, with provenance on every figure.

Shared by the dashboard (``greenlm.server``) and the self-contained HTML report
(``greenlm.report.html``), so a number reads the same in both. Run views take the store's
typed records (``StoredRun``, its ``RunResult``, a ``PowerTrace``); optimize and estimate
views take those commands' ``--json`` objects. They return plain dicts of display strings,
raw values (for tests and ``data-`` attributes) and chart specs; the templates escape every
string they print.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from greenlm.report import plots
from greenlm.report.equivalents import equivalents, fmt_count
from greenlm.report.summary import fmt_co2e_g, fmt_energy_j
from greenlm.store.records import PowerTrace, StoredRun
from greenlm.tracking.result import RunResult

J_PER_KWH = 3.6e6
PROVENANCE_HELP = {
    "counter": "read from a hardware energy counter (NVML total energy, RAPL)",
    "sampled": "power readings sampled and integrated over time",
    "modeled": "estimated from utilisation and a power model (see the band)",
}


def fmt_duration_s(s: float | None) -> str:
    """Seconds as s, min or h."""
    if s is None:
        return "-"
    if s < 120:
        return f"{s:.2f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def fmt_kwh(j: float | None) -> str:
    """Joules as kWh with 3 significant figures (the unit people pay for)."""
    if j is None:
        return "-"
    return f"{j / J_PER_KWH:.3g} kWh"


def fmt_money(x: float | None, currency: str | None) -> str:
    """A cost with its currency; tiny costs keep significant figures."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if x == 0:
        return f"0 {currency or ''}".strip()
    return (f"{x:,.2f}" if abs(x) >= 1 else f"{x:.3g}") + f" {currency or ''}".rstrip()


def band_text(lo: float | None, hi: float | None, fmt: Any) -> str:
    """``low - high`` with a formatter, or '' when there is no band."""
    if lo is None or hi is None:
        return ""
    return f"{fmt(lo)} - {fmt(hi)}"


def location_view(loc: Mapping[str, Any]) -> dict[str, Any]:
    """The grid location and intensity used, and where the intensity comes from."""
    return {
        "code": loc.get("code") or "-",
        "name": loc.get("name") or "",
        "intensity_g_per_kwh": loc.get("intensity_g_per_kwh"),
        "intensity_text": (
            f"{float(loc['intensity_g_per_kwh']):.4g} g CO2e/kWh" if loc.get("intensity_g_per_kwh") is not None else "-"
        ),
        "source": loc.get("source") or "unknown source",
        "year": loc.get("year"),
        "basis": loc.get("basis") or "",
        "license": loc.get("license") or "",
        "defaulted": bool(loc.get("defaulted")),
    }


def intensity_note(loc: Mapping[str, Any], short: bool = False) -> str:
    """One line: intensity, location, year, source (flags a defaulted world average)."""
    lv = location_view(loc)
    year = f" {lv['year']}" if lv["year"] else ""
    src = lv["source"].split(" (")[0][:100] if short else lv["source"]
    note = f"{lv['intensity_text']} for {lv['code']}{year} ({src})"
    if lv["defaulted"]:
        note += " - DEFAULTED to the world average: no location was given"
    return note


def figures(run: RunResult, partial: bool = False) -> list[dict[str, Any]]:
    """The headline figures of a run, each with its provenance and band."""
    flushed = " (up to the last flush: the run has not finished)" if partial else ""
    out = [
        {
            "key": "duration",
            "label": "Duration",
            "raw": run.duration_s,
            "text": fmt_duration_s(run.duration_s),
            "band": "",
            "provenance": "measured",
            "source": "wall clock of the tracking window" + flushed,
        },
        {
            "key": "energy",
            "label": "IT energy",
            "raw": run.energy_j,
            "text": fmt_energy_j(run.energy_j),
            "band": band_text(run.energy_low_j, run.energy_high_j, fmt_energy_j),
            "provenance": run.provenance,
            "source": PROVENANCE_HELP.get(run.provenance, "sum of the components below") + flushed,
        },
        {
            "key": "facility",
            "label": "Facility energy",
            "raw": run.facility_energy_j,
            "text": fmt_kwh(run.facility_energy_j),
            "band": "",
            "provenance": "modeled",
            "source": f"IT energy x PUE {run.pue} ({run.pue_source or 'no source recorded'})",
        },
        {
            "key": "co2e",
            "label": "CO2e (operational)",
            "raw": run.co2e_g,
            "text": fmt_co2e_g(run.co2e_g),
            "band": band_text(run.co2e_low_g, run.co2e_high_g, fmt_co2e_g),
            "provenance": "modeled",
            "source": "facility energy x " + intensity_note(run.location, short=True),
        },
        {
            "key": "cost",
            "label": "Electricity cost",
            "raw": run.cost,
            "text": fmt_money(run.cost, run.currency),
            "band": "",
            "provenance": "modeled",
            "source": f"{run.price_per_kwh:g} {run.currency}/kWh ({run.price_source or 'no source recorded'})",
        },
    ]
    return out


def component_rows(run: RunResult) -> list[dict[str, Any]]:
    """Per-component energy, share, provenance and band."""
    total = run.energy_j
    return [
        {
            "name": c.name,
            "kind": c.kind,
            "energy_j": c.energy_j,
            "energy_text": fmt_energy_j(c.energy_j),
            "share": f"{100 * c.energy_j / total:.1f} %" if total else "-",
            "provenance": c.provenance or "-",
            "band": band_text(c.low_j, c.high_j, fmt_energy_j),
            "scope": c.scope,
            "detail": c.detail,
        }
        for c in run.components
    ]


def phase_rows(run: RunResult) -> list[dict[str, Any]]:
    """Per-phase energy, duration, steps, energy per step and CO2e."""
    return [
        {
            "path": p.path,
            "energy_j": p.energy_j,
            "energy_text": fmt_energy_j(p.energy_j),
            "duration_text": fmt_duration_s(p.duration_s),
            "steps": p.steps,
            "per_step": fmt_energy_j(p.energy_j / p.steps) if p.steps else "-",
            "co2e_text": fmt_co2e_g(p.co2e_g),
        }
        for p in run.phases
    ]


def run_view(stored: StoredRun, trace: PowerTrace | None = None, prefix: str = "") -> dict[str, Any]:
    """Everything a run page shows; ``prefix`` keeps chart ids unique on a multi-run page.

    ``trace`` is the run's bounded power trace (``RunStore.power_trace``). A damaged run
    gives a view with ``damaged`` (the reason) and nothing to chart.
    """
    run = stored.result
    if run is None:
        return damaged_view(stored)
    trace = trace or PowerTrace(run.run_id, (), 0)
    kinds = {c.name: c.kind for c in run.components}
    provs = {c.name: c.provenance or "?" for c in run.components}
    charts = [
        plots.power_timeline(trace, kinds, chart_id=f"{prefix}power", provenance=provs),
        plots.energy_by_component(run.components, chart_id=f"{prefix}components"),
    ]
    if run.phases:
        charts.append(plots.energy_by_phase(run.phases, chart_id=f"{prefix}phases"))
    eq = equivalents(run.facility_energy_j, run.co2e_g)
    forecast = run.forecast
    return {
        "run": run,
        "damaged": None,
        "partial": stored.partial,
        "run_id": run.run_id,
        "project": run.project,
        "status": run.status,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "host": run.host,
        "provenance": run.provenance or "-",
        "figures": figures(run, partial=stored.partial),
        "components": component_rows(run),
        "phases": phase_rows(run),
        "location": location_view(run.location),
        "intensity_note": intensity_note(run.location),
        "pue": run.pue,
        "pue_source": run.pue_source,
        "equivalents": [{**e.to_dict(), "text": fmt_count(e.value)} for e in eq],
        "warnings": list(run.warnings),
        "metadata": sorted((str(k), _short(v)) for k, v in run.metadata.items()),
        "forecast": (
            {
                "text": f"{fmt_energy_j(forecast.get('energy_j'))} for {forecast.get('total_steps')} steps",
                "band": band_text(forecast.get("low_j"), forecast.get("high_j"), fmt_energy_j),
                "method": str(forecast.get("method") or ""),
            }
            if isinstance(forecast, Mapping)
            else None
        ),
        "error": run.error,
        "n_samples": trace.n_samples,
        "charts": charts,
    }


def damaged_view(stored: StoredRun) -> dict[str, Any]:
    """What a page shows of a run whose record cannot be read: its id, the reason, the row facts."""
    sal = stored.salvaged
    return {
        "run": None,
        "damaged": stored.damaged,
        "run_id": stored.run_id,
        "project": stored.project,
        "status": stored.status,
        "started_at": stored.started_at,
        "ended_at": sal.get("ended_at"),
        "host": stored.host,
        "salvaged": [
            (label, fmt(sal.get(key)))
            for key, label, fmt in (
                ("duration_s", "Duration", fmt_duration_s),
                ("energy_j", "IT energy (row)", fmt_energy_j),
                ("co2e_g", "CO2e (row)", fmt_co2e_g),
            )
        ],
        "warnings": [],
        "charts": [],
    }


def _short(v: Any, limit: int = 300) -> str:
    s = v if isinstance(v, str) else repr(v)
    return s if len(s) <= limit else s[:limit] + "..."


def compare_view(stored: Sequence[StoredRun]) -> dict[str, Any]:
    """Runs side by side: one column per run, one row per figure (damaged runs listed apart)."""
    runs = [s.result for s in stored if s.result is not None]
    rows: list[dict[str, Any]] = []

    def row(label: str, cells: list[str], raw: list[Any] | None = None) -> None:
        rows.append({"label": label, "cells": cells, "raw": raw or [None] * len(cells)})

    row("Project", [r.project for r in runs])
    row("Status", [r.status for r in runs])
    row("Started (UTC)", [r.started_at[:19] for r in runs])
    row("Duration", [fmt_duration_s(r.duration_s) for r in runs], [r.duration_s for r in runs])
    row("IT energy", [fmt_energy_j(r.energy_j) for r in runs], [r.energy_j for r in runs])
    row("IT energy band", [band_text(r.energy_low_j, r.energy_high_j, fmt_energy_j) or "-" for r in runs])
    row("Provenance", [r.provenance or "-" for r in runs])
    row("Facility energy", [fmt_kwh(r.facility_energy_j) for r in runs], [r.facility_energy_j for r in runs])
    row("PUE", [f"{r.pue} ({r.pue_source or '-'})" for r in runs])
    row("CO2e", [fmt_co2e_g(r.co2e_g) for r in runs], [r.co2e_g for r in runs])
    row("CO2e band", [band_text(r.co2e_low_g, r.co2e_high_g, fmt_co2e_g) or "-" for r in runs])
    row("Intensity", [intensity_note(r.location) for r in runs])
    row("Cost", [fmt_money(r.cost, r.currency) for r in runs], [r.cost for r in runs])
    names: list[str] = []
    for r in runs:
        for c in r.components:
            if c.name not in names:
                names.append(c.name)
    for n in names:
        cells = []
        for r in runs:
            hit = next((c for c in r.components if c.name == n), None)
            cells.append(f"{fmt_energy_j(hit.energy_j)} ({hit.provenance})" if hit else "-")
        row(f"  {n}", cells)
    base = runs[0].co2e_g if runs else 0.0
    row("CO2e vs first", [f"{r.co2e_g / base:.2f}x" if base else "-" for r in runs])
    return {
        "runs": runs,
        "rows": rows,
        "damaged": [(s.run_id, s.damaged) for s in stored if s.result is None],
        "charts": [plots.compare_components(runs), plots.compare_co2e(runs)],
    }


def runs_totals(stored: Sequence[StoredRun]) -> dict[str, Any]:
    """Totals over a list of runs (the runs page footer); damaged runs are counted apart."""
    runs = [s.result for s in stored if s.result is not None]
    e = sum(r.energy_j for r in runs)
    f = sum(r.facility_energy_j for r in runs)
    g = sum(r.co2e_g for r in runs)
    d = sum(r.duration_s for r in runs)
    currencies = {r.currency for r in runs}
    cost = sum(r.cost for r in runs) if len(currencies) == 1 else None
    return {
        "count": len(stored),
        "damaged": len(stored) - len(runs),
        "energy_j": e,
        "energy_text": fmt_energy_j(e),
        "facility_energy_j": f,
        "facility_text": fmt_kwh(f),
        "co2e_g": g,
        "co2e_text": fmt_co2e_g(g),
        "duration_text": fmt_duration_s(d),
        "cost_text": fmt_money(cost, next(iter(currencies))) if cost is not None else "-",
        "equivalents": [{**q.to_dict(), "text": fmt_count(q.value)} for q in equivalents(f, g)],
    }


def run_row(stored: StoredRun) -> dict[str, Any]:
    """One line of the runs table (a damaged run: its id, project and the reason)."""
    r = stored.result
    row: dict[str, Any] = {
        "run_id": stored.run_id,
        "short_id": stored.run_id[:12],
        "project": stored.project,
        "status": stored.status,
        "started": stored.started_at[:19].replace("T", " "),
        "host": stored.host,
        "damaged": stored.damaged,
        "partial": stored.partial,
    }
    if r is None:
        return {
            **row,
            "duration_text": "-",
            "energy_j": None,
            "energy_text": "-",
            "co2e_g": None,
            "co2e_text": "-",
            "location": "-",
            "defaulted": False,
            "provenance": "-",
            "cost_text": "-",
        }
    return {
        **row,
        "duration_text": fmt_duration_s(r.duration_s),
        "energy_j": r.energy_j,
        "energy_text": fmt_energy_j(r.energy_j),
        "co2e_g": r.co2e_g,
        "co2e_text": fmt_co2e_g(r.co2e_g),
        "location": r.location.get("code") or "-",
        "defaulted": bool(r.location.get("defaulted")),
        "provenance": r.provenance or "-",
        "cost_text": fmt_money(r.cost, r.currency),
    }


# --------------------------------------------------------------------------- optimize
def optimize_view(data: Mapping[str, Any]) -> dict[str, Any]:
    """The optimize ``--json`` object as a table, a Pareto chart and the recommendation.

    Numbers for people (greenlm.humanize): one energy unit for the whole table, savings as
    an interval from the paired rounds (``vs_baseline``), no raw floats.
    """
    from greenlm import humanize

    variants = list(data.get("variants") or [])
    baseline = data.get("baseline")
    per_token = data.get("task") == "causal-lm" and any(
        plots.finite(v.get("energy_j_per_token")) is not None for v in variants
    )
    key = "energy_j_per_token" if per_token else "energy_j_per_1k"
    unit = humanize.energy_unit([plots.finite(v.get(key)) for v in variants])
    base = next((v for v in variants if v.get("name") == baseline), None)
    base_e = plots.finite(base.get(key)) if base else None
    rec = data.get("recommendation") if isinstance(data.get("recommendation"), Mapping) else None
    recommended = rec.get("variant") if rec else None
    rows = []
    for v in variants:
        e = plots.finite(v.get(key))
        q = v.get("quality") if isinstance(v.get("quality"), Mapping) else {}
        f = v.get("fidelity") if isinstance(v.get("fidelity"), Mapping) else {}
        cmp = v.get("vs_baseline") if isinstance(v.get("vs_baseline"), Mapping) else None
        rows.append(
            {
                "name": v.get("name"),
                "technique": v.get("technique"),
                "energy": humanize.energy(e, unit) if e is not None else "-",
                "saving": _saving_text(cmp)
                if cmp
                else ("-" if v.get("name") == baseline else _legacy_ratio(base_e, e)),
                "verdict": (cmp or {}).get("verdict") or "",
                "latency": f"{_sig(v.get('latency_p50_ms'))} / {_sig(v.get('latency_p95_ms'))}",
                "throughput": _sig(v.get("throughput_per_s"), "/s"),
                "memory": _sig(v.get("peak_memory_mb"), " MB"),
                "size": _sig(v.get("size_mb"), " MB"),
                "quality": _sig(q.get("value")) if q else "-",
                "fidelity": _sig(f.get("value")) if f else "-",
                "quality_drop": _drop_text(v.get("quality_drop")),
                "provenance": v.get("provenance") or "-",
                "repeats": v.get("repeats"),
                "skipped": v.get("skipped_reason"),
                "is_baseline": v.get("name") == baseline,
                "is_recommended": v.get("name") == recommended,
            }
        )
    return {
        "model": data.get("model"),
        "task": data.get("task"),
        "baseline": baseline,
        "device": data.get("device"),
        "max_quality_drop": data.get("max_quality_drop"),
        "rows": rows,
        "recommendation": dict(rec) if rec else None,
        "recommendation_text": _recommendation_text(rec, baseline) if rec else "",
        "notes": dict(data.get("provenance_notes") or {}),
        "warnings": list(data.get("warnings") or []),
        "energy_key": key,
        "energy_header": f"{unit} / {'token' if per_token else '1k inferences'}",
        "quality_header": _metric(base, "quality"),
        "fidelity_header": _metric(base, "fidelity"),
        "charts": [plots.pareto(variants, baseline, energy_key=key)],
    }


def _metric(v: Mapping[str, Any] | None, key: str) -> str:
    score = v.get(key) if v else None
    return str(score.get("metric")) if isinstance(score, Mapping) and score.get("metric") else ""


def _sig(x: Any, unit: str = "") -> str:
    from greenlm import humanize

    v = plots.finite(x)
    return "-" if v is None else humanize.sig(v) + unit


def _drop_text(x: Any) -> str:
    v = plots.finite(x)
    if v is None:
        return "-"
    return f"{v:+.4f}" if abs(v) < 1 else ("+" if v > 0 else "") + _sig(v)


def _pct(fraction: Any) -> str:
    from greenlm import humanize

    v = plots.finite(fraction)
    if v is None:
        return "?"
    return "<-999 %" if v < -9.99 else humanize.percent(v, 2)


def _saving_text(cmp: Mapping[str, Any]) -> str:
    """``74 % [72, 77]``: the paired saving and its interval, in percent."""
    text = _pct(cmp.get("saving"))
    if plots.finite(cmp.get("saving_low")) is None or plots.finite(cmp.get("saving_high")) is None:
        return text + " (one round)"
    lo, hi = _pct(cmp.get("saving_low")), _pct(cmp.get("saving_high"))
    return f"{text} [{lo.removesuffix(' %')}, {hi.removesuffix(' %')}]"


def _legacy_ratio(base_e: float | None, e: float | None) -> str:
    """Results written before paired rounds have no interval: the plain ratio of medians."""
    from greenlm import humanize

    return f"{humanize.sig(base_e / e)}x less" if base_e and e else "-"


def _recommendation_text(rec: Mapping[str, Any], baseline: Any) -> str:
    """The recommendation in one sentence, numbers scaled for people."""
    from greenlm import humanize

    if rec.get("variant") == baseline:
        reason = str(rec.get("reason") or "keep the baseline")
        return reason[:1].upper() + reason[1:] + "."
    ratio = plots.finite(rec.get("energy_ratio"))
    lo, hi = plots.finite(rec.get("energy_ratio_low")), plots.finite(rec.get("energy_ratio_high"))
    text = f"{humanize.sig(ratio)}x less energy than the baseline" if ratio else "less energy than the baseline"
    if lo is not None and hi is not None:
        text += f" ({humanize.sig(lo)}x to {humanize.sig(hi)}x)"
    text += f", quality drop {_drop_text(rec.get('quality_drop'))}; saves "
    kwh = plots.finite(rec.get("kwh_saved_per_million"))
    text += humanize.energy(kwh * J_PER_KWH) if kwh is not None else "?"
    kwh_lo, kwh_hi = (
        plots.finite(rec.get("kwh_saved_per_million_low")),
        plots.finite(rec.get("kwh_saved_per_million_high")),
    )
    if kwh_lo is not None and kwh_hi is not None:
        text += f" ({humanize.energy(kwh_lo * J_PER_KWH)} to {humanize.energy(kwh_hi * J_PER_KWH)})"
    text += f" and {humanize.co2e(plots.finite(rec.get('co2e_g_saved_per_million')))} per million inferences"
    if rec.get("location"):
        text += f" in {rec.get('location')} ({_sig(rec.get('intensity_g_per_kwh'))} g/kWh, PUE {_sig(rec.get('pue'))})"
    return text + ". " + str(rec.get("reason") or "")


def _num(x: Any, unit: str) -> str:
    v = plots.finite(x)
    if v is None:
        return "-"
    return f"{v:.4g}{unit}"


# --------------------------------------------------------------------------- estimate
def estimate_view(est: Mapping[str, Any], prefix: str = "est-") -> dict[str, Any]:
    """An estimate ``--json`` object (train/finetune/inference) as figures with bands."""
    low: Mapping[str, Any] = est["low"] if isinstance(est.get("low"), Mapping) else {}
    high: Mapping[str, Any] = est["high"] if isinstance(est.get("high"), Mapping) else {}

    def fig(key: str, label: str, unit: str) -> dict[str, Any]:
        v = plots.finite(est.get(key))
        lo, hi = plots.finite(low.get(key)), plots.finite(high.get(key))
        return {
            "key": key,
            "label": label,
            "raw": v,
            "text": _num(v, f" {unit}"),
            "band": f"{_num(lo, '')} - {_num(hi, f' {unit}')}" if lo is not None and hi is not None else "",
        }

    figs = [
        fig("flops", "Compute", "FLOP"),
        fig("chip_hours", "Accelerator time", "chip-hours"),
        fig("it_energy_mwh", "IT energy", "MWh"),
        fig("energy_mwh", "Facility energy", "MWh"),
        fig("co2e_t", "CO2e (operational)", "t"),
        fig("embodied_co2e_t", "CO2e (embodied)", "t"),
    ]
    cost = plots.finite(est.get("cost"))
    if cost is not None:
        figs.append(
            {
                "key": "cost",
                "label": "Electricity cost",
                "raw": cost,
                "text": fmt_money(cost, str(est.get("currency") or "")),
                "band": "",
            }
        )
    return {
        "figures": [f for f in figs if f["raw"] is not None],
        "inputs": input_rows(est),
        "kind": est.get("kind") or est.get("mode") or "",
        "raw": est,
        "intensity_note": intensity_note(est["location"]) if isinstance(est.get("location"), Mapping) else "",
        "warnings": list(est.get("warnings") or []),
    }


def input_rows(est: Mapping[str, Any]) -> list[dict[str, Any]]:
    """An estimate's ``inputs``: every value used, with its source and range."""
    rows = []
    for k, v in (est.get("inputs") or {}).items():
        if isinstance(v, Mapping):
            rng = f" ({_short(v['low'])} - {_short(v['high'])})" if "low" in v and "high" in v else ""
            rows.append({"name": k, "value": _short(v.get("value")) + rng, "source": _short(v.get("source", ""), 600)})
        else:
            rows.append({"name": k, "value": _short(v), "source": ""})
    return rows


def _side(o: Mapping[str, Any], side: str, key: str) -> float | None:
    d = o.get(side)
    return plots.finite(d.get(key)) if isinstance(d, Mapping) else None


def _intensity_source(code: Any) -> str:
    """Where the shipped intensity for ``code`` comes from ('' when unknown)."""
    if not code:
        return ""
    try:
        from greenlm.carbon.intensity import resolve_location

        g = resolve_location(str(code))
    except Exception:
        return ""
    return f"{g.source}, {g.year}" if g.year else g.source


def comparison_view(cmp: Mapping[str, Any], chart_id: str = "est-locations") -> dict[str, Any]:
    """``estimate compare`` output: options ranked, total CO2e with its band as a chart."""
    options = [dict(o) for o in (cmp.get("options") or []) if isinstance(o, Mapping)]
    labels, vals, lows, highs = [], [], [], []
    for o in options:
        op, emb = plots.finite(o.get("co2e_t")), plots.finite(o.get("embodied_co2e_t")) or 0.0
        if op is None:
            continue
        labels.append(str(o.get("label") or o.get("location") or "?"))
        vals.append(op + emb)
        lo, hi = _side(o, "low", "co2e_t"), _side(o, "high", "co2e_t")
        lows.append(None if lo is None else lo + (_side(o, "low", "embodied_co2e_t") or 0.0))
        highs.append(None if hi is None else hi + (_side(o, "high", "embodied_co2e_t") or 0.0))
        o["intensity_text"] = _num(o.get("intensity_g_per_kwh"), " g/kWh")
        o["intensity_source"] = o.get("intensity_source") or _intensity_source(o.get("location"))
        o["energy_text"] = _num(o.get("energy_mwh"), " MWh")
        o["co2e_text"] = _num(o.get("co2e_t"), " t")
        o["embodied_text"] = _num(o.get("embodied_co2e_t"), " t")
        o["total_text"] = _num(o.get("total_co2e_t"), " t")
        o["cost_text"] = fmt_money(plots.finite(o.get("cost")), str(o.get("currency") or ""))
    chart = plots.banded_bars(
        labels,
        vals,
        lows,
        highs,
        "t CO2e",
        "Total CO2e by option",
        "Operational + embodied CO2e of the same plan for each option, "
        "grid intensity from the shipped data; thin dark bars: low-high band.",
        chart_id,
        "location / hardware",
    )
    return {"options": options, "ranked_by": list(cmp.get("ranked_by") or []), "charts": [chart]}


def lifecycle_view(lc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A lifecycle estimate: parts in physical units, stacked charts, and the weighted score."""
    parts = [dict(p) for p in (lc.get("parts") or []) if isinstance(p, Mapping)]
    for p in parts:
        p["label"] = str(p.get("name") or p.get("kind") or "?")
        p["chip_hours_text"] = _num(p.get("chip_hours"), "")
        p["energy_text"] = _num(p.get("energy_mwh"), "") + _band(p, "energy_mwh")
        p["co2e_text"] = _num(p.get("co2e_t"), "") + _band(p, "co2e_t")
        p["embodied_text"] = _num(p.get("embodied_co2e_t"), "") + _band(p, "embodied_co2e_t")
        p["cost_text"] = fmt_money(plots.finite(p.get("cost")), str(lc.get("currency") or ""))
    co2 = {
        "labels": ["operational CO2e", "embodied CO2e"],
        "datasets": [
            {
                "label": p["label"],
                "stack": "total",
                "backgroundColor": plots.colour(i),
                "data": [plots.finite(p.get("co2e_t")) or 0.0, plots.finite(p.get("embodied_co2e_t")) or 0.0],
            }
            for i, p in enumerate(parts)
        ],
    }
    co2_spec = plots._base("bar", co2, "t CO2e", "", stacked=True, horizontal=True)
    charts = [
        plots.Chart(
            f"{prefix}lc-co2e",
            "CO2e by part (t)",
            "Operational (facility energy x grid intensity) "
            "and embodied (hardware manufacturing, amortised by use) CO2e, each bar "
            "split into the lifecycle parts.",
            co2_spec,
            empty=not parts,
        ),
        plots.stacked_parts(
            parts,
            "energy_mwh",
            "MWh",
            "Facility energy by part",
            "Facility energy (IT x PUE; network energy end to end) of each lifecycle part, in MWh.",
            f"{prefix}lc-energy",
        ),
    ]
    sc = lc.get("score") if isinstance(lc.get("score"), Mapping) else None
    score = None
    if sc is not None:
        rows = []
        for name, c in (sc.get("components") or {}).items():
            if not isinstance(c, Mapping):
                continue
            rows.append(
                {
                    "name": f"{name} ({c.get('quantity', '')})",
                    "weight": _num(c.get("weight"), ""),
                    "quantity": _num(c.get("amount"), ""),
                    "reference": f"{_num(c.get('reference'), '')}: {c.get('reference_source', '')}",
                    "contribution": _num(
                        (plots.finite(c.get("weight")) or 0) * (plots.finite(c.get("normalised")) or 0), ""
                    ),
                }
            )
        score = {
            "value": plots.finite(sc.get("value")),
            "text": _num(sc.get("value"), ""),
            "rows": rows,
            "weights": dict(sc.get("weights") or {}),
            "note": "score = sum of weight x quantity / reference; weights normalised to sum to 1.",
        }
    totals = [
        {"key": k, "label": label, "raw": plots.finite(lc.get(k)), "text": _num(lc.get(k), unit), "band": _band(lc, k)}
        for k, label, unit in (
            ("chip_hours", "Accelerator time", " chip-hours"),
            ("energy_mwh", "Facility energy", " MWh"),
            ("co2e_t", "CO2e operational", " t"),
            ("embodied_co2e_t", "CO2e embodied", " t"),
            ("total_co2e_t", "CO2e total", " t"),
        )
        if plots.finite(lc.get(k)) is not None
    ]
    return {
        "name": lc.get("name"),
        "parts": parts,
        "charts": charts,
        "score": score,
        "totals": totals,
        "warnings": list(lc.get("warnings") or []),
        "inputs": input_rows(lc),
        "intensity_note": intensity_note(lc["location"]) if isinstance(lc.get("location"), Mapping) else "",
    }


def _band(d: Mapping[str, Any], key: str) -> str:
    lo, hi = _side(d, "low", key), _side(d, "high", key)
    return f" ({lo:.3g}-{hi:.3g})" if lo is not None and hi is not None else ""
