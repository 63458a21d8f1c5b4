"""Chart specifications (Chart.js configuration objects) built from greenlm's results.

Run charts take the typed results (``RunResult``, ``StoredRun``, a store ``PowerTrace``);
optimize and estimate charts take those commands' JSON objects.

Pure data: every function returns a :class:`Chart` whose ``spec`` is a Chart.js config
(plain JSON, no functions), plus a caption saying where the figures come from. The
dashboard and the self-contained HTML report draw the same specs with the vendored
Chart.js (``greenlm/server/static/vendor``) and ``charts.js``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from greenlm import humanize
from greenlm.store.records import PowerTrace, StoredRun
from greenlm.tracking.result import ComponentEnergy, PhaseEnergy, RunResult

#: Colours by component kind and for series without a kind (colour-blind friendly set).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
KIND_COLOURS = {"gpu": "#0072B2", "cpu": "#E69F00", "ram": "#009E73"}
J_PER_KWH = 3.6e6
#: The uncertainty band: a thin dark bar drawn over the value's bar (low..high), like an error
#: bar; at most 6 px wide whatever the chart's width, so it always reads as "a thin dark bar".
BAND_STYLE = {
    "backgroundColor": "rgba(17,17,17,0.85)",
    "grouped": False,
    "barPercentage": 0.12,
    "maxBarThickness": 6,
    "order": 0,
}
VALUE_STYLE = {"grouped": False, "barPercentage": 0.7, "order": 1}
#: How the captions name the band: kept beside BAND_STYLE so the words match the drawing.
BAND_WORDS = "thin dark bar"


@dataclass(frozen=True)
class Chart:
    """One chart: a DOM id, a title, a caption (provenance / source) and the Chart.js spec."""

    id: str
    title: str
    caption: str
    spec: dict[str, Any]
    empty: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def colour(i: int, kind: str | None = None) -> str:
    """A stable colour: by component kind when known, else from the palette."""
    if kind and kind in KIND_COLOURS:
        return KIND_COLOURS[kind]
    return PALETTE[i % len(PALETTE)]


def energy_scale(max_j: float, unit: str | None = None) -> tuple[str, float]:
    """The display unit for energies up to ``max_j`` (``greenlm.humanize``: J, Wh, kWh, MWh...)
    and joules per unit; ``unit`` forces one (the page's).
    """
    u = unit or humanize.energy_unit([max_j])
    return u, dict(humanize.ENERGY_UNITS)[u]


def co2e_scale(max_g: float, unit: str | None = None) -> tuple[str, float]:
    """Display unit for CO2e masses up to ``max_g`` (``g CO2e``, ``t CO2e``...) and grams per unit."""
    u = unit or humanize.mass_unit([max_g])
    return f"{u} CO2e", dict(humanize.MASS_UNITS)[u]


def finite(x: Any) -> float | None:
    """``x`` as a float, or None when missing, NaN or infinite (JSON has no NaN)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _axis(title: str, **kw: Any) -> dict[str, Any]:
    return {"title": {"display": True, "text": title}, **kw}


def _base(
    kind: str,
    data: dict[str, Any],
    x_title: str,
    y_title: str,
    *,
    stacked: bool = False,
    horizontal: bool = False,
    legend: bool = True,
    x_type: str | None = None,
) -> dict[str, Any]:
    x = _axis(x_title, stacked=stacked)
    if x_type:
        x["type"] = x_type
    y = _axis(y_title, stacked=stacked, beginAtZero=True)
    opts: dict[str, Any] = {
        "scales": {"x": x, "y": y},
        "plugins": {"legend": {"display": legend}},
    }
    if horizontal:
        opts["indexAxis"] = "y"
    return {"type": kind, "data": data, "options": opts}


def downsample(points: Sequence[tuple[float, float]], max_points: int) -> list[tuple[float, float]]:
    """Average consecutive points into at most ``max_points`` buckets (keeps the shape)."""
    n = len(points)
    if n <= max_points:
        return list(points)
    out = []
    per = n / max_points
    for b in range(max_points):
        chunk = points[int(b * per) : max(int((b + 1) * per), int(b * per) + 1)]
        out.append((sum(p[0] for p in chunk) / len(chunk), sum(p[1] for p in chunk) / len(chunk)))
    return out


def power_timeline(
    trace: PowerTrace,
    kinds: Mapping[str, str] | None = None,
    chart_id: str = "power",
    provenance: Mapping[str, str] | None = None,
) -> Chart:
    """Power over time per component, from a run's bounded power trace (``RunStore.power_trace``)."""
    kinds = kinds or {}
    datasets = []
    for i, series in enumerate(sorted(trace.series, key=lambda s: s.component)):
        pts = [(t, p) for t, p in series.points if finite(t) is not None and finite(p) is not None]
        if not pts:
            continue
        name = series.component
        c = colour(i, kinds.get(name))
        datasets.append(
            {
                "label": f"{name} ({(provenance or {}).get(name, 'measured')})" if provenance else name,
                "data": [{"x": round(t, 4), "y": round(p, 4)} for t, p in pts],
                "borderColor": c,
                "backgroundColor": c,
                "pointRadius": 0,
                "borderWidth": 1.5,
                "tension": 0,
                "stepped": False,
            }
        )
    spec = _base("line", {"datasets": datasets}, "time since start (s)", "power (W)", x_type="linear")
    drawn = (
        f"each point the mean over {humanize.duration(trace.bucket_s)}, from the energy at the bucket edges "
        f"({humanize.count(trace.n_samples)} stored samples)"
        if trace.bucket_s
        else "from the stored samples"
    )
    caption = (
        f"Average power of each component between samples (W), {drawn}; "
        "provenance in brackets: counter = hardware energy counter, sampled = power "
        "readings integrated, modeled = estimated from utilisation."
    )
    return Chart(chart_id, "Power over time", caption, spec, empty=not datasets)


def energy_by_component(
    components: Sequence[ComponentEnergy], chart_id: str = "components", unit: str | None = None
) -> Chart:
    """IT energy per component with its band (a thin dark bar low..high over the value)."""
    comps = [c for c in components if finite(c.energy_j) is not None]
    unit, div = energy_scale(max([c.energy_j for c in comps] + [0.0]), unit)
    labels = [f"{c.name} ({c.provenance or '?'})" for c in comps]
    value = {
        "label": f"energy ({unit})",
        "data": [c.energy_j / div for c in comps],
        "backgroundColor": [colour(i, c.kind) for i, c in enumerate(comps)],
        **VALUE_STYLE,
    }
    band = {
        "label": f"band low-high ({unit}, {BAND_WORDS})",
        "data": [[_or(c.low_j, c.energy_j) / div, _or(c.high_j, c.energy_j) / div] for c in comps],
        **BAND_STYLE,
    }
    spec = _base("bar", {"labels": labels, "datasets": [value, band]}, "component", f"IT energy ({unit})")
    caption = (
        f"IT energy by component, before PUE (wide bars); the {BAND_WORDS} over each spans its "
        "uncertainty band, low to high (short for counters, long for modeled components)."
    )
    return Chart(chart_id, "Energy by component", caption, spec, empty=not comps)


def _or(x: float | None, default: float) -> float:
    v = finite(x)
    return default if v is None else v


def energy_by_phase(phases: Sequence[PhaseEnergy], chart_id: str = "phases", unit: str | None = None) -> Chart:
    """IT energy of each phase (nested phases by path)."""
    ph = [p for p in phases if finite(p.energy_j) is not None]
    unit, div = energy_scale(max([p.energy_j for p in ph] + [0.0]), unit)
    data = {
        "labels": [p.path for p in ph],
        "datasets": [
            {
                "label": f"energy ({unit})",
                "data": [p.energy_j / div for p in ph],
                "backgroundColor": [colour(i) for i in range(len(ph))],
            }
        ],
    }
    spec = _base("bar", data, f"IT energy ({unit})", "phase", horizontal=True, legend=False)
    spec["options"]["scales"]["x"]["beginAtZero"] = True
    caption = (
        "IT energy attributed to each phase (interpolated between samples at the phase "
        "boundaries); nested phases are part of their parent's energy."
    )
    return Chart(chart_id, "Energy by phase", caption, spec, empty=not ph)


def compare_components(runs: Sequence[RunResult], chart_id: str = "compare-energy", unit: str | None = None) -> Chart:
    """Stacked IT energy by component for several runs."""
    names: list[str] = []
    kinds: dict[str, str] = {}
    for r in runs:
        for c in r.components:
            if c.name not in names:
                names.append(c.name)
                kinds[c.name] = c.kind
    unit, div = energy_scale(max([r.energy_j for r in runs] + [0.0]), unit)
    labels = [run_label(r) for r in runs]
    datasets = []
    for i, n in enumerate(names):
        vals = [next((c.energy_j for c in r.components if c.name == n), 0.0) / div for r in runs]
        datasets.append({"label": n, "data": vals, "backgroundColor": colour(i, kinds.get(n)), "stack": "energy"})
    spec = _base("bar", {"labels": labels, "datasets": datasets}, "run", f"IT energy ({unit})", stacked=True)
    return Chart(
        chart_id,
        "IT energy by component",
        "IT energy of each run split by component, before PUE; see the table for each figure's provenance and band.",
        spec,
        empty=not datasets,
    )


def compare_co2e(runs: Sequence[RunResult], chart_id: str = "compare-co2e", unit: str | None = None) -> Chart:
    """CO2e per run with its band as a thin dark bar."""
    unit, div = co2e_scale(max([max(r.co2e_high_g, r.co2e_g) for r in runs] + [0.0]), unit)
    labels = [run_label(r) for r in runs]
    value = {"label": unit, "data": [r.co2e_g / div for r in runs], "backgroundColor": "#009E73", **VALUE_STYLE}
    band = {
        "label": f"band low-high ({unit}, {BAND_WORDS})",
        "data": [[_or(r.co2e_low_g, r.co2e_g) / div, _or(r.co2e_high_g, r.co2e_g) / div] for r in runs],
        **BAND_STYLE,
    }
    spec = _base("bar", {"labels": labels, "datasets": [value, band]}, "run", unit)
    caption = (
        "Operational CO2e = facility energy x grid intensity of each run's location "
        f"(intensity and source in the table); the {BAND_WORDS} over each spans its low-high band."
    )
    return Chart(chart_id, "CO2e per run", caption, spec, empty=not runs)


def runs_overview(
    runs: Sequence[StoredRun], chart_id: str = "overview", limit: int = 60, unit: str | None = None
) -> Chart:
    """CO2e of the listed runs, oldest to newest, coloured by project (damaged runs left out)."""
    rs = [r.result for r in reversed(list(runs)[:limit]) if r.result is not None]
    projects: list[str] = []
    for r in rs:
        if r.project not in projects:
            projects.append(r.project)
    unit, div = co2e_scale(max([r.co2e_g for r in rs] + [0.0]), unit)
    labels = [run_label(r) for r in rs]
    datasets = [
        {
            "label": p,
            "backgroundColor": colour(i),
            "stack": "p",
            "data": [r.co2e_g / div if r.project == p else 0 for r in rs],
        }
        for i, p in enumerate(projects)
    ]
    spec = _base("bar", {"labels": labels, "datasets": datasets}, "run (oldest to newest)", unit, stacked=True)
    return Chart(
        chart_id,
        "CO2e of the listed runs",
        f"Operational CO2e of each run shown in the table (newest {limit} at most), by project.",
        spec,
        empty=not rs,
    )


def run_label(r: RunResult | StoredRun) -> str:
    """Short label of a run for chart axes: project and id prefix."""
    return f"{r.project} {r.run_id[:8]}"


def pareto(
    variants: Sequence[Mapping[str, Any]],
    baseline: str | None,
    energy_key: str = "energy_j_per_1k",
    chart_id: str = "pareto",
) -> Chart:
    """Energy against quality of optimize variants, with the Pareto front joined."""
    pts = []
    for v in variants:
        e = finite(v.get(energy_key))
        q = finite((v.get("quality") or {}).get("value")) if isinstance(v.get("quality"), Mapping) else None
        if e is None or q is None or v.get("skipped_reason"):
            continue
        pts.append((e, q, str(v.get("name"))))
    metric = next(
        (
            str(v["quality"].get("metric"))
            for v in variants
            if isinstance(v.get("quality"), Mapping) and v["quality"].get("metric")
        ),
        "quality",
    )
    higher_better = "perplexity" not in metric.lower() and "loss" not in metric.lower()
    front = pareto_front(pts, higher_better)
    unit = "J per 1,000 inferences" if energy_key == "energy_j_per_1k" else "J per token"
    datasets: list[dict[str, Any]] = []
    for i, (e, q, name) in enumerate(pts):
        datasets.append(
            {
                "label": name + (" (baseline)" if name == baseline else ""),
                "data": [{"x": e, "y": q}],
                "backgroundColor": colour(i),
                "pointRadius": 7 if name == baseline else 5,
                "pointStyle": "rectRot" if name == baseline else "circle",
            }
        )
    if front:
        datasets.append(
            {
                "label": "Pareto front",
                "type": "line",
                "showLine": True,
                "data": [{"x": e, "y": q} for e, q, _ in front],
                "borderColor": "#555",
                "borderDash": [4, 4],
                "pointRadius": 0,
                "fill": False,
            }
        )
    spec = _base("scatter", {"datasets": datasets}, f"energy ({unit})", metric, x_type="linear")
    spec["options"]["scales"]["y"]["beginAtZero"] = False
    spec["options"]["scales"]["x"]["beginAtZero"] = True
    better = "higher" if higher_better else "lower"
    return Chart(
        chart_id,
        "Energy vs quality",
        f"Each point is a variant ({metric}: {better} is "
        "better); the dashed line joins the variants no other variant beats on both "
        "energy and quality.",
        spec,
        empty=not pts,
    )


def pareto_front(pts: Sequence[tuple[float, float, str]], higher_better: bool = True) -> list[tuple[float, float, str]]:
    """Points not dominated on (lower energy, better quality), by increasing energy."""
    out: list[tuple[float, float, str]] = []
    best: float | None = None
    for e, q, n in sorted(pts, key=lambda p: (p[0], -p[1] if higher_better else p[1])):
        if best is None or (q > best if higher_better else q < best):
            out.append((e, q, n))
            best = q
    return out


def banded_bars(
    labels: Sequence[str],
    values: Sequence[float],
    lows: Sequence[float | None],
    highs: Sequence[float | None],
    unit: str,
    title: str,
    caption: str,
    chart_id: str,
    x_title: str,
) -> Chart:
    """Bars with their band (low..high) drawn over each as a thin dark bar (location/hardware comparisons)."""
    value = {"label": unit, "data": [float(v) for v in values], "backgroundColor": "#0072B2", **VALUE_STYLE}
    band = {
        "label": f"band low-high ({unit}, {BAND_WORDS})",
        "data": [
            [float(lo if lo is not None else v), float(hi if hi is not None else v)]
            for v, lo, hi in zip(values, lows, highs)
        ],
        **BAND_STYLE,
    }
    spec = _base("bar", {"labels": list(labels), "datasets": [value, band]}, x_title, unit)
    return Chart(chart_id, title, caption, spec, empty=not labels)


def parts_bars(
    parts: Sequence[Mapping[str, Any]],
    series: Sequence[tuple[str, str]],
    unit: str,
    scale: float,
    title: str,
    caption: str,
    chart_id: str,
) -> Chart:
    """One horizontal bar per part and series (``(key, label)``), on a logarithmic axis.

    A lifecycle's parts differ by orders of magnitude (training in MWh, storage in kWh): on a
    linear or stacked axis all but the largest vanish. On a log axis every part with a value
    above zero shows; parts at zero have no bar (the caption says so; the table beside lists
    them all).
    """
    labels = [str(p.get("label") or p.get("name")) for p in parts]
    datasets = []
    positive: list[float] = []
    for i, (key, label) in enumerate(series):
        vals = []
        for p in parts:
            v = finite(p.get(key))
            v = v * scale if v is not None else None
            vals.append(v if v is not None and v > 0 else None)
            if v is not None and v > 0:
                positive.append(v)
        datasets.append({"label": label, "data": vals, "backgroundColor": colour(i)})
    data = {"labels": labels, "datasets": datasets}
    spec = _base("bar", data, f"{unit} (log scale)", "", horizontal=True, x_type="logarithmic")
    x = spec["options"]["scales"]["x"]
    x.pop("beginAtZero", None)
    x["ticks"] = {"autoSkip": True, "autoSkipPadding": 16, "maxRotation": 0}
    spec["options"]["scales"]["y"].pop("beginAtZero", None)
    if positive:  # whole decades around the data, so the smallest bar has some length
        x["min"] = 10 ** math.floor(math.log10(min(positive)) - 0.5)
        x["max"] = 10 ** math.ceil(math.log10(max(positive)) + 0.05)
    zero = [labels[j] for j in range(len(parts)) if all(d["data"][j] is None for d in datasets)]
    if zero:
        caption += f" Not drawn (zero): {', '.join(zero)}."
    return Chart(chart_id, title, caption, spec, empty=not positive)
