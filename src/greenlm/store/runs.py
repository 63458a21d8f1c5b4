"""The run store: runs, components, phases and samples behind SQLAlchemy.

SQLite by default (``$GREENLM_HOME/runs.db``), any SQLAlchemy URL by setting
(``postgresql+psycopg://...``). SQLite is opened in WAL mode with a busy timeout and every
write transaction starts with ``BEGIN IMMEDIATE``, so several processes can write one file
at once without losing runs (writers queue; readers never block).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from greenlm.config import default_store_url
from greenlm.errors import RunNotFoundError, StoreError
from greenlm.store import groups
from greenlm.store import schema as S
from greenlm.tracking.result import RunResult
from greenlm.tracking.sink import Progress, RunStart, SampleRow

log = logging.getLogger(__name__)

#: A run marked running on another host, not written for this long, is shown interrupted.
STALE_AFTER_S = 15 * 60


def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


class RunStore:
    """Read and write runs. Build with :func:`open_store`."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            u = sa.engine.make_url(url)
        except sa.exc.ArgumentError as e:
            raise StoreError(
                f"Invalid store URL {url!r}: {e}. Use sqlite:///path/to/runs.db or "
                "postgresql+psycopg://user:pass@host/db."
            ) from e
        kwargs: dict[str, Any] = {"future": True}
        if _is_sqlite(url):
            if u.database and u.database != ":memory:":
                Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        else:
            kwargs["pool_pre_ping"] = True
        try:
            self.engine = sa.create_engine(u, **kwargs)
        except Exception as e:  # missing driver (psycopg), bad dialect
            raise StoreError(f"Cannot open store {url!r}: {e}") from e
        if _is_sqlite(url):
            _sqlite_pragmas(self.engine)
        self._migrate()

    # ----------------------------------------------------------------- schema
    def _migrate(self) -> None:
        try:
            with self.begin() as conn:
                if conn.dialect.name == "postgresql":  # many processes opening a new store at once
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": S.MIGRATION_LOCK_KEY})
                S.meta.create(conn, checkfirst=True)
                row = conn.execute(sa.select(S.meta.c.value).where(S.meta.c.key == "schema_version")).first()
                version = int(row[0]) if row else 0
                if version > S.SCHEMA_VERSION:
                    raise StoreError(
                        f"The store {self.url} has schema version {version}, newer than this "
                        f"greenlm understands ({S.SCHEMA_VERSION}): upgrade greenlm."
                    )
                for v in range(version, S.SCHEMA_VERSION):
                    S.MIGRATIONS[v](conn)
                if version != S.SCHEMA_VERSION:
                    if row:
                        conn.execute(
                            S.meta.update().where(S.meta.c.key == "schema_version").values(value=str(S.SCHEMA_VERSION))
                        )
                    else:
                        conn.execute(S.meta.insert().values(key="schema_version", value=str(S.SCHEMA_VERSION)))
        except StoreError:
            raise
        except sa.exc.SQLAlchemyError as e:
            raise StoreError(f"Cannot open or migrate store {self.url}: {e}") from e

    @property
    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(S.meta.c.value).where(S.meta.c.key == "schema_version")).first()
            return int(row[0]) if row else 0

    @contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        """A write transaction, retried when SQLite reports the database locked."""
        delay = 0.05
        for attempt in range(8):
            try:
                with self.engine.begin() as conn:
                    yield conn
                return
            except sa.exc.OperationalError as e:
                if "locked" not in str(e).lower() or attempt == 7:
                    raise
                time.sleep(delay)
                delay *= 2

    # ----------------------------------------------------------------- writes
    def begin_run(self, start: RunStart) -> None:
        """Record a run as running (called when a window opens)."""
        row = {
            "run_id": start.run_id,
            "project": start.project,
            "status": "running",
            "started_at": start.started_at,
            "updated_at": time.time(),
            "duration_s": 0.0,
            "energy_j": 0.0,
            "facility_energy_j": 0.0,
            "co2e_g": 0.0,
            "pue": start.pue,
            "location_code": start.location.get("code"),
            "intensity_g_per_kwh": start.location.get("intensity_g_per_kwh"),
            "host": start.host,
            "pid": start.pid,
            "process_start_time": start.process_start_time,
            "start_json": json.dumps(
                {"location": start.location, "meters": start.meters, "metadata": start.metadata}, default=str
            ),
        }
        with self.begin() as conn:
            conn.execute(S.runs.insert().values(**row))

    def add_samples(self, run_id: str, rows: list[SampleRow], progress: Progress) -> None:
        """Append samples and update the running totals (one transaction)."""
        with self.begin() as conn:
            if rows:
                conn.execute(
                    S.samples.insert(),
                    [
                        {
                            "run_id": run_id,
                            "t_s": r.t_s,
                            "component": r.component,
                            "energy_j": r.energy_j,
                            "power_w": r.power_w,
                        }
                        for r in rows
                    ],
                )
            conn.execute(
                S.runs.update()
                .where(S.runs.c.run_id == run_id)
                .values(
                    updated_at=time.time(),
                    duration_s=progress.duration_s,
                    energy_j=progress.energy_j,
                    facility_energy_j=progress.facility_energy_j,
                    co2e_g=progress.co2e_g,
                )
            )
            for name, e in progress.components.items():
                _upsert(conn, S.components, {"run_id": run_id, "name": name}, {"energy_j": e})

    def save_result(self, result: RunResult | dict[str, Any], *, conn: sa.Connection | None = None) -> None:
        """Write a finished run (idempotent: saving the same run again replaces it).

        ``conn``: write inside that open transaction instead of a new one. A node's *part*
        of a distributed run (``metadata.distributed.role == "part"``) also updates its group
        run (:mod:`greenlm.store.groups`).
        """
        r = result if isinstance(result, RunResult) else RunResult.from_dict(result)
        d = r.to_dict(timeline=True)
        with contextlib.nullcontext(conn) if conn is not None else self.begin() as conn:
            values = {
                "project": r.project,
                "status": r.status,
                "started_at": r.started_at,
                "ended_at": r.ended_at,
                "updated_at": time.time(),
                "duration_s": r.duration_s,
                "energy_j": r.energy_j,
                "facility_energy_j": r.facility_energy_j,
                "co2e_g": r.co2e_g,
                "cost": r.cost,
                "currency": r.currency,
                "pue": r.pue,
                "location_code": r.location.get("code"),
                "intensity_g_per_kwh": r.location.get("intensity_g_per_kwh"),
                "provenance": r.provenance,
                "host": r.host,
                "result_json": json.dumps(d, default=str),
            }
            _upsert(conn, S.runs, {"run_id": r.run_id}, values)
            conn.execute(S.components.delete().where(S.components.c.run_id == r.run_id))
            if r.components:
                conn.execute(
                    S.components.insert(),
                    [
                        {
                            "run_id": r.run_id,
                            "name": c.name,
                            "kind": c.kind,
                            "energy_j": c.energy_j,
                            "provenance": c.provenance,
                            "low_j": c.low_j,
                            "high_j": c.high_j,
                        }
                        for c in r.components
                    ],
                )
            conn.execute(S.phases.delete().where(S.phases.c.run_id == r.run_id))
            if r.phases:
                conn.execute(
                    S.phases.insert(),
                    [
                        {
                            "run_id": r.run_id,
                            "path": p.path,
                            "name": p.name,
                            "parent": p.parent,
                            "energy_j": p.energy_j,
                            "duration_s": p.duration_s,
                            "steps": p.steps,
                        }
                        for p in r.phases
                    ],
                )
        if groups.is_part(r):
            groups.assemble(self, r)

    def mark(self, run_id: str, status: str) -> None:
        """Set a run's status (e.g. a distributed run whose rank died)."""
        with self.begin() as conn:
            n = conn.execute(
                S.runs.update().where(S.runs.c.run_id == run_id).values(status=status, updated_at=time.time())
            ).rowcount
        if not n:
            raise RunNotFoundError(f"No run {run_id!r} in {self.url}.")

    def delete_run(self, run_id: str) -> None:
        with self.begin() as conn:
            for t in (S.samples, S.phases, S.components):
                conn.execute(t.delete().where(t.c.run_id == run_id))
            conn.execute(S.runs.delete().where(S.runs.c.run_id == run_id))

    # ----------------------------------------------------------------- reads
    def list_runs(
        self,
        project: str | None = None,
        status: str | None = None,
        search: str | None = None,
        limit: int | None = None,
        since: str | None = None,
        include_rank_rows: bool = False,
    ) -> list[dict[str, Any]]:
        """Runs, newest first, as result-JSON dicts (partial for running/killed runs).

        Per-rank rows of distributed runs (``metadata.distributed.role == "rank"``, kept so a
        rank's energy survives its death) are hidden once their merged run is stored, unless
        ``include_rank_rows``.
        """
        q = sa.select(S.runs).order_by(S.runs.c.started_at.desc())
        if project:
            q = q.where(S.runs.c.project == project)
        if since:
            q = q.where(S.runs.c.started_at >= since)
        if search:
            like = f"%{search}%"
            q = q.where(
                sa.or_(S.runs.c.project.ilike(like), S.runs.c.run_id.ilike(like), S.runs.c.location_code.ilike(like))
            )
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
            out = [self._as_dict(conn, dict(r)) for r in rows]
        if not include_rank_rows:
            out = _hide_merged_rank_rows(out)
        if status:
            out = [d for d in out if d["status"] == status]
        return out[:limit] if limit else out

    def get_run(self, run_id: str) -> dict[str, Any]:
        """One run by id or unique id prefix (at least 4 characters)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(S.runs).where(S.runs.c.run_id == run_id)).mappings().first()
            if row is None and len(run_id) >= 4:
                hits = (
                    conn.execute(sa.select(S.runs).where(S.runs.c.run_id.like(f"{run_id}%")).limit(2)).mappings().all()
                )
                if len(hits) > 1:
                    raise RunNotFoundError(f"Run id prefix {run_id!r} is ambiguous; give more characters.")
                row = hits[0] if hits else None
            if row is None:
                raise RunNotFoundError(f"No run {run_id!r} in {self.url}; `greenlm runs list` shows the ids.")
            return self._as_dict(conn, dict(row))

    def get_samples(self, run_id: str) -> list[dict[str, Any]]:
        """Every stored sample of a run, in time order."""
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    sa.select(S.samples.c.t_s, S.samples.c.component, S.samples.c.energy_j, S.samples.c.power_w)
                    .where(S.samples.c.run_id == run_id)
                    .order_by(S.samples.c.t_s, S.samples.c.id)
                )
                .mappings()
                .all()
            )
        return [dict(r) for r in rows]

    def _as_dict(self, conn: sa.Connection, row: dict[str, Any]) -> dict[str, Any]:
        if row.get("result_json"):
            d: dict[str, Any] = json.loads(row["result_json"])
            d.pop("timeline", None)
            d["status"] = self.effective_status(row)
            return d
        return self._partial(conn, row)

    def _partial(self, conn: sa.Connection, row: dict[str, Any]) -> dict[str, Any]:
        """A run without a final result (running, or killed): totals from the last flush."""
        start = json.loads(row["start_json"] or "{}")
        meters = {m["name"]: m for m in start.get("meters", [])}
        comps = conn.execute(sa.select(S.components).where(S.components.c.run_id == row["run_id"])).mappings().all()
        pue = row["pue"] or 1.0
        status = self.effective_status(row)
        warnings = []
        if status == "interrupted":
            warnings.append("run ended without closing its window (killed?): figures are up to the last flush")
        energy = row["energy_j"] or 0.0
        return {
            "schema_version": 1,
            "run_id": row["run_id"],
            "project": row["project"],
            "status": status,
            "started_at": row["started_at"],
            "ended_at": None,
            "duration_s": row["duration_s"],
            "energy_j": energy,
            "energy_low_j": None,
            "energy_high_j": None,
            "facility_energy_j": row["facility_energy_j"],
            "energy_kwh": row["facility_energy_j"] / 3.6e6,
            "co2e_g": row["co2e_g"],
            "co2e_low_g": None,
            "co2e_high_g": None,
            "cost": None,
            "currency": None,
            "pue": pue,
            "pue_source": "",
            "location": start.get(
                "location", {"code": row["location_code"], "intensity_g_per_kwh": row["intensity_g_per_kwh"]}
            ),
            "components": [
                {
                    "name": c["name"],
                    "kind": meters.get(c["name"], {}).get("kind", c["kind"]),
                    "energy_j": c["energy_j"],
                    "provenance": meters.get(c["name"], {}).get("provenance", c["provenance"]),
                    "low_j": None,
                    "high_j": None,
                    "scope": meters.get(c["name"], {}).get("scope", "device"),
                }
                for c in comps
            ],
            "phases": [],
            "steps": 0,
            "provenance": None,
            "warnings": warnings,
            "metadata": start.get("metadata", {}),
            "host": row["host"],
            "error": None,
            "forecast": None,
            "meters": list(meters.values()),
        }

    @staticmethod
    def effective_status(row: dict[str, Any]) -> str:
        """``running`` rows whose process is gone (or silent for long) read as interrupted."""
        if row["status"] != "running":
            return str(row["status"])
        if row.get("host") == socket.gethostname() and row.get("pid"):
            import psutil

            try:
                p = psutil.Process(int(row["pid"]))
                alive = abs(p.create_time() - float(row.get("process_start_time") or 0)) < 1.0
                alive = alive and p.status() != psutil.STATUS_ZOMBIE
            except psutil.Error:
                alive = False
            return "running" if alive else "interrupted"
        if time.time() - float(row.get("updated_at") or 0) > STALE_AFTER_S:
            return "interrupted"
        return "running"


def _hide_merged_rank_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop per-rank rows of distributed runs whose merged (group) run is stored.

    Rank rows of a group with no merged run (rank 0 was killed before it could write one)
    stay visible: they are then the only record of what was measured.
    """

    def dist(d: dict[str, Any]) -> dict[str, Any]:
        return (d.get("metadata") or {}).get("distributed") or {}

    merged = {dist(d).get("group_run_id") for d in runs if dist(d).get("role") == "group"}
    return [d for d in runs if not (dist(d).get("role") in ("rank", "part") and dist(d).get("group_run_id") in merged)]


def _upsert(conn: sa.Connection, table: sa.Table, key: dict[str, Any], values: dict[str, Any]) -> None:
    cond = sa.and_(*(table.c[k] == v for k, v in key.items()))
    n = conn.execute(table.update().where(cond).values(**values)).rowcount
    if not n:
        conn.execute(table.insert().values(**key, **values))


def _sqlite_pragmas(engine: sa.Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


_STORES: dict[tuple[int, str], RunStore] = {}
_STORES_LOCK = threading.Lock()


def open_store(url: str | None = None) -> RunStore:
    """The store at ``url`` (default: ``$GREENLM_STORE`` or SQLite in ``$GREENLM_HOME``).

    Stores are cached per process and URL (a fork gets its own engine).
    """
    u = url or default_store_url()
    key = (os.getpid(), u)
    with _STORES_LOCK:
        st = _STORES.get(key)
        if st is None:
            st = _STORES[key] = RunStore(u)
        return st


def clear_store_cache() -> None:
    """Dispose cached engines (tests)."""
    with _STORES_LOCK:
        for st in _STORES.values():
            st.engine.dispose()
        _STORES.clear()
