"""One run from many: the pure merge of the ranks of a distributed job.

No files, no store, no clocks: :func:`merge` takes what the ranks measured and returns one
:class:`~greenlm.tracking.result.RunResult`. The ranks of a node are merged into a *node
part* (on the node, by the rank that closes last); the parts of every node are merged into
the *group* run (by the run store, when the parts arrive). Both are the same function: an
input is either one rank's own window (:class:`RankReport`) or an earlier merge (a part),
so the merge is associative and its cost is linear in the number of components and ranks.

Rules
-----
* Every measured device counts once. A component is named ``<node>/<device>``: a GPU by its
  physical index on the node (``gpu:<nvml_index>``, whatever ``CUDA_VISIBLE_DEVICES`` made
  of it in the rank), CPU and RAM by their meter names. Two ranks that report the same
  ``<node>/<device>`` measured the same thing: the reading covering the longer window (the
  larger energy) is kept, the other dropped with a warning, and the dropping rank's phase
  energies are scaled down by the share of its energy that was dropped.
* Totals, bands, CO2e and cost are sums over the kept components, each converted with the
  carbon factors (PUE x grid intensity, price) of the rank that measured it.
* Phases: energy and CO2e are summed over ranks; steps, entries and duration are those of
  the rank with the most (in data-parallel training every rank does every step).
* The run spans the earliest start to the latest end of its ranks; ``steps`` is the most
  any rank made.
* Status: ``running`` while a rank is still running or has not reported; otherwise
  ``failed`` if a rank failed (a rank that died without a final report counts as failed,
  with the figures of its last report), else ``interrupted`` if one was, else
  ``completed``. ``error`` names the ranks that did not complete; ``metadata.distributed``
  lists every rank with its node, status and energy, and the ranks missing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from greenlm.meters.base import weakest
from greenlm.tracking.result import ComponentEnergy, PhaseEnergy, RunResult, TimelinePoint

J_PER_KWH = 3.6e6
#: Timeline points of a merged run.
TIMELINE_POINTS = 600
#: Above this many components, a merged timeline sums power by kind (gpu, cpu, ram).
TIMELINE_COMPONENTS = 32
#: Keys of the Slurm facts that differ per task (kept per rank, not on the merged run).
SLURM_TASK_KEYS = ("task", "local_task", "node_index", "tasks_on_node", "cpus_on_node", "node")
KINDS = ("gpu", "cpu", "ram")


@dataclass(frozen=True)
class RankReport:
    """One rank's own window as the merge sees it.

    ``state``: ``final`` (the window closed: ``result.status`` is how it ended),
    ``running`` (a snapshot taken while the window runs) or ``died`` (the last snapshot of a
    rank whose process is gone without a final report).
    """

    result: RunResult
    rank: int
    node: str
    local_rank: int | None = None
    state: str = "final"
    #: Meter descriptions by component name (``nvml_index`` identifies a GPU on its node).
    meters: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.state == "died":
            return "failed"
        if self.state == "running":
            return "running"
        return self.result.status


@dataclass
class _Factors:
    """How one input turns IT joules into facility joules, grams of CO2e and cost."""

    pue: float
    co2_g_per_j: float
    cost_per_j: float
    key: tuple[Any, ...]

    @classmethod
    def of(cls, r: RunResult) -> _Factors:
        intensity = float((r.location or {}).get("intensity_g_per_kwh") or 0.0)
        pue = float(r.pue or 1.0)
        return cls(pue, pue * intensity / J_PER_KWH, pue * float(r.price_per_kwh or 0.0) / J_PER_KWH, _carbon_key(r))


def _carbon_key(r: RunResult) -> tuple[Any, ...]:
    loc = r.location or {}
    return (loc.get("code"), loc.get("intensity_g_per_kwh"), r.pue, r.price_per_kwh, r.currency)


@dataclass
class _Comp:
    c: ComponentEnergy
    factors: _Factors
    origin: int  # index of the input it came from
    meter: dict[str, Any]


@dataclass
class _Input:
    """One input (a rank report or a part) unpacked into what the merge combines."""

    result: RunResult
    comps: list[_Comp]
    ranks: list[dict[str, Any]]
    warnings: dict[str, set[int]]
    offset_s: float = 0.0
    timeline_names: dict[str, str] = field(default_factory=dict)  # timeline key -> merged name
    phase_scale: float = 1.0


def device_label(name: str, kind: str, meter: dict[str, Any] | None) -> str:
    """The node-wide name of a device: ``gpu:<nvml_index>`` for an NVML GPU, else the meter's name.

    A meter's ``device_id`` (``nvml:0``, ``nvml:0/MIG-...`` for a MIG instance,
    ``amdsmi:<bus id>``) names the physical device whatever ``CUDA_VISIBLE_DEVICES`` made of
    it, so two MIG instances of one GPU stay two devices and an AMD GPU is one device.
    """
    m = meter or {}
    if kind == "gpu":
        dev = m.get("device_id")
        if isinstance(dev, str) and dev:
            return f"gpu:{dev[len('nvml:') :]}" if dev.startswith("nvml:") else f"gpu:{dev}"
        for key in ("nvml_index", "device_index", "index"):
            if m.get(key) is not None:
                return f"gpu:{m[key]}"
        if m.get("uuid"):
            return f"gpu:{str(m['uuid'])[:16]}"
    return name


def _rank_input(rep: RankReport, idx: int) -> _Input:
    r = rep.result
    f = _Factors.of(r)
    meters = rep.meters or {str(m.get("name")): dict(m) for m in r.meters}
    comps = []
    names: dict[str, str] = {}
    for c in r.components:
        m = meters.get(c.name, {})
        label = f"{rep.node}/{device_label(c.name, c.kind, m)}"
        names[c.name] = label
        comps.append(
            _Comp(
                replace(c, name=label, node=rep.node, rank=rep.rank),
                f,
                idx,
                {**m, "name": label, "node": rep.node, "rank": rep.rank},
            )
        )
    error = r.error
    if rep.state == "died":
        error = "the process ended without a final report (killed?): figures up to its last report"
    entry = {
        "rank": rep.rank,
        "node": rep.node,
        "local_rank": rep.local_rank,
        "status": rep.status,
        "energy_j": r.energy_j,
        "duration_s": r.duration_s,
        "started_at": r.started_at,
        "steps": r.steps,
        "error": error,
    }
    if rep.state == "died":
        entry["died"] = True
    warnings: dict[str, set[int]] = {}
    for w in r.warnings:
        warnings.setdefault(w, set()).add(rep.rank)
    return _Input(r, comps, [entry], warnings, timeline_names=names)


def _part_input(part: RunResult, idx: int) -> _Input:
    dist = dict(part.metadata.get("distributed") or {})
    f = _Factors.of(part)
    meters = {str(m.get("name")): dict(m) for m in part.meters}
    comps = [
        _Comp(c, f, idx, meters.get(c.name, {"name": c.name, "node": c.node, "rank": c.rank})) for c in part.components
    ]
    ranks = [dict(x) for x in dist.get("ranks") or []]
    warnings = {str(k): {int(x) for x in v} for k, v in (dist.get("warning_ranks") or {}).items()}
    return _Input(part, comps, ranks, warnings, timeline_names={c.name: c.name for c in part.components})


def _parse_time(iso: str | None) -> dt.datetime | None:
    if not iso:
        return None
    try:
        t = dt.datetime.fromisoformat(iso)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def _component_order(c: _Comp) -> tuple[Any, ...]:
    """By node, the node-level meters first, then devices in index order (``gpu:2`` < ``gpu:10``)."""
    node, _, label = c.c.name.partition("/")
    head, _, num = label.rpartition(":")
    index = (head, int(num), "") if num.isdigit() else (label, -1, "")
    return (node, c.c.kind == "gpu", *index)


def _short(error: Any, limit: int = 160) -> str:
    if not error:
        return ""
    text = " ".join(str(error).split())
    return ": " + (text if len(text) <= limit else text[: limit - 3] + "...")


def rank_ranges(ranks: Iterable[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``0-2, 5, 7-8`` (sorted, deduplicated)."""
    rs = sorted(set(ranks))
    out: list[str] = []
    i = 0
    while i < len(rs):
        j = i
        while j + 1 < len(rs) and rs[j + 1] == rs[j] + 1:
            j += 1
        out.append(str(rs[i]) if i == j else f"{rs[i]}-{rs[j]}")
        i = j + 1
    return ", ".join(out)


