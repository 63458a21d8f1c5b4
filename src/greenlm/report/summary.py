"""Plain-text summaries of runs for the terminal, from the typed results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from greenlm import humanize
from greenlm.store.records import StoredRun
from greenlm.tracking.result import RunResult


def fmt_energy_j(j: float | None, unit: str | None = None) -> str:
    """Joules for people (``greenlm.humanize.energy``): J, Wh, kWh, MWh by magnitude, or ``unit``."""
    return humanize.energy(j, unit)


def fmt_co2e_g(g: float | None, unit: str | None = None) -> str:
    """Grams of CO2e for people: mg, g, kg or t CO2e by magnitude, or in ``unit``."""
    return humanize.co2e(g, unit)


def run_units(r: RunResult) -> tuple[str, str]:
    """The energy and mass units of one run's page or summary: those of its largest figure,
    so that every energy (IT, facility, band, components, phases, per step, forecast) and every
    CO2e on it reads in one unit.
    """
    energies: list[float | None] = [r.energy_j, r.energy_high_j, r.facility_energy_j]
    energies += [c.high_j if c.high_j is not None else c.energy_j for c in r.components]
    energies += [p.energy_j for p in r.phases]
    f = r.forecast or {}
    if isinstance(f, Mapping):
        energies += [f.get("energy_j"), f.get("high_j")]
    masses: list[float | None] = [r.co2e_g, r.co2e_high_g, *(p.co2e_g for p in r.phases)]
    return humanize.energy_unit(_finite(energies)), humanize.mass_unit(_finite(masses))


def _finite(xs: Sequence[Any]) -> list[float | None]:
    out: list[float | None] = []
    for x in xs:
        try:
            out.append(float(x))
        except (TypeError, ValueError):
            out.append(None)
    return out


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
    eu, mu = run_units(r)

    def e(x: float | None) -> str:
        return humanize.energy(x, eu)

    def g(x: float | None) -> str:
        return humanize.co2e(x, mu)

    intensity = loc.get("intensity_g_per_kwh")
    lines = [
        f"greenlm run {r.run_id}  project={r.project}  status={r.status}",
        f"duration        {humanize.duration(r.duration_s)}",
        f"IT energy       {e(r.energy_j)}  (band {e(r.energy_low_j)} - {e(r.energy_high_j)})",
        f"facility energy {e(r.facility_energy_j)}  (PUE {humanize.sig(r.pue)}: {r.pue_source or '-'})",
        f"carbon          {g(r.co2e_g)}  at {humanize.sig(intensity)} g CO2e/kWh, "
        f"{loc.get('code')} {loc.get('year') or ''}{' (DEFAULTED: world average)' if loc.get('defaulted') else ''}",
        f"cost            {humanize.money(r.cost, r.currency)}  ({r.price_source or ''})",
        f"provenance      {r.provenance or '-'}",
    ]
    if partial:
        lines.append("partial         no final result yet: figures are up to the last flush")
    lines.append("")
    if r.components:
        lines.append(
            _table(
                [
                    [c.name, c.kind, e(c.energy_j), c.provenance or "-", f"{e(c.low_j)} - {e(c.high_j)}", c.scope]
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
                        e(p.energy_j),
                        humanize.duration(p.duration_s),
                        humanize.count(p.steps),
                        e(p.energy_per_step_j) if p.steps else "-",
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
            f"forecast        {e(f.get('energy_j'))} for {humanize.count(f.get('total_steps'))} steps "
            f"({e(f.get('low_j'))} - {e(f.get('high_j'))})"
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
    """One line per run (``greenlm runs list``); a damaged run shows its id and the reason.

    Energies are in one unit and CO2e in one unit for the whole table (the largest run's).
    """
    if not runs:
        return "no runs stored yet\n"
    ok = [sr.result for sr in runs if sr.result is not None]
    total_j = sum(r.energy_j for r in ok)
    total_g = sum(r.co2e_g for r in ok)
    eu = humanize.energy_unit([r.energy_j for r in ok])
    mu = humanize.mass_unit([r.co2e_g for r in ok])
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
                humanize.duration(r.duration_s),
                humanize.energy(r.energy_j, eu),
                humanize.co2e(r.co2e_g, mu),
                str(r.location.get("code") or "-"),
                r.provenance or "-",
            ]
        )
    damaged = len(runs) - len(ok)
    tail = f"; {damaged} damaged (not in the totals)" if damaged else ""
    return (
        _table(
            rows, ["run", "project", "status", "started (UTC)", "duration", "energy", "CO2e", "location", "provenance"]
        )
        + f"\n{len(runs)} runs, {fmt_energy_j(total_j)} IT energy, {fmt_co2e_g(total_g)}{tail}\n"
    )
