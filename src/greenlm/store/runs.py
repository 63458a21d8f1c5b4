"""The run store: runs, components, phases and samples behind SQLAlchemy.

SQLite by default (``$GREENLM_HOME/runs.db``), any SQLAlchemy URL by setting
(``postgresql+psycopg://...``). SQLite is opened in WAL mode with a busy timeout and every
write transaction starts with ``BEGIN IMMEDIATE``, so several processes can write one file
at once without losing runs (writers queue; readers never block).

Two ways to open a store (:func:`open_store`):

- **for writing** (the tracker's sink, the team server, ``server token``): creates the file
  and its directory if needed and migrates the schema;
- **for reading** (``runs list/show/export``, the dashboard, reports): writes nothing. It
  does not create a missing file or directory (an explicit URL that points nowhere is a
  :class:`StoreError`; the default store not there yet reads as empty), does not migrate
  (any version from ``schema.READABLE_FROM`` on is read as it is), opens SQLite with
  ``mode=ro``, and falls back to ``immutable=1`` when the file sits where nothing can be
  written (a read-only mount or directory), PostgreSQL with read-only transactions.

Every read returns typed records (:mod:`greenlm.store.records`). A row that cannot be read
(bad JSON, a non-numeric value, a missing field) becomes a :class:`StoredRun` with
``damaged`` set: it is listed with its id and the reason, and the other runs are unaffected.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import math
import os
import socket
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from greenlm._files import private_dir, private_file
from greenlm.carbon.accounting import J_PER_KWH, CarbonConfig
from greenlm.carbon.intensity import GridIntensity
from greenlm.carbon.price import Price, resolve_price
from greenlm.carbon.pue import Pue
from greenlm.config import default_store_url
from greenlm.errors import ConfigError, RunNotFoundError, RunOwnedError, StoreError
from greenlm.store import groups
from greenlm.store import samples as SM
from greenlm.store import schema as S
from greenlm.store.records import PowerTrace, SamplePage, StoredRun, TokenRecord
from greenlm.store.urls import redact_url
from greenlm.tracking.result import (
    JSON_KEYS,
    SCHEMA_VERSION,
    STATUSES,
    ComponentEnergy,
    PhaseEnergy,
    RunResult,
    totals_from_components,
)
from greenlm.tracking.sink import Progress, RunStart, SampleRow

log = logging.getLogger(__name__)

#: A run marked running on another host, not written for this long, is shown interrupted.
STALE_AFTER_S = 15 * 60
#: Warning on a partial run whose process is gone.
KILLED_WARNING = "run ended without closing its window (killed?): figures are up to the last flush"


def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


#: The database password, for a store URL that has none (so it need not be on a command line).
PASSWORD_ENV = "GREENLM_STORE_PASSWORD"
#: A file holding the database password (one line; a final newline is not part of it).
PASSWORD_FILE_ENV = "GREENLM_STORE_PASSWORD_FILE"


def store_password() -> str | None:
    """The store password from ``$GREENLM_STORE_PASSWORD`` or the file ``$GREENLM_STORE_PASSWORD_FILE``.

    None when neither is set. Used only for a URL without a password of its own; the
    password never becomes part of the URL greenlm shows or keeps.
    """
    direct = os.environ.get(PASSWORD_ENV) or None
    file = os.environ.get(PASSWORD_FILE_ENV) or None
    if direct is not None and file is not None:
        raise ConfigError(f"Both {PASSWORD_ENV} and {PASSWORD_FILE_ENV} are set: set only one.")
    if direct is not None:
        return direct
    if file is None:
        return None
    path = Path(file).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise StoreError(f"{PASSWORD_FILE_ENV}={path}: the file is not UTF-8 text.") from None
    except OSError as e:
        raise StoreError(f"{PASSWORD_FILE_ENV}={path}: cannot read the password file ({e.strerror or e}).") from None
    password = text.rstrip("\r\n")
    if not password or "\n" in password:
        raise StoreError(f"{PASSWORD_FILE_ENV}={path}: the file must hold the password on one line.")
    return password


class _Damaged(Exception):
    """A row cannot be read; the message says which part and why."""


class RunStore:
    """Read and write runs. Build with :func:`open_store`."""

    def __init__(self, url: str, *, read_only: bool = False, missing_ok: bool = False) -> None:
        self.url = url
        self.read_only = read_only
        #: SQLite on a read-only mount or directory, read with ``immutable=1``.
        self.immutable = False
        self._missing_ok = missing_ok
        self._path: Path | None = None
        self._said: set[tuple[str, str]] = set()
        self.engine: sa.Engine | None = None
        try:
            self._u = sa.engine.make_url(url)
        except sa.exc.ArgumentError as e:
            raise StoreError(
                f"Invalid store URL {redact_url(url)!r}: {e}. Use sqlite:///path/to/runs.db or "
                "postgresql+psycopg://user@host/db (the password in GREENLM_STORE_PASSWORD_FILE)."
            ) from e
        if not _is_sqlite(url) and self._u.password is None:
            password = store_password()
            if password is not None:
                self._u = self._u.set(password=password)
        if read_only:
            self._open_reader()
        else:
            self._open_writer()

    @property
    def display_url(self) -> str:
        """The URL as greenlm prints it (password masked)."""
        return redact_url(self.url)

    # ----------------------------------------------------------------- opening
    def _open_writer(self) -> None:
        u = self._u
        kwargs: dict[str, Any] = {"future": True}
        if _is_sqlite(self.url):
            if u.database and u.database != ":memory:":
                path = Path(u.database).expanduser()
                try:
                    private_dir(path.parent)
                except OSError as e:
                    raise StoreError(f"Cannot create the store's folder {path.parent}: {e.strerror or e}") from e
                try:
                    # 0600 before SQLite opens it: SQLite gives its -wal and -shm files the same mode
                    private_file(path)
                except OSError as e:
                    raise StoreError(f"Cannot create the store {path}: {e.strerror or e}") from e
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        else:
            kwargs["pool_pre_ping"] = True
        self.engine = self._create_engine(u, kwargs)
        if _is_sqlite(self.url):
            _sqlite_pragmas(self.engine, write=True)
        self._migrate()

    def _open_reader(self) -> None:
        u = self._u
        if _is_sqlite(self.url):
            if not u.database or u.database == ":memory:":
                raise StoreError("An in-memory SQLite store has nothing to read: give a file, sqlite:///path/runs.db.")
            self._path = Path(u.database).expanduser()
            if not self._path.exists():
                if self._missing_ok:
                    log.debug("store %s does not exist yet: reads as empty", self._path)
                    return
                raise StoreError(
                    f"No run store at {self._path}: the file does not exist (nothing was created). "
                    "Check --store / GREENLM_STORE; a store is created when a run is recorded "
                    "(greenlm track -- CMD, or EnergyTracker(store=URL))."
                )
            if self._path.is_dir():
                raise StoreError(
                    f"The store path {self._path} is a directory: give the database file, e.g. .../runs.db."
                )
            self._connect_sqlite_reader()
        else:
            kwargs: dict[str, Any] = {"future": True, "pool_pre_ping": True}
            if u.get_backend_name() == "postgresql":
                kwargs["connect_args"] = {"options": "-c default_transaction_read_only=on"}
            self.engine = self._create_engine(u, kwargs)
        self._check_readable()

    def _connect_sqlite_reader(self) -> None:
        assert self._path is not None
        path = self._path

        def connect(immutable: bool) -> sqlite3.Connection:
            q = "mode=ro&immutable=1" if immutable else "mode=ro"
            uri = f"file:{urllib.parse.quote(str(path.resolve()))}?{q}"
            conn = sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()  # opening is lazy: force it
            return conn

        try:
            connect(False).close()
        except sqlite3.OperationalError as e:
            # A WAL store needs its -shm file. When there is none (no writer has the store open:
            # a writer keeps one) and this reader cannot create it (a read-only mount, folder or
            # file), the store is read as immutable: without locks, which is safe while nobody
            # writes it. A writer that has the store open has an -shm file, and then mode=ro works.
            shm = path.with_name(path.name + "-shm")
            cannot_write = not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))
            if ("unable to open" in str(e) or "readonly" in str(e)) and cannot_write and not shm.exists():
                connect(True).close()
                self.immutable = True
            else:
                raise StoreError(f"Cannot read the store {path}: {e}") from e
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{path} is not a greenlm run store (not an SQLite database: {e}).") from e
        immutable = self.immutable
        # a file's pool (the "sqlite://" placeholder URL would get the in-memory one-per-thread pool)
        self.engine = sa.create_engine(
            "sqlite://", creator=lambda: connect(immutable), poolclass=sa.pool.QueuePool, future=True
        )
        _sqlite_pragmas(self.engine, write=False)

    def _create_engine(self, u: sa.URL, kwargs: dict[str, Any]) -> sa.Engine:
        try:
            return sa.create_engine(u, **kwargs)
        except Exception as e:  # missing driver (psycopg), bad dialect
            raise StoreError(f"Cannot open store {self.display_url!r}: {e}") from e

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
                        f"The store {self.display_url} has schema version {version}, newer than this "
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
            if _is_read_only_error(e) or self._sqlite_file_not_writable():
                raise StoreError(
                    f"Cannot write the store {self.display_url}: it is read-only (file mode, directory or "
                    "mount). It can still be read (greenlm runs list --store URL, greenlm dashboard); "
                    "to record runs, give a writable store."
                ) from e
            raise StoreError(f"Cannot open or migrate store {self.display_url}: {e}") from e

    def _sqlite_file_not_writable(self) -> bool:
        if not _is_sqlite(self.url) or not self._u.database or self._u.database == ":memory:":
            return False
        path = Path(self._u.database).expanduser()
        return path.exists() and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))

    def _check_readable(self) -> None:
        """A reader's check of the schema: readable as it is, or a clear error (nothing written)."""
        try:
            version = self._read_version()
        except sa.exc.SQLAlchemyError as e:
            raise StoreError(f"Cannot read the store {self.display_url}: {_first_line(e)}") from e
        if version is None:
            raise StoreError(
                f"{self.display_url} is not a greenlm run store (it has no greenlm_meta table). "
                "Check --store / GREENLM_STORE."
            )
        if version > S.SCHEMA_VERSION:
            raise StoreError(
                f"The store {self.display_url} has schema version {version}, newer than this greenlm "
                f"understands ({S.SCHEMA_VERSION}): upgrade greenlm."
            )
        if version < S.READABLE_FROM:
            how = (
                "it is read-only here, so it cannot be migrated: open it once with a greenlm that can "
                "write it (its owner, or a writable copy), then read it"
                if self._not_writable()
                else "any command that writes it migrates it first (greenlm track, greenlm server serve)"
            )
            raise StoreError(
                f"The store {self.display_url} has schema version {version} and needs a migration to "
                f"version {S.SCHEMA_VERSION} before this greenlm can read it; {how}."
            )
        self._version = version

    def _not_writable(self) -> bool:
        if self._path is not None:
            return self.immutable or not os.access(self._path, os.W_OK) or not os.access(self._path.parent, os.W_OK)
        return True  # opened read-only: this greenlm will not migrate it

    def _read_version(self) -> int | None:
        with self._read() as conn:
            if conn is None:
                return S.SCHEMA_VERSION
            if not sa.inspect(conn).has_table("greenlm_meta"):
                return None
            row = conn.execute(sa.select(S.meta.c.value).where(S.meta.c.key == "schema_version")).first()
            return int(row[0]) if row else 0

    @property
    def schema_version(self) -> int:
        """The schema version of the database (0 for a default store not created yet)."""
        with self._read() as conn:
            if conn is None:
                return 0
            row = conn.execute(sa.select(S.meta.c.value).where(S.meta.c.key == "schema_version")).first()
            return int(row[0]) if row else 0

    # ----------------------------------------------------------------- connections
    @contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite, waiting up to 30 s for the lock)."""
        if self.read_only or self.engine is None:
            raise StoreError(
                f"The store {self.display_url} is open for reading only: nothing can be written through it "
                "(a dashboard opened with `greenlm dashboard` reads; `greenlm server serve` accepts runs)."
            )
        delay = 0.05
        for attempt in range(8):
            try:
                conn = self.engine.connect()
            except sa.exc.OperationalError as e:
                if "locked" not in str(e).lower() or attempt == 7:
                    raise
                time.sleep(delay)
                delay *= 2
                continue
            with conn:
                conn.execution_options(greenlm_write=True)
                with conn.begin():
                    yield conn
            return

    @contextmanager
    def _read(self) -> Iterator[sa.Connection | None]:
        """A read transaction (one snapshot); None for a default store that does not exist yet."""
        if self.engine is None:
            if self._path is not None and self._path.exists():
                self._connect_sqlite_reader()  # created since we looked
                self._check_readable()
            else:
                yield None
                return
        assert self.engine is not None
        with self.engine.connect() as conn:
            yield conn

    # ----------------------------------------------------------------- writes
    def begin_run(self, start: RunStart, *, owner: str | None = None, admin: bool = False) -> bool:
        """Record a run as running; False when a run with this id is already stored.

        Race-free: concurrent calls with one id create one row (``INSERT ... ON CONFLICT DO
        NOTHING`` on SQLite and PostgreSQL), and the others get False. ``owner`` (a team
        server's writer): a new run is created as that owner's, and a run that exists must be
        that owner's (:class:`RunOwnedError` otherwise) unless ``admin``. Without an owner
        (the tracker writing its own store) nothing is checked.
        """
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
            "currency": start.currency or None,
            "location_code": start.location.get("code"),
            "intensity_g_per_kwh": start.location.get("intensity_g_per_kwh"),
            "host": start.host,
            "pid": start.pid,
            "process_start_time": start.process_start_time,
            "start_json": json.dumps(
                {
                    "location": start.location,
                    "meters": start.meters,
                    "metadata": start.metadata,
                    "pue_source": start.pue_source,
                    "price_per_kwh": start.price_per_kwh,
                    "currency": start.currency,
                    "price_source": start.price_source,
                },
                default=str,
            ),
        }
        if owner is not None:
            row["owner"] = owner
        with self.begin() as conn:
            if _insert_ignore(conn, S.runs, row):
                return True
            self._check_owner(conn, start.run_id, owner, admin)
            return False

    def add_samples(
        self, run_id: str, rows: list[SampleRow], progress: Progress, *, owner: str | None = None, admin: bool = False
    ) -> None:
        """Append samples and update the running totals (one transaction).

        The run's samples that have become old are downsampled in the same transaction
        (:mod:`greenlm.store.samples`). Idempotent: rows at or before a component's last
        stored sample time are skipped (a batch delivered twice after a crash, a spool
        replay), and a run that already has its final result keeps its totals. ``owner``:
        the run must be that owner's unless ``admin`` (:class:`RunOwnedError`).
        """
        with self.begin() as conn:
            row = conn.execute(sa.select(S.runs.c.result_json).where(S.runs.c.run_id == run_id)).first()
            if row is None:
                raise RunNotFoundError(f"No run {run_id!r} in {self.display_url}: its start was not recorded.")
            self._check_owner(conn, run_id, owner, admin)
            last = dict(
                conn.execute(
                    sa.select(S.samples.c.component, sa.func.max(S.samples.c.t_s))
                    .where(S.samples.c.run_id == run_id)
                    .group_by(S.samples.c.component)
                ).all()
            )
            rows = [r for r in rows if last.get(r.component) is None or r.t_s > last[r.component]]
            finished = bool(row[0])
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
            if finished:
                return
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
            self._compact(conn, [run_id], time.time())

    def save_result(
        self,
        result: RunResult | Mapping[str, Any],
        *,
        conn: sa.Connection | None = None,
        owner: str | None = None,
        admin: bool = False,
    ) -> bool:
        """Write a finished run; True when it was new (saving it again replaces it).

        ``conn``: write inside that open transaction instead of a new one. A node's *part*
        of a distributed run (``metadata.distributed.role == "part"``) also updates its group
        run (:mod:`greenlm.store.groups`).
        ``owner``: a new run is created as that owner's; an existing one is replaced only if it
        is that owner's, or by an ``admin`` (:class:`RunOwnedError` otherwise, nothing written).
        A part may join only a group run of the same owner: one tenant cannot add nodes to
        another tenant's job.
        """
        r = result if isinstance(result, RunResult) else RunResult.from_dict(dict(result))
        d = r.to_dict(timeline=True)
        part = groups.is_part(r)
        if part and owner is not None and not admin:
            with self.begin() as c:
                gid = groups.group_id(r)
                if c.execute(sa.select(S.runs.c.run_id).where(S.runs.c.run_id == gid)).first() is not None:
                    self._check_owner(c, gid, owner, admin)
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
            if owner is None:
                created = _upsert(conn, S.runs, {"run_id": r.run_id}, values)
            else:
                created = _insert_ignore(conn, S.runs, {"run_id": r.run_id, **values, "owner": owner})
                if not created:
                    self._check_owner(conn, r.run_id, owner, admin)
                    conn.execute(S.runs.update().where(S.runs.c.run_id == r.run_id).values(**values))
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
            self._compact(conn, [r.run_id], time.time())
        if part:
            groups.assemble(self, r, owner=owner)
        return created

    def mark(self, run_id: str, status: str) -> None:
        """Set a run's status (e.g. a distributed run whose rank died)."""
        with self.begin() as conn:
            n = conn.execute(
                S.runs.update().where(S.runs.c.run_id == run_id).values(status=status, updated_at=time.time())
            ).rowcount
        if not n:
            raise RunNotFoundError(f"No run {run_id!r} in {self.display_url}.")

    def delete_run(self, run_id: str) -> None:
        """Remove a run and everything stored with it."""
        with self.begin() as conn:
            for t in (S.samples, S.phases, S.components, S.batches):
                conn.execute(t.delete().where(t.c.run_id == run_id))
            conn.execute(S.runs.delete().where(S.runs.c.run_id == run_id))

    def compact_samples(self, now: float | None = None, max_rows: int = SM.MAX_COMPACT_ROWS) -> int:
        """Downsample the old samples of every run that has some (bounded); returns samples removed."""
        now = time.time() if now is None else now
        c = S.runs.c
        old_start = dt.datetime.fromtimestamp(now - SM.DOWNSAMPLE_AFTER_S, dt.timezone.utc).isoformat()
        with self.begin() as conn:
            due = conn.execute(
                sa.select(c.run_id).where(
                    c.samples_compacted_to_s + SM.BUCKET_S <= c.duration_s, c.started_at < old_start
                )
            ).all()
            return self._compact(conn, [str(r[0]) for r in due], now, max_rows)

    def _compact(self, conn: sa.Connection, run_ids: list[str], now: float, max_rows: int = SM.MAX_COMPACT_ROWS) -> int:
        c = S.runs.c
        removed = 0
        for rid in run_ids:
            row = conn.execute(
                sa.select(c.started_at, c.duration_s, c.samples_compacted_to_s).where(c.run_id == rid)
            ).first()
            if row is None:
                continue
            until = SM.due_until(row[0], row[1], now, SM.DOWNSAMPLE_AFTER_S, SM.BUCKET_S)
            try:
                done = float(row[2] or 0.0)
            except (TypeError, ValueError):
                done = 0.0
            if until is None or until - done < SM.BUCKET_S:
                continue
            removed += SM.compact_run(conn, rid, until, done, max_rows=max(max_rows - removed, 1))
            if removed >= max_rows:
                break
        return removed

    # ----------------------------------------------------------------- team server
    def run_owner(self, run_id: str) -> str | None:
        """The owner of run ``run_id`` (None: written directly to the store); RunNotFoundError if none."""
        with self._read() as conn:
            row = None
            if conn is not None:
                col = S.runs.c.owner if self._schema_at() >= S.OWNERS_FROM else sa.null()
                row = conn.execute(sa.select(col).where(S.runs.c.run_id == run_id)).first()
        if row is None:
            raise RunNotFoundError(f"No run {run_id!r} in {self.display_url}.")
        return None if row[0] is None else str(row[0])

    def _check_owner(self, conn: sa.Connection, run_id: str, owner: str | None, admin: bool) -> None:
        """Refuse (RunOwnedError) a writer ``owner`` changing a run that is not its own."""
        if owner is None or admin:
            return
        row = conn.execute(sa.select(S.runs.c.owner).where(S.runs.c.run_id == run_id)).first()
        if row is None:
            raise RunNotFoundError(f"No run {run_id!r} in {self.display_url}.")
        if row[0] != owner:
            raise RunOwnedError(
                f"Run {run_id!r} belongs to another owner: a token can change only the runs its owner created "
                "(an admin token can change any)."
            )

    def claim_batch(self, run_id: str, seq: int) -> bool:
        """Claim sample batch ``seq`` of ``run_id`` for storing; False when it is already claimed."""
        with self.begin() as conn:
            return _insert_ignore(conn, S.batches, {"run_id": run_id, "seq": seq, "received_at": time.time()})

    def release_batch(self, run_id: str, seq: int) -> None:
        """Give a claim back (its write failed: a retry may store the batch)."""
        with self.begin() as conn:
            conn.execute(S.batches.delete().where(S.batches.c.run_id == run_id, S.batches.c.seq == seq))

    def add_token(
        self,
        token_id: str,
        name: str,
        token_hash: str,
        scopes: tuple[str, ...] = ("ingest", "read"),
        owner: str | None = None,
    ) -> TokenRecord:
        """Store a new token's hash under ``token_id``, with its scopes and owner (default: ``name``)."""
        rec = TokenRecord(token_id, name, time.time(), scopes=tuple(scopes), owner=owner or name)
        with self.begin() as conn:
            conn.execute(
                S.tokens.insert().values(
                    id=token_id,
                    name=name,
                    token_hash=token_hash,
                    created_at=rec.created_at,
                    scopes=" ".join(rec.scopes),
                    owner=owner,
                )
            )
        return rec

    def _token_columns(self) -> list[Any]:
        cols = list(S.TOKEN_READ_COLUMNS)
        if self._schema_at() >= S.OWNERS_FROM:
            cols += [S.tokens.c.scopes, S.tokens.c.owner]
        return cols

    @staticmethod
    def _token_record(row: Any) -> TokenRecord:
        scopes = str(row.get("scopes") or S.LEGACY_SCOPES).split()
        return TokenRecord(
            str(row["id"]),
            str(row["name"]),
            float(row["created_at"]),
            _opt_float(row.get("revoked_at")),
            _opt_float(row.get("last_used_at")),
            scopes=tuple(scopes),
            owner=str(row.get("owner") or row["name"]),
        )

    def tokens(self) -> list[TokenRecord]:
        """Every token's record, oldest first (empty for a store without tokens)."""
        with self._read() as conn:
            if conn is None or not self._has_tokens(conn):
                return []
            rows = conn.execute(sa.select(*self._token_columns()).order_by(S.tokens.c.created_at)).mappings().all()
        return [self._token_record(r) for r in rows]

    def active_token(self, token_hash: str) -> tuple[TokenRecord, str] | None:
        """``(record, stored hash)`` of the active token with this hash, or None."""
        t = S.tokens.c
        with self._read() as conn:
            if conn is None or not self._has_tokens(conn):
                return None
            row = (
                conn.execute(
                    sa.select(*self._token_columns()).where(t.token_hash == token_hash, t.revoked_at.is_(None))
                )
                .mappings()
                .first()
            )
        return (self._token_record(row), str(row["token_hash"])) if row is not None else None

    def token_by_id(self, token_id: str) -> tuple[TokenRecord, str] | None:
        """``(record, stored hash)`` of the token with this id (revoked ones too), or None."""
        t = S.tokens.c
        with self._read() as conn:
            if conn is None or not self._has_tokens(conn):
                return None
            row = conn.execute(sa.select(*self._token_columns()).where(t.id == token_id)).mappings().first()
        return (self._token_record(row), str(row["token_hash"])) if row is not None else None

    def revoke_tokens(self, id_or_name: str) -> int:
        """Revoke the active token with this id, or else every active token with this name."""
        t = S.tokens.c
        now = time.time()
        with self.begin() as conn:
            active = t.revoked_at.is_(None)
            n = conn.execute(S.tokens.update().where(t.id == id_or_name, active).values(revoked_at=now)).rowcount
            if not n:
                n = conn.execute(S.tokens.update().where(t.name == id_or_name, active).values(revoked_at=now)).rowcount
        return int(n or 0)

    def touch_token(self, token_id: str) -> None:
        """Record that a token was used now (skipped on a store opened for reading)."""
        if self.read_only:
            return
        with self.begin() as conn:
            conn.execute(S.tokens.update().where(S.tokens.c.id == token_id).values(last_used_at=time.time()))

    def _has_tokens(self, conn: sa.Connection) -> bool:
        if not self.read_only:
            return True
        return self._schema_at() >= S.TOKENS_FROM or sa.inspect(conn).has_table(S.tokens.name)

    def _schema_at(self) -> int:
        """The schema version reads can rely on (a writer has migrated to the newest)."""
        return int(getattr(self, "_version", S.SCHEMA_VERSION)) if self.read_only else S.SCHEMA_VERSION

    # ----------------------------------------------------------------- reads
    def list_runs(
        self,
        project: str | None = None,
        status: str | None = None,
        search: str | None = None,
        limit: int | None = None,
        since: str | None = None,
        include_rank_rows: bool = False,
    ) -> list[StoredRun]:
        """Runs, newest first. Damaged rows are listed too (``StoredRun.damaged``).

        Per-rank rows of distributed runs (``metadata.distributed.role == "rank"``, kept so a
        rank's energy survives its death) are hidden once their merged run is stored, unless
        ``include_rank_rows``. ``limit`` must be a positive number (ConfigError otherwise).
        """
        SM.check_limit(limit)
        if status is not None and status not in STATUSES:
            raise ConfigError(f"status must be one of {', '.join(STATUSES)}, got {status!r}.")
        r = S.runs.c
        q = sa.select(*S.RUN_READ_COLUMNS).order_by(r.started_at.desc(), r.run_id)
        if project:
            q = q.where(r.project == project)
        if since:
            q = q.where(r.started_at >= since)
        if search:
            s = search.lower()
            q = q.where(
                sa.or_(
                    sa.func.lower(r.project).contains(s, autoescape=True),
                    sa.func.lower(r.run_id).contains(s, autoescape=True),
                    sa.func.lower(r.location_code).contains(s, autoescape=True),
                )
            )
        with self._read() as conn:
            if conn is None:
                return []
            rows = conn.execute(q).mappings().all()
            out = [self._stored(conn, dict(row)) for row in rows]
        if not include_rank_rows:
            out = _hide_merged_rank_rows(out)
        if status:
            out = [sr for sr in out if sr.status == status]
        return out[:limit] if limit else out

    def get_run(self, run_id: str) -> StoredRun:
        """One run by id or unique id prefix (at least 4 characters); RunNotFoundError otherwise.

        A damaged run is returned (``damaged`` says why), not raised.
        """
        r = S.runs.c
        with self._read() as conn:
            row = None
            if conn is not None:
                row = conn.execute(sa.select(*S.RUN_READ_COLUMNS).where(r.run_id == run_id)).mappings().first()
                if row is None and len(run_id) >= 4:
                    hits = (
                        conn.execute(
                            sa.select(*S.RUN_READ_COLUMNS).where(r.run_id.startswith(run_id, autoescape=True)).limit(2)
                        )
                        .mappings()
                        .all()
                    )
                    if len(hits) > 1:
                        raise RunNotFoundError(f"Run id prefix {run_id!r} is ambiguous; give more characters.")
                    row = hits[0] if hits else None
            if row is None or conn is None:
                raise RunNotFoundError(f"No run {run_id!r} in {self.display_url}; `greenlm runs list` shows the ids.")
            return self._stored(conn, dict(row))

    def find_run(self, run_id: str) -> StoredRun | None:
        """The run with exactly this id (no prefix matching), or None."""
        with self._read() as conn:
            if conn is None:
                return None
            row = conn.execute(sa.select(*S.RUN_READ_COLUMNS).where(S.runs.c.run_id == run_id)).mappings().first()
            return None if row is None else self._stored(conn, dict(row))

    def get_samples(self, run_id: str) -> list[SampleRow]:
        """Every stored sample of a run, in time order (rows that are not numbers are skipped)."""
        c = S.samples.c
        with self._read() as conn:
            if conn is None:
                return []
            rows = conn.execute(
                sa.select(c.t_s, c.component, c.energy_j, c.power_w).where(c.run_id == run_id).order_by(c.t_s, c.id)
            ).all()
        out = []
        for row in rows:
            try:
                out.append(SM.row_to_sample(row))
            except (TypeError, ValueError):
                log.warning("greenlm: skipped a damaged sample of run %s: %r", run_id, tuple(row))
        return out

    def sample_page(self, run_id: str, limit: int = SM.DEFAULT_PAGE, cursor: str | None = None) -> SamplePage:
        """One page of a run's samples after ``cursor`` (``next_cursor`` of the previous page)."""
        SM.check_limit(limit, maximum=SM.MAX_PAGE)
        with self._read() as conn:
            if conn is None:
                return SamplePage(run_id, (), None)
            return SM.sample_page(conn, run_id, limit, cursor)

    def power_trace(self, run_id: str, max_points: int = SM.TRACE_POINTS) -> PowerTrace:
        """The run's power per component from at most ``max_points`` points each (for charts)."""
        SM.check_limit(max_points, "max_points", maximum=100_000)
        with self._read() as conn:
            if conn is None:
                return PowerTrace(run_id, (), 0)
            return SM.power_trace(conn, run_id, max_points)

    def has_samples(self, run_id: str) -> bool:
        """Whether any sample of ``run_id`` is stored."""
        with self._read() as conn:
            if conn is None:
                return False
            q = sa.select(S.samples.c.id).where(S.samples.c.run_id == run_id).limit(1)
            return conn.execute(q).first() is not None

    # ----------------------------------------------------------------- rows -> records
    def _stored(self, conn: sa.Connection, row: dict[str, Any]) -> StoredRun:
        """A row as a StoredRun; anything unreadable makes it a damaged one (never raises)."""
        run_id = str(row.get("run_id"))
        try:
            status = self.effective_status(row)
        except Exception as e:  # a non-numeric pid or time: still list the run
            return self._damaged(row, str(row.get("status")), f"row facts unreadable ({_why(e)})")
        if status not in STATUSES:
            return self._damaged(row, status, f"status column holds {status!r}, not one of {', '.join(STATUSES)}")
        partial = not row.get("result_json")
        try:
            result = self._partial(conn, row, status) if partial else _final(row, status)
        except _Damaged as e:
            return self._damaged(row, status, str(e))
        return StoredRun(
            run_id=run_id,
            project=result.project,
            status=status,
            started_at=result.started_at,
            result=result,
            partial=partial,
            updated_at=_opt_float(row.get("updated_at"), quiet=True),
            host=str(row.get("host") or ""),
            pid=_opt_int(row.get("pid")),
        )

    def _damaged(self, row: dict[str, Any], status: str, reason: str) -> StoredRun:
        said = (str(row.get("run_id")), reason)
        if said not in self._said:  # once per run and reason, not on every page view
            self._said.add(said)
            log.warning("greenlm: run %s in %s is damaged: %s", row.get("run_id"), self.display_url, reason)
        facility = _opt_float(row.get("facility_energy_j"), quiet=True)
        salvaged: dict[str, Any] = dict.fromkeys(JSON_KEYS)
        salvaged.update(
            schema_version=SCHEMA_VERSION,
            run_id=str(row.get("run_id")),
            project=str(row.get("project")),
            status=status,
            started_at=str(row.get("started_at")),
            ended_at=row.get("ended_at") if isinstance(row.get("ended_at"), str) else None,
            duration_s=_opt_float(row.get("duration_s"), quiet=True),
            energy_j=_opt_float(row.get("energy_j"), quiet=True),
            facility_energy_j=facility,
            energy_kwh=facility / J_PER_KWH if facility is not None else None,
            co2e_g=_opt_float(row.get("co2e_g"), quiet=True),
            cost=_opt_float(row.get("cost"), quiet=True),
            currency=row.get("currency") if isinstance(row.get("currency"), str) else None,
            pue=_opt_float(row.get("pue"), quiet=True),
            location={
                "code": row.get("location_code") if isinstance(row.get("location_code"), str) else None,
                "intensity_g_per_kwh": _opt_float(row.get("intensity_g_per_kwh"), quiet=True),
            },
            components=[],
            phases=[],
            provenance=row.get("provenance") if isinstance(row.get("provenance"), str) else None,
            warnings=[f"damaged record: {reason}"],
            metadata={},
            host=str(row.get("host") or ""),
            meters=[],
        )
        return StoredRun(
            run_id=str(row.get("run_id")),
            project=str(row.get("project")),
            status=status,
            started_at=str(row.get("started_at")),
            result=None,
            partial=not row.get("result_json"),
            updated_at=_opt_float(row.get("updated_at"), quiet=True),
            host=str(row.get("host") or ""),
            pid=_opt_int(row.get("pid")),
            damaged=reason,
            salvaged=salvaged,
        )

    def _partial(self, conn: sa.Connection, row: dict[str, Any], status: str) -> RunResult:
        """The result of a run without a final one (running, or killed): from its last flush.

        Built like the tracker builds one (``totals_from_components`` over the flushed
        components and the carbon factors recorded at the start). Starts written before
        greenlm recorded price and bands: the default price is used and said so, and each
        component's band is its figure (no band), also said.
        """
        start = _json_object(row.get("start_json") or "{}", "start_json")
        meters = [m for m in start.get("meters") or [] if isinstance(m, dict)]
        by_name = {m.get("name"): m for m in meters}
        warnings: list[str] = []
        if status == "interrupted":
            warnings.append(KILLED_WARNING)
        c = S.components.c
        comps = conn.execute(
            sa.select(c.name, c.kind, c.energy_j, c.provenance).where(c.run_id == row["run_id"]).order_by(c.name)
        ).all()
        try:
            components = []
            no_band = []
            for name, kind, energy, prov in comps:
                m = by_name.get(name, {})
                e = _number(energy, f"components: energy_j of {name}")
                lo, hi = m.get("band_low"), m.get("band_high")
                if lo is None or hi is None:
                    lo = hi = 1.0
                    no_band.append(str(name))
                components.append(
                    ComponentEnergy(
                        name=str(name),
                        kind=str(m.get("kind") or kind or ""),
                        energy_j=e,
                        provenance=str(m.get("provenance") or prov or "modeled"),
                        low_j=min(e * _number(lo, f"start_json: band_low of {name}"), e),
                        high_j=max(e * _number(hi, f"start_json: band_high of {name}"), e),
                        scope=str(m.get("scope") or "device"),
                        detail=str(m.get("band") or ""),
                    )
                )
            if no_band and meters:
                warnings.append(
                    f"no uncertainty band recorded for {', '.join(no_band)} (run started by an older greenlm): "
                    "the band shown is the figure itself"
                )
            carbon, loc, more = _carbon_at_start(start, row)
            warnings += more
            totals, _ = totals_from_components(components, carbon)
            totals["location"] = loc
            return RunResult(
                run_id=str(row["run_id"]),
                project=str(row["project"]),
                status=status,
                started_at=str(row["started_at"]),
                ended_at=None,
                duration_s=_number(row.get("duration_s"), "runs.duration_s"),
                **totals,
                components=tuple(components),
                phases=(),
                steps=0,
                warnings=tuple(warnings),
                metadata=dict(start.get("metadata") or {}),
                host=str(row.get("host") or ""),
                meters=tuple(meters),
            )
        except _Damaged:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise _Damaged(f"partial run: {_why(e)}") from e

    @staticmethod
    def effective_status(row: Mapping[str, Any]) -> str:
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


def _final(row: Mapping[str, Any], status: str) -> RunResult:
    """The stored final result of a row (status: the row's, which ``mark`` may have changed)."""
    d = _json_object(row["result_json"], "result_json")
    _check_shape(d, RunResult, "result_json")
    for key, cls in (("components", ComponentEnergy), ("phases", PhaseEnergy)):
        for i, item in enumerate(d.get(key) or []):
            if not isinstance(item, dict):
                raise _Damaged(f"result_json: {key}[{i}] is {type(item).__name__}, not an object")
            _check_shape(item, cls, f"result_json: {key}[{i}]")
    try:
        r = RunResult.from_dict(d)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise _Damaged(f"result_json: {_why(e)}") from e
    if r.run_id != row["run_id"]:
        raise _Damaged(f"result_json belongs to run {r.run_id!r}, not to this row")
    if r.status != status:
        r = dataclasses.replace(r, status=status)
    return r


def _check_shape(d: Mapping[str, Any], cls: type, where: str) -> None:
    """Each present number, object and list field of ``d`` is what ``cls`` declares (named if not).

    Derived from the dataclass's own annotations, so a field added to a result is checked
    too. Numbers must be finite; text fields are read as they are.
    """
    for f in dataclasses.fields(cls):
        t = str(f.type)
        v = d.get(f.name)
        if v is None:
            if f.name in d and t in ("float", "int"):
                raise _Damaged(f"{where}: {f.name} is null, not a number")
            continue  # absent: from_dict says whether that is allowed
        if t in ("float", "int"):
            _number(v, f"{where}: {f.name}")
        elif t.startswith("dict[") and not isinstance(v, dict):
            raise _Damaged(f"{where}: {f.name} is {v!r:.60}, not an object")
        elif t.startswith("tuple[") and not isinstance(v, list):
            raise _Damaged(f"{where}: {f.name} is {v!r:.60}, not a list")


def _carbon_at_start(
    start: Mapping[str, Any], row: Mapping[str, Any]
) -> tuple[CarbonConfig, dict[str, Any], list[str]]:
    """The carbon factors a run started with, from its start record (with documented fallbacks)."""
    warnings: list[str] = []
    loc_d = start.get("location") or {
        "code": row.get("location_code"),
        "intensity_g_per_kwh": row.get("intensity_g_per_kwh"),
    }
    if not isinstance(loc_d, dict):
        raise _Damaged("start_json: location is not an object")
    year = loc_d.get("year")
    loc = GridIntensity(
        code=str(loc_d.get("code") or ""),
        name=str(loc_d.get("name") or ""),
        intensity_g_per_kwh=_number(loc_d.get("intensity_g_per_kwh"), "start_json: location.intensity_g_per_kwh"),
        source=str(loc_d.get("source") or ""),
        year=int(year) if isinstance(year, (int, float)) and math.isfinite(year) else None,
        basis=str(loc_d.get("basis") or ""),
        license=str(loc_d.get("license") or ""),
        region_type=str(loc_d.get("region_type") or ""),
        defaulted=bool(loc_d.get("defaulted")),
        cloud_provider=loc_d.get("cloud_provider") if isinstance(loc_d.get("cloud_provider"), str) else None,
    )
    pue_v = row.get("pue")
    pue = Pue(
        _number(1.0 if pue_v is None else pue_v, "runs.pue"),
        str(start.get("pue_source") or "not recorded when the run started (older greenlm)"),
        False,
    )
    if start.get("price_per_kwh") is not None:
        price = Price(
            _number(start["price_per_kwh"], "start_json: price_per_kwh"),
            str(start.get("currency") or "USD"),
            str(start.get("price_source") or ""),
            False,
        )
    else:
        d = resolve_price(None)
        price = Price(d.per_kwh, d.currency, f"not recorded when the run started (older greenlm); {d.source}", True)
        warnings.append(
            f"the electricity price was not recorded when this run started (older greenlm): the cost uses "
            f"the default {d.per_kwh:g} {d.currency}/kWh"
        )
    return CarbonConfig(loc, pue, price), dict(loc_d), warnings


def _json_object(text: Any, where: str) -> dict[str, Any]:
    try:
        d = json.loads(text)
    except (TypeError, ValueError) as e:
        raise _Damaged(f"{where}: {_why(e)}") from e
    if not isinstance(d, dict):
        raise _Damaged(f"{where} holds {type(d).__name__}, not a JSON object")
    return d


def _why(e: BaseException) -> str:
    if isinstance(e, KeyError):
        return f"missing field {e.args[0]!r}" if e.args else "missing field"
    if isinstance(e, json.JSONDecodeError):
        return f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})"
    return _first_line(e)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def _number(x: Any, where: str) -> float:
    if isinstance(x, bool):
        raise _Damaged(f"{where} is {x!r}, not a number")
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise _Damaged(f"{where} is {x!r}, not a number") from None
    if not math.isfinite(v):
        raise _Damaged(f"{where} is {x!r}, not a finite number")
    return v