def _who(ranks: set[int], world_size: int) -> str:
    if world_size > 1 and len(ranks) == world_size:
        return "all ranks"
    return f"rank {rank_ranges(ranks)}" if len(ranks) == 1 else f"ranks {rank_ranges(ranks)}"


def merge(
    inputs: Sequence[RankReport | RunResult],
    *,
    run_id: str,
    world_size: int,
    role: str = "group",
    node: str | None = None,
    expected_ranks: int | None = None,
    job: dict[str, Any] | None = None,
    timeline_by_kind: bool | None = None,
) -> RunResult:
    """Merge rank reports and/or earlier merges (parts) into one run.

    ``role``: ``part`` (the ranks of one ``node``) or ``group`` (the whole job of
    ``world_size`` ranks). ``expected_ranks``: how many ranks the result should hold (a
    node's local world size; default ``world_size`` for a group); fewer keeps the result
    ``running``. ``job``: facts about the job recorded in ``metadata.distributed``
    (launcher, job key, nodes expected). ``timeline_by_kind``: sum the timeline's power by
    kind (``gpu``, ``cpu``, ``ram``) instead of per component; default: above
    :data:`TIMELINE_COMPONENTS` components (a node's part of a many-node job passes ``True``:
    the group's timeline will be by kind, and the part stays small).
    """
    if not inputs:
        raise ValueError("merge() needs at least one rank report or part")
    units = [_rank_input(x, i) if isinstance(x, RankReport) else _part_input(x, i) for i, x in enumerate(inputs)]
    # ranks: one entry each (a rank reported twice keeps its latest state: final > running)
    by_rank: dict[int, dict[str, Any]] = {}
    owner: dict[int, int] = {}
    dup_ranks: list[str] = []
    for i, u in enumerate(units):
        for e in u.ranks:
            rk = int(e["rank"])
            old = by_rank.get(rk)
            if old is None or (old["status"] == "running" and e["status"] != "running"):
                if old is not None and owner[rk] != i:
                    dup_ranks.append(f"rank {rk} was reported twice: its {e['status']} report is kept")
                by_rank[rk] = e
                owner[rk] = i
    # a unit whose ranks were all superseded contributes nothing
    live = {i for i in owner.values()}
    starts = [(_parse_time(u.result.started_at), u) for i, u in enumerate(units) if i in live]
    t0 = min((t for t, _ in starts if t is not None), default=None)
    for t, u in starts:
        u.offset_s = (t - t0).total_seconds() if (t is not None and t0 is not None) else 0.0

    # devices: each <node>/<device> once, the longest reading kept
    kept: dict[str, _Comp] = {}
    dropped_j: dict[int, float] = {}
    dup_warnings: list[str] = []
    for i, u in enumerate(units):
        if i not in live:
            continue
        for c in u.comps:
            if c.c.rank is not None and owner.get(int(c.c.rank), i) != i:
                continue  # this rank's figures come from a later report
            prev = kept.get(c.c.name)
            if prev is None:
                kept[c.c.name] = c
                continue
            lose, win = (prev, c) if c.c.energy_j > prev.c.energy_j else (c, prev)
            kept[c.c.name] = win
            dropped_j[lose.origin] = dropped_j.get(lose.origin, 0.0) + lose.c.energy_j
            dup_warnings.append(
                f"{c.c.name} was measured by rank {lose.c.rank} and rank {win.c.rank}: counted once "
                f"(rank {win.c.rank}'s reading, the longer)"
            )
    for i, lost in dropped_j.items():
        total = units[i].result.energy_j
        units[i].phase_scale = max(0.0, 1.0 - lost / total) if total > 0 else 0.0

    comps = sorted(kept.values(), key=_component_order)
    energy = sum(c.c.energy_j for c in comps)
    low = sum(c.c.low_j for c in comps)
    high = sum(c.c.high_j for c in comps)
    co2e = sum(c.c.energy_j * c.factors.co2_g_per_j for c in comps)
    co2_low = sum(c.c.low_j * c.factors.co2_g_per_j for c in comps)
    co2_high = sum(c.c.high_j * c.factors.co2_g_per_j for c in comps)
    cost = sum(c.c.energy_j * c.factors.cost_per_j for c in comps)
    facility = sum(c.c.energy_j * c.factors.pue for c in comps)

    # phases: energy summed (scaled for dropped duplicates), steps/duration/entries the most
    phases: dict[str, list[Any]] = {}
    for i, u in enumerate(units):
        if i not in live:
            continue
        s = u.phase_scale
        for p in u.result.phases:
            a = phases.get(p.path)
            if a is None:
                phases[p.path] = [p.name, p.parent, p.energy_j * s, p.duration_s, p.steps, p.entries, p.co2e_g * s]
            else:
                a[2] += p.energy_j * s
                a[3] = max(a[3], p.duration_s)
                a[4] = max(a[4], p.steps)
                a[5] = max(a[5], p.entries)
                a[6] += p.co2e_g * s
    phase_objs = tuple(PhaseEnergy(n, par, e, d, st, en, co2) for n, par, e, d, st, en, co2 in phases.values())

    # time span
    ends = []
    for i, u in enumerate(units):
        if i in live:
            ends.append(u.offset_s + u.result.duration_s)
    duration = max(ends, default=0.0)
    first = units[min(live)].result if live else units[0].result
    started_at = t0.isoformat() if t0 is not None else first.started_at

    # status
    ranks_sorted = [by_rank[k] for k in sorted(by_rank)]
    expected = expected_ranks if expected_ranks is not None else (world_size if role == "group" else None)
    missing: list[int] = []
    if role == "group":
        missing = [r for r in range(world_size) if r not in by_rank]
    short = max(0, (expected or 0) - len(by_rank))
    statuses = [e["status"] for e in ranks_sorted]
    if "running" in statuses or short:
        status = "running"
    elif "failed" in statuses:
        status = "failed"
    elif "interrupted" in statuses:
        status = "interrupted"
    else:
        status = "completed"
    # the cause first: a rank that died, then those that failed (often because a peer died)
    order = {"failed": 1, "interrupted": 2, "running": 3}
    not_done = sorted(
        (e for e in ranks_sorted if e["status"] != "completed"),
        key=lambda e: (0 if e.get("died") else order.get(e["status"], 4), e["rank"]),
    )
    parts_msg = [f"rank {e['rank']} ({e['status']}{_short(e.get('error'))})" for e in not_done]
    if missing:
        parts_msg.append(f"rank {rank_ranges(missing)} (no report)")
    elif short and role == "group":
        parts_msg.append(f"{short} rank(s) (no report)")
    error = None
    if status in ("failed", "interrupted") or (status == "running" and parts_msg and role == "group"):
        error = (
            "ranks that did not complete: "
            + "; ".join(parts_msg[:20])
            + (f"; and {len(parts_msg) - 20} more" if len(parts_msg) > 20 else "")
        )

    # warnings: each text once, with the ranks that raised it
    wmap: dict[str, set[int]] = {}
    for i, u in enumerate(units):
        if i not in live:
            continue
        for text, rs in u.warnings.items():
            wmap.setdefault(text, set()).update(r for r in rs if owner.get(r) == i)
    warnings = [f"{t} ({_who(rs, world_size)})" for t, rs in wmap.items() if rs]
    warnings += dup_warnings + dup_ranks
    carbon_keys = {c.factors.key for c in comps}
    if len(carbon_keys) > 1:
        warnings.append(
            "the ranks used different carbon settings (location, PUE or price): CO2e and cost are summed "
            "with each rank's own; the location and PUE shown are the first rank's"
        )

    # metadata: the user's (first rank's, then keys only others have), the job, the breakdown
    meta: dict[str, Any] = {}
    for i in sorted(live):
        for k, v in units[i].result.metadata.items():
            if k not in ("distributed", "hardware") and k not in meta:
                meta[k] = v
    if isinstance(meta.get("slurm"), dict):
        meta["slurm"] = {k: v for k, v in meta["slurm"].items() if k not in SLURM_TASK_KEYS}
    gpus = [c for c in comps if c.c.kind == "gpu"]
    models = sorted({str(c.meter.get("model")) for c in gpus if c.meter.get("model")})
    cpu = next((c.meter for c in comps if c.c.kind == "cpu"), {})
    first_hw = dict(first.metadata.get("hardware") or {})
    nodes: dict[str, list[int]] = {}
    for e in ranks_sorted:
        nodes.setdefault(str(e["node"]), []).append(int(e["rank"]))
    meta["hardware"] = {
        **first_hw,
        "accelerator": models[0] if len(models) == 1 else (", ".join(models) or first_hw.get("accelerator")),
        "accelerator_count": len(gpus),
        "cpu": cpu.get("cpu") or first_hw.get("cpu"),
        "nodes": len(nodes),
    }
    rank_energy: dict[int, float] = {}
    for c in comps:
        if c.c.rank is not None:
            rank_energy[int(c.c.rank)] = rank_energy.get(int(c.c.rank), 0.0) + c.c.energy_j
    for e in ranks_sorted:
        e["energy_j"] = rank_energy.get(int(e["rank"]), 0.0)
    dist_meta: dict[str, Any] = {
        **(job or {}),
        "role": role,
        "group_run_id": (job or {}).get("group_run_id", run_id),
        "world_size": world_size,
        "nodes": nodes,
        "ranks": ranks_sorted,
        "ranks_reported": len(by_rank),
        "failed_ranks": [e["rank"] for e in ranks_sorted if e["status"] in ("failed", "interrupted")],
        "missing_ranks": missing,
        "warning_ranks": {t: sorted(rs) for t, rs in wmap.items() if rs},
        "rule": "node-level meters (CPU, RAM) by one rank per node; each device once per node",
    }
    if node is not None:
        dist_meta["node"] = node
    meta["distributed"] = dist_meta

    ended_at = None if status == "running" or t0 is None else (t0 + dt.timedelta(seconds=duration)).isoformat()
    return RunResult(
        run_id=run_id,
        project=first.project,
        status=status,
        started_at=started_at,
        ended_at=ended_at,
        duration_s=duration,
        energy_j=energy,
        energy_low_j=low,
        energy_high_j=high,
        facility_energy_j=facility,
        energy_kwh=facility / J_PER_KWH,
        co2e_g=co2e,
        co2e_low_g=co2_low,
        co2e_high_g=co2_high,
        cost=cost,
        currency=first.currency,
        price_per_kwh=first.price_per_kwh,
        price_source=first.price_source,
        pue=first.pue,
        pue_source=first.pue_source,
        location=dict(first.location),
        components=tuple(c.c for c in comps),
        phases=phase_objs,
        steps=max((int(e.get("steps") or 0) for e in ranks_sorted), default=0),
        provenance=weakest([c.c.provenance for c in comps]),
        warnings=tuple(dict.fromkeys(warnings)),
        timeline=merge_timelines([units[i] for i in sorted(live)], set(kept), duration, timeline_by_kind),
        metadata=meta,
        host=node if node is not None else first.host,
        error=error,
        forecast=None,
        meters=tuple(c.meter for c in comps),
    )


