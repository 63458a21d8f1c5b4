"""The store assembles a distributed job's run from the parts its nodes send.

Each node of a distributed run sends one *part* (the merge of its ranks, see
:mod:`greenlm.tracking.group`): a run whose id is ``<group run id>.<node key>`` and whose
``metadata.distributed.role`` is ``part``. Saving a part (:meth:`RunStore.save_result`, also
what the team server does with a run it receives) updates the *group* run, id ``<group run
id>``, in a transaction of its own that first locks the group's row (``SELECT ... FOR
UPDATE`` on PostgreSQL; SQLite serialises writers), so parts arriving together from many
nodes are never lost to each other:

* while some part is still running, or fewer nodes than the job has reported: the group row
  is a running run with the summed totals of its parts (a few columns, no JSON parsed but
  the part in hand) and their components, so ``runs list`` shows one growing run;
* when every part is final and every node reported: the parts are merged
  (:func:`greenlm.tracking.merge.merge`, linear in the number of ranks) into the group's
  final result, once. A group that never completes (a node died) stays ``running`` with its
  parts' totals and, like any run that stops writing, reads as interrupted after
  :data:`~greenlm.store.runs.STALE_AFTER_S`; its metadata names the nodes that reported.

The parts stay in the store (hidden from run lists once their group exists) as the
per-node evidence.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from greenlm.store import schema as S
from greenlm.tracking.merge import merge
from greenlm.tracking.result import RunResult

if TYPE_CHECKING:
    from greenlm.store.runs import RunStore

log = logging.getLogger(__name__)


def _dist(r: RunResult) -> dict[str, Any]:
    d = r.metadata.get("distributed")
    return d if isinstance(d, dict) else {}


def is_part(r: RunResult) -> bool:
    """Whether ``r`` is one node's part of a distributed run."""
    d = _dist(r)
    return d.get("role") == "part" and isinstance(d.get("group_run_id"), str)


def group_id(r: RunResult) -> str:
    """The group run id of part ``r``."""
    return str(_dist(r)["group_run_id"])


def _range(gid: str) -> sa.ColumnElement[bool]:
    # every "<gid>.<node key>", by the primary key's order: '/' follows '.'
    return sa.and_(S.runs.c.run_id > f"{gid}.", S.runs.c.run_id < f"{gid}/")


def _ensure_row(conn: sa.Connection, gid: str, part: RunResult, owner: str | None) -> None:
    values = {
        "run_id": gid,
        "owner": owner,
        "project": part.project,
        "status": "running",
        "started_at": part.started_at,
        "updated_at": time.time(),
        "duration_s": 0.0,
        "energy_j": 0.0,
        "facility_energy_j": 0.0,
        "co2e_g": 0.0,
        "pue": part.pue,
        "location_code": part.location.get("code"),
        "intensity_g_per_kwh": part.location.get("intensity_g_per_kwh"),
        "host": "",
    }
    name = conn.dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects import postgresql

        conn.execute(postgresql.insert(S.runs).values(**values).on_conflict_do_nothing(index_elements=["run_id"]))
        return
    if name == "sqlite":
        from sqlalchemy.dialects import sqlite

        conn.execute(sqlite.insert(S.runs).values(**values).on_conflict_do_nothing(index_elements=["run_id"]))
        return
    exists = conn.execute(sa.select(S.runs.c.run_id).where(S.runs.c.run_id == gid)).first()
    if exists is None:
        try:
            with conn.begin_nested():
                conn.execute(S.runs.insert().values(**values))
        except sa.exc.IntegrityError:
            pass


