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
                    for c in r.components[:MAX_COMPONENT_ROWS]
                ],
                ["component", "kind", "energy", "provenance", "band", "scope"],
            )
        )
        if len(r.components) > MAX_COMPONENT_ROWS:  # a many-node run: the rest by kind
            rest: dict[str, list[float]] = {}
            for c in r.components[MAX_COMPONENT_ROWS:]:
                rest.setdefault(c.kind, []).append(c.energy_j)
            by_kind = ", ".join(f"{len(v)} {k} {fmt_energy_j(sum(v))}" for k, v in sorted(rest.items()))
            more = len(r.components) - MAX_COMPONENT_ROWS
            lines.append(f"... and {more} more components ({by_kind}; --json has them all)")
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
    lines += job_lines(r.to_dict())
    for w in r.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines).rstrip() + "\n"


#: Ranks listed by ``runs show`` before "... and N more" (``--json`` has them all).
MAX_RANK_ROWS = 32
#: Components listed by ``runs show`` before the rest is summed by kind.
MAX_COMPONENT_ROWS = 64


def job_lines(d: dict[str, Any]) -> list[str]:
    """The job a run belongs to: the Slurm step, the per-rank (per-task) breakdown of a
    distributed run, and independent cross-checks of its energy.
    """
    meta = d.get("metadata") or {}
    out: list[str] = []
    s = meta.get("slurm")
    if isinstance(s, dict) and s.get("job_id"):
        tasks = s.get("step_tasks")
        where = s.get("step_nodelist") or s.get("job_nodelist") or "-"
        out.append(
            f"slurm           job {s['job_id']} step {s.get('step_id', '-')} on {where} "
            f"({tasks if tasks is not None else '-'} task(s), {s.get('step_nodes', '-')} node(s); "
            f"job: {s.get('job_tasks', '-')} task(s), {s.get('job_nodes', '-')} node(s))"
            + (f", cluster {s['cluster']}" if s.get("cluster") else "")
        )
        energy = (s.get("accounting") or {}).get("energy") or {}
        if energy and not energy.get("available"):
            out.append(f"slurm energy    none: {energy.get('reason', '-')}")
    dist = meta.get("distributed")
    if isinstance(dist, dict) and dist.get("role") == "group":
        ranks = dist.get("ranks") or []
        nodes = dist.get("nodes") or dist.get("node_parts") or {}
        out.append(
            f"distributed     {dist.get('ranks_reported', len(ranks))} of {dist.get('world_size', '-')} rank(s) "
            f"reported, {len(nodes)} node(s) ({dist.get('launcher') or '-'}); {dist.get('rule', '')}".rstrip("; ")
        )
        if dist.get("missing_ranks"):
            out.append(f"missing ranks   {', '.join(str(r) for r in dist['missing_ranks'][:64])}")
        if ranks:
            out.append("")
            rows = [
                [
                    str(r.get("rank")),
                    str(r.get("node")),
                    str(r.get("local_rank") if r.get("local_rank") is not None else "-"),
                    str(r.get("status")),
                    fmt_energy_j(r.get("energy_j")),
                    f"{float(r.get('duration_s') or 0):.2f} s",
                    str(r.get("steps", "-")),
                ]
                for r in ranks[:MAX_RANK_ROWS]
            ]
            out.append(_table(rows, ["rank/task", "node", "local", "status", "energy", "duration", "steps"]))
            if len(ranks) > MAX_RANK_ROWS:
                out.append(f"... and {len(ranks) - MAX_RANK_ROWS} more ranks (runs show --json lists every rank)")
            out.append("")
    for c in meta.get("cross_checks") or []:
        if not isinstance(c, dict) or not c.get("energy_j"):
            continue
        ratio = (d.get("energy_j") or 0.0) / float(c["energy_j"])
        out.append(
            f"cross-check     {c.get('name')}: {fmt_energy_j(float(c['energy_j']))} "
            f"(greenlm / it = {ratio:.2f}); {c.get('source', '')}; covers {c.get('scope', '-')}"
        )
    return out


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


#: ``runs list`` columns dropped, in this order, when the table is wider than the terminal.
OPTIONAL_RUN_COLUMNS = ("provenance", "location", "duration", "started (UTC)")
#: The project column is cut (with "…") to no less than this to fit.
MIN_PROJECT_CHARS = 12


