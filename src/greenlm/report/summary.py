"""Plain-text summaries of runs for the terminal, from the typed results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from greenlm.store.records import StoredRun
from greenlm.tracking.result import RunResult


def fmt_energy_j(j: float | None) -> str:
    """Joules in the most readable unit (J, kJ, kWh, MWh)."""
    if j is None:
        return "-"
    if abs(j) < 1e3:
        return f"{j:.3g} J"
    if abs(j) < 3.6e5:
        return f"{j / 1e3:.3g} kJ"
    if abs(j) < 3.6e9:
        return f"{j / 3.6e6:.3g} kWh"
    return f"{j / 3.6e9:.3g} MWh"


def fmt_co2e_g(g: float | None) -> str:
    """Grams of CO2e as mg, g, kg or t."""
    if g is None:
        return "-"
    if abs(g) < 1:
        return f"{g * 1e3:.3g} mg CO2e"
    if abs(g) < 1e3:
        return f"{g:.3g} g CO2e"
    if abs(g) < 1e6:
        return f"{g / 1e3:.3g} kg CO2e"
    return f"{g / 1e6:.3g} t CO2e"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    for r in rows:
        out.append("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))
    return "\n".join(out)


def run_summary(run: RunResult | StoredRun | Mapping[str, Any]) -> str:
    """The result table printed after a tracked run (and by ``greenlm runs show``).

    A result JSON object is accepted too (read as a ``RunResult``). A damaged stored run
    gives the reason and the row's facts.
    """
    if isinstance(run, StoredRun):
        if run.result is None:
            return damaged_summary(run)
        partial = run.partial
        r = run.result
    else:
        partial = False
        r = run if isinstance(run, RunResult) else RunResult.from_dict(dict(run))
    loc = r.location
    lines = [
        f"greenlm run {r.run_id}  project={r.project}  status={r.status}",
        f"duration        {r.duration_s:.2f} s",
        f"IT energy       {fmt_energy_j(r.energy_j)}"
        f"  (band {fmt_energy_j(r.energy_low_j)} - {fmt_energy_j(r.energy_high_j)})",
        f"facility energy {fmt_energy_j(r.facility_energy_j)}  (PUE {r.pue}: {r.pue_source or '-'})",
        f"carbon          {fmt_co2e_g(r.co2e_g)}  at {loc.get('intensity_g_per_kwh')} g/kWh, "
        f"{loc.get('code')} {loc.get('year') or ''}{' (DEFAULTED: world average)' if loc.get('defaulted') else ''}",
        f"cost            {r.cost:.4g} {r.currency}  ({r.price_source or ''})",
        f"provenance      {r.provenance or '-'}",
    ]
    if partial:
        lines.append("partial         no final result yet: figures are up to the last flush")
    lines.append("")
    if r.components:
        lines.append(
            _table(
                [
                    [
                        c.name,
                        c.kind,
                        fmt_energy_j(c.energy_j),
                        c.provenance or "-",
                        f"{fmt_energy_j(c.low_j)} - {fmt_energy_j(c.high_j)}",
                        c.scope,
                    ]
                    for c in r.components
                ],
                ["component", "kind", "energy", "provenance", "band", "scope"],
            )
        )
        lines.append("")
    if r.phases:
        lines.append(
            _table(
                [
                    [
                        p.path,
                        fmt_energy_j(p.energy_j),
                        f"{p.duration_s:.2f} s",
                        str(p.steps),
                        fmt_energy_j(p.energy_per_step_j) if p.steps else "-",
                    ]
                    for p in r.phases
                ],
                ["phase", "energy", "duration", "steps", "per step"],
            )
        )
        lines.append("")
    f = r.forecast
    if f:
        lines.append(
            f"forecast        {fmt_energy_j(f.get('energy_j'))} for {f.get('total_steps')} steps "
            f"({fmt_energy_j(f.get('low_j'))} - {fmt_energy_j(f.get('high_j'))})"
        )
    for w in r.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines).rstrip() + "\n"


def damaged_summary(run: StoredRun) -> str:
    """What ``greenlm runs show`` prints for a run whose stored record cannot be read."""
    sal = run.salvaged
    return (
        f"greenlm run {run.run_id}  project={run.project}  status={run.status}\n"
        f"DAMAGED: the stored record cannot be read: {run.damaged}\n"
        f"started (UTC)   {run.started_at}\n"
        f"IT energy (row) {fmt_energy_j(sal.get('energy_j'))}\n"
        f"CO2e (row)      {fmt_co2e_g(sal.get('co2e_g'))}\n"
    )


def runs_table(runs: Sequence[StoredRun]) -> str:
    """One line per run (``greenlm runs list``); a damaged run shows its id and the reason."""
    if not runs:
        return "no runs stored yet\n"
    rows = []
    for sr in runs:
        r = sr.result
        if r is None:
            rows.append(
                [sr.run_id[:12], sr.project, "DAMAGED", sr.started_at[:19], "-", "-", "-", "-", f"({sr.damaged})"]
            )
            continue
        rows.append(
            [
                r.run_id[:12],
                r.project,
                r.status,
                r.started_at[:19],
                f"{r.duration_s:.1f} s",
                fmt_energy_j(r.energy_j),
                fmt_co2e_g(r.co2e_g),
                str(r.location.get("code") or "-"),
                r.provenance or "-",
            ]
        )
    ok = [sr.result for sr in runs if sr.result is not None]
    total_j = sum(r.energy_j for r in ok)
    total_g = sum(r.co2e_g for r in ok)
    damaged = len(runs) - len(ok)
    tail = f"; {damaged} damaged (not in the totals)" if damaged else ""
    return (
        _table(
            rows, ["run", "project", "status", "started (UTC)", "duration", "energy", "CO2e", "location", "provenance"]
        )
        + f"\n{len(runs)} runs, {fmt_energy_j(total_j)} IT energy, {fmt_co2e_g(total_g)}{tail}\n"
    )