def _opt_float(x: Any, quiet: bool = False) -> float | None:
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        if quiet:
            return None
        raise
    return v if math.isfinite(v) else None


def _opt_int(x: Any) -> int | None:
    try:
        return int(x) if x is not None else None
    except (TypeError, ValueError):
        return None


def _is_read_only_error(e: BaseException) -> bool:
    s = str(e).lower()
    return "readonly" in s or "read-only" in s or "read only" in s


def _hide_merged_rank_rows(runs: list[StoredRun]) -> list[StoredRun]:
    """Drop per-rank rows of distributed runs whose merged (group) run is stored.

    Rank rows of a group with no merged run (rank 0 was killed before it could write one)
    stay visible: they are then the only record of what was measured.
    """

    def dist(sr: StoredRun) -> Mapping[str, Any]:
        d = (sr.result.metadata.get("distributed") if sr.result is not None else None) or {}
        return d if isinstance(d, Mapping) else {}

    merged = {dist(sr).get("group_run_id") for sr in runs if dist(sr).get("role") == "group"}
    return [
        sr for sr in runs if not (dist(sr).get("role") in ("rank", "part") and dist(sr).get("group_run_id") in merged)
    ]


def _dialect_insert(conn: sa.Connection, table: sa.Table) -> Any:
    name = conn.dialect.name
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    return None