def merge_timelines(
    units: Sequence[_Input], keep: set[str], duration_s: float, by_kind: bool | None = None
) -> tuple[TimelinePoint, ...]:
    """Mean power of the kept components on one time grid (at most :data:`TIMELINE_POINTS` points).

    Each input's timeline is piecewise constant (a point is the mean power over the interval
    ending at ``t_s``), shifted by its start relative to the run's; the grid's bins get the
    energy of every interval that overlaps them. With many components, power is summed by
    kind (``gpu``, ``cpu``, ``ram``) so the timeline stays small.
    """
    if duration_s <= 0:
        return ()
    n_bins = TIMELINE_POINTS
    width = duration_s / n_bins
    kind_of = {}
    for u in units:
        for c in u.comps:
            kind_of[c.c.name] = c.c.kind
    if by_kind is None:
        by_kind = len(keep) > TIMELINE_COMPONENTS
    energy: dict[str, list[float]] = {}
    for u in units:
        keys: dict[str, str | None] = {}  # a timeline key of this input -> the merged series
        for raw in {k for p in u.result.timeline for k in p.power_w}:
            name = u.timeline_names.get(raw, raw)
            if name in keep:
                keys[raw] = kind_of.get(name, "gpu") if by_kind else name
            elif by_kind and raw in KINDS:  # an input that already summed by kind
                keys[raw] = raw
            else:
                keys[raw] = None
        rows = {}
        for key in set(keys.values()):
            if key is not None:
                rows[key] = energy.setdefault(key, [0.0] * n_bins)
        off, prev_t = u.offset_s, 0.0
        for p in u.result.timeline:
            a, b = off + prev_t, min(off + p.t_s, duration_s)
            prev_t = p.t_s
            if b <= a:
                continue
            i0, i1 = int(a / width), min(n_bins - 1, int(b / width))
            if i0 >= n_bins:
                continue
            head = (i0 + 1) * width - a
            tail = b - i1 * width
            for raw, w in p.power_w.items():
                key = keys[raw]
                if key is None:
                    continue
                row = rows[key]
                if i0 == i1:
                    row[i0] += w * (b - a)
                    continue
                row[i0] += w * head
                full = w * width
                for i in range(i0 + 1, i1):
                    row[i] += full
                row[i1] += w * tail
    if not energy:
        return ()
    out = []
    for i in range(n_bins):
        out.append(TimelinePoint((i + 1) * width, {k: row[i] / width for k, row in energy.items()}))
    return tuple(out)


__all__ = ["RankReport", "device_label", "merge", "merge_timelines", "rank_ranges"]