def assemble(store: RunStore, part: RunResult, *, owner: str | None = None) -> None:
    """Update the group run of ``part`` (just saved) from every part stored for it.

    ``owner``: the owner a new group run is created for (the owner of its first part).
    """
    d = _dist(part)
    gid = str(d["group_run_id"])
    with store.begin() as conn:
        _ensure_row(conn, gid, part, owner)
        conn.execute(sa.select(S.runs.c.run_id).where(S.runs.c.run_id == gid).with_for_update()).first()
        rows = (
            conn.execute(
                sa.select(
                    S.runs.c.run_id,
                    S.runs.c.status,
                    S.runs.c.started_at,
                    S.runs.c.duration_s,
                    S.runs.c.energy_j,
                    S.runs.c.facility_energy_j,
                    S.runs.c.co2e_g,
                    S.runs.c.cost,
                    S.runs.c.host,
                ).where(_range(gid))
            )
            .mappings()
            .all()
        )
        expected = d.get("nodes_expected")
        final = [r for r in rows if r["status"] != "running"]
        complete = bool(rows) and len(final) == len(rows) and (not isinstance(expected, int) or len(rows) >= expected)
        if complete:
            parts = []  # one part's JSON at a time: a 1,000-node job's parts are ~80 MB of text
            query = sa.select(S.runs.c.result_json).where(_range(gid)).execution_options(yield_per=16)
            for text in conn.execute(query).scalars():
                if text:
                    parts.append(RunResult.from_dict(json.loads(text)))
            job: dict[str, Any] = {k: d[k] for k in ("launcher", "nodes_expected", "window") if k in d}
            job["nodes_reported"] = len(parts)
            group = merge(parts, run_id=gid, world_size=int(d.get("world_size") or 1), role="group", job=job)
            store.save_result(group, conn=conn)
            return
        _interim(conn, gid, part, rows, d)


def _interim(conn: sa.Connection, gid: str, part: RunResult, rows: Sequence[Any], d: dict[str, Any]) -> None:
    """The group while parts are missing or running: summed totals, the parts' components."""
    starts, ends = [], []
    for r in rows:
        try:
            t = dt.datetime.fromisoformat(r["started_at"])
        except (TypeError, ValueError):
            continue
        starts.append(t)
        ends.append(t + dt.timedelta(seconds=float(r["duration_s"] or 0.0)))
    t0 = min(starts) if starts else None
    span = (max(ends) - t0).total_seconds() if t0 is not None else float(part.duration_s)
    user = {k: v for k, v in part.metadata.items() if k != "distributed"}
    meta = {
        **user,
        "distributed": {
            "role": "group",
            "group_run_id": gid,
            "world_size": d.get("world_size"),
            "nodes_expected": d.get("nodes_expected"),
            "nodes_reported": len(rows),
            "node_parts": {str(r["host"]): str(r["status"]) for r in rows},
            "launcher": d.get("launcher"),
            "window": d.get("window"),
            "assembled": False,
        },
    }
    start = {"location": part.location, "meters": [dict(m) for m in part.meters], "metadata": meta}
    conn.execute(
        S.runs.update()
        .where(S.runs.c.run_id == gid)
        .values(
            status="running",
            started_at=t0.isoformat() if t0 is not None else part.started_at,
            updated_at=time.time(),
            duration_s=span,
            energy_j=sum(float(r["energy_j"] or 0.0) for r in rows),
            facility_energy_j=sum(float(r["facility_energy_j"] or 0.0) for r in rows),
            co2e_g=sum(float(r["co2e_g"] or 0.0) for r in rows),
            cost=sum(float(r["cost"] or 0.0) for r in rows),
            result_json=None,
            start_json=json.dumps(start, default=str),
        )
    )
    node = _dist(part).get("node")
    prefix = f"{node}/" if node else None
    if prefix:
        conn.execute(
            S.components.delete().where(
                S.components.c.run_id == gid, sa.func.substr(S.components.c.name, 1, len(prefix)) == prefix
            )
        )
    if part.components:
        conn.execute(
            S.components.insert(),
            [
                {
                    "run_id": gid,
                    "name": c.name,
                    "kind": c.kind,
                    "energy_j": c.energy_j,
                    "provenance": c.provenance,
                    "low_j": c.low_j,
                    "high_j": c.high_j,
                }
                for c in part.components
            ],
        )


__all__ = ["assemble", "is_part"]