def _insert_ignore(conn: sa.Connection, table: sa.Table, values: dict[str, Any]) -> bool:
    """Insert a row unless its key exists (race-free); True when this call inserted it."""
    ins = _dialect_insert(conn, table)
    if ins is not None:  # RETURNING, not rowcount: psycopg reports -1 for ON CONFLICT inserts
        stmt = ins.values(**values).on_conflict_do_nothing().returning(sa.literal_column("1"))
        return conn.execute(stmt).first() is not None
    try:  # other databases: a savepoint keeps the transaction usable after a conflict
        with conn.begin_nested():
            conn.execute(table.insert().values(**values))
        return True
    except sa.exc.IntegrityError:
        return False


def _upsert(conn: sa.Connection, table: sa.Table, key: dict[str, Any], values: dict[str, Any]) -> bool:
    """Insert or update the row at ``key``, race-free; True when it was inserted."""
    if _insert_ignore(conn, table, {**key, **values}):
        return True
    cond = sa.and_(*(table.c[k] == v for k, v in key.items()))
    conn.execute(table.update().where(cond).values(**values))
    return False


def _sqlite_pragmas(engine: sa.Engine, *, write: bool) -> None:
    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        if write:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        # writers take the write lock up front; readers read one snapshot and never block
        write_txn = conn.get_execution_options().get("greenlm_write")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write_txn else "BEGIN")


_STORES: dict[tuple[int, str, bool], RunStore] = {}
_STORES_LOCK = threading.Lock()


def open_store(url: str | None = None, *, read_only: bool = False) -> RunStore:
    """The store at ``url`` (default: ``$GREENLM_STORE`` or SQLite in ``$GREENLM_HOME``).

    ``read_only=True`` opens it for reading: nothing is created, migrated or written, and an
    explicit URL where no store exists is a :class:`StoreError` (the default store not
    created yet reads as empty). Stores are cached per process, URL and mode (a fork gets
    its own engine).
    """
    default = url is None and not os.environ.get("GREENLM_STORE")
    u = url or default_store_url()
    key = (os.getpid(), u, read_only)
    with _STORES_LOCK:
        st = _STORES.get(key)
        if st is None:
            st = _STORES[key] = RunStore(u, read_only=read_only, missing_ok=default)
        return st


def clear_store_cache() -> None:
    """Dispose cached engines (tests)."""
    with _STORES_LOCK:
        for st in _STORES.values():
            if st.engine is not None:
                st.engine.dispose()
        _STORES.clear()