def runs_table(runs: Sequence[StoredRun], width: int | None = None) -> str:
    """One line per run (``greenlm runs list``); a damaged run shows its id and the reason.

    Energies are in one unit and CO2e in one unit for the whole table (the largest run's).
    ``width``: the terminal's columns; the optional columns (:data:`OPTIONAL_RUN_COLUMNS`)
    are dropped in turn, then long projects and reasons are cut with "…", until every line
    fits. The run id keeps 12 characters (what ``runs show`` is given); ``--json`` has every
    value in full.
    """
    if not runs:
        return "no runs stored yet\n"
    ok = [sr.result for sr in runs if sr.result is not None]
    total_j = sum(r.energy_j for r in ok)
    total_g = sum(r.co2e_g for r in ok)
    eu = humanize.energy_unit([r.energy_j for r in ok])
    mu = humanize.mass_unit([r.co2e_g for r in ok])
    header = ["run", "project", "status", "started (UTC)", "duration", "energy", "CO2e", "location", "provenance"]
    rows = []
    for sr in runs:
        r = sr.result
        if r is None:
            rows.append(
                [sr.run_id[:12], sr.project, "DAMAGED", sr.started_at[:16], "-", "-", "-", "-", f"({sr.damaged})"]
            )
            continue
        rows.append(
            [
                r.run_id[:12],
                r.project,
                r.status,
                r.started_at[:16].replace("T", " "),
                humanize.duration(r.duration_s),
                humanize.energy(r.energy_j, eu),
                humanize.co2e(r.co2e_g, mu),
                str(r.location.get("code") or "-"),
                r.provenance or "-",
            ]
        )
    damaged = len(runs) - len(ok)
    tail = f"; {damaged} damaged (not in the totals)" if damaged else ""
    if width is not None:
        header, rows = _fit(header, rows, width)
    n = f"{len(runs)} run" + ("" if len(runs) == 1 else "s")
    totals = f"{n}, {fmt_energy_j(total_j)} IT energy, {fmt_co2e_g(total_g)}{tail}"
    return _table(rows, header) + f"\n{totals}\n"


def _fit(header: list[str], rows: list[list[str]], width: int) -> tuple[list[str], list[list[str]]]:
    """Drop optional columns, then cut the project (and a damaged row's reason), to fit ``width``."""

    def line_width(h: list[str], rs: list[list[str]]) -> int:
        return sum(max(len(x) for x in col) for col in zip(h, *rs)) + 2 * (len(h) - 1)

    def cut(text: str, n: int) -> str:
        return text if len(text) <= n else text[: max(n - 1, 1)] + "\u2026"

    def without(h: list[str], rs: list[list[str]], name: str) -> tuple[list[str], list[list[str]]]:
        i = h.index(name)
        return h[:i] + h[i + 1 :], [r[:i] + r[i + 1 :] for r in rs]

    def cut_project(h: list[str], rs: list[list[str]]) -> list[list[str]]:
        i = h.index("project")
        over = line_width(h, rs) - width
        if over <= 0:
            return rs
        longest = max(len(r[i]) for r in rs)
        n = max(MIN_PROJECT_CHARS, len(h[i]), longest - over)
        return [[*r[:i], cut(r[i], n), *r[i + 1 :]] for r in rs]

    for name in OPTIONAL_RUN_COLUMNS:
        if line_width(header, cut_project(header, rows)) <= width:
            break
        if name == "provenance" and any(r[2] == "DAMAGED" for r in rows):
            continue  # a damaged row's reason is its provenance cell: cut it below instead
        header, rows = without(header, rows, name)
    rows = cut_project(header, rows)
    if "provenance" in header and line_width(header, rows) > width:
        i = header.index("provenance")
        room = max(len(header[i]), width - (line_width(header, [[*r[:i], "x"] for r in rows]) - 1))
        rows = [[*r[:i], cut(r[i], room)] for r in rows]
    return header, rows


def delivery_lines(delivery: Sequence[Mapping[str, Any]], run_id: str) -> list[str]:
    """What became of a run at each destination (``EnergyTracker.delivery``), one line each.

    "stored in" only for a destination that confirmed the write; what waits in a spool and
    what was refused are said as such.
    """
    lines = []
    for rep in delivery:
        where = str(rep.get("destination"))
        if rep.get("state") == "stored":
            if where.startswith("run store "):
                lines.append(f"stored in {where[len('run store ') :]}  (greenlm runs show {run_id[:12]})")
            else:
                lines.append(f"sent to {where}")
        elif rep.get("state") == "waiting":
            lines.append(
                f"NOT yet stored in {where}: {rep.get('pending_events')} event(s) wait in {rep.get('where')} "
                f"({rep.get('detail')}); they are written when it is back (`greenlm runs sync`)"
            )
        else:
            lines.append(f"NOT stored in {where}: {rep.get('detail')}")
    return lines
