"""The run store as a window's destination: :class:`StoreSink`, durable through a spool.

Registered as the ``local`` destination in ``greenlm/__init__.py``; the tracker knows it only
through the :class:`~greenlm.tracking.sink.RunSink` protocol. Every event of a run (start,
sample batches, result) is spooled on disk first, under
``$GREENLM_HOME/spool/<store key>/<run_id>/``, then written to the store by a background
courier (:mod:`greenlm.tracking.spool`). A store that fails for a moment (PostgreSQL
restarted, a full disk, SQLite locked by a long writer) loses nothing: the events wait on
disk and are written when the store is back, at the next flush, at the end of the run
(within :attr:`StoreSink.finish_wait_s`), by the next greenlm process that writes to that
store, or by any greenlm command that opens it (:func:`replay`, e.g. ``greenlm runs list``).
The store's writes are idempotent (a start seen twice, a batch delivered twice after a crash
between the write and the removal of its file, a result saved again), so replaying is safe.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from greenlm.config import default_store_url, greenlm_home
from greenlm.errors import StoreError
from greenlm.tracking.result import RunResult
from greenlm.tracking.sink import Progress, RunStart, SampleRow
from greenlm.tracking.spool import (
    Courier,
    DrainReport,
    Outcome,
    Spool,
    SpooledSink,
    courier_for,
    destination_key,
    drain,
)

if TYPE_CHECKING:
    from greenlm.config import TrackerConfig
    from greenlm.store.runs import RunStore

log = logging.getLogger(__name__)


def spool_root() -> Path:
    """``$GREENLM_HOME/spool``."""
    return greenlm_home() / "spool"


def store_spool(url: str, root: Path | None = None) -> Spool:
    """The spool of the store at ``url`` (the folder is a hash of the URL: no password on disk)."""
    from greenlm.store.urls import redact_url

    return Spool(destination_key(url), root or spool_root(), {"store": redact_url(url)})


class StoreDeliverer:
    """Writes spooled events into a store; says whether the store is down or the event bad."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._store: RunStore | None = None

    def store(self) -> RunStore:
        if self._store is None:
            from greenlm.store.runs import open_store

            self._store = open_store(self.url)
        return self._store

    def deliver(self, run_id: str, kind: str, payload: dict[str, Any]) -> Outcome:
        import sqlalchemy as sa

        try:
            st = self.store()
            if kind == "start":
                st.begin_run(RunStart.from_dict(payload))
                try:  # housekeeping (downsampling other runs' old samples) never costs the run
                    st.compact_samples()
                except Exception as e:
                    log.warning("greenlm: downsampling old samples in %s failed: %s", st.display_url, e)
            elif kind == "samples":
                rows = [SampleRow(**r) for r in payload.get("samples") or []]
                st.add_samples(run_id, rows, Progress(**payload["progress"]))
            else:
                st.save_result(RunResult.from_dict(payload))
        except StoreError as e:  # cannot open or migrate: unreachable, or not writable now
            self._store = None
            return Outcome("down", str(e))
        except sa.exc.OperationalError as e:  # locked, disk full, connection lost
            return Outcome("down", _first_line(e))
        except (sa.exc.SQLAlchemyError, ValueError, TypeError, KeyError) as e:
            return Outcome("retry", f"{type(e).__name__}: {_first_line(e)}")
        return Outcome.ok()

    def close(self) -> None:
        """Nothing to release: the store's engine is shared by the process."""


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


class StoreSink(SpooledSink):
    """RunSink that writes to a run store through its spool (never raises, never blocks long)."""

    #: At the end of a run, how long to wait for the store to take it before reporting
    #: ``waiting`` (the run stays spooled): the user's job is never held longer.
    finish_wait_s = 5.0

    def __init__(self, url: str | None = None, *, spool_dir: str | Path | None = None, background: bool = True) -> None:
        from greenlm.store.urls import redact_url

        self.url = url or default_store_url()
        self.label = f"run store {redact_url(self.url)}"
        self.spool = store_spool(self.url, Path(spool_dir) if spool_dir else None)
        self._init_spooled()
        u = self.url
        self.courier: Courier = courier_for(self.spool, ("store",), lambda: StoreDeliverer(u), background)

    def begin(self, run: RunStart) -> None:
        """Check that the store can exist at all, then spool the run's start.

        A URL that can never work (not a URL, a missing database driver, a SQLite path under a
        file or an unwritable folder) is an error here, so the run is reported "not stored"
        at once instead of waiting forever; whether the database answers is the courier's
        business (a store that is down or busy only delays the run).
        """
        check_url(self.url)
        super().begin(run)

    @property
    def store(self) -> RunStore:
        """The store this sink writes to (opened on first use)."""
        from greenlm.store.runs import open_store

        return open_store(self.url)


def check_url(url: str) -> None:
    """Raise StoreError if a store could never be opened at ``url`` (no database access)."""
    import sqlalchemy as sa

    from greenlm.store.urls import redact_url

    shown = redact_url(url)
    try:
        u = sa.engine.make_url(url)
    except sa.exc.ArgumentError as e:
        raise StoreError(
            f"Invalid store URL {shown!r}: {e}. Use sqlite:///path/to/runs.db or postgresql+psycopg://user@host/db."
        ) from None
    try:
        u.get_dialect().import_dbapi()
    except Exception as e:  # missing driver (psycopg), unknown dialect
        raise StoreError(f"Cannot use store {shown!r}: {type(e).__name__}: {e}") from None
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        from greenlm._files import private_dir

        folder = Path(u.database).expanduser().parent
        try:
            private_dir(folder)
        except OSError as e:
            raise StoreError(f"Cannot create the store's folder {folder}: {e.strerror or e}") from None


def replay(url: str | None = None, timeout_s: float = 10.0) -> DrainReport:
    """Write what earlier runs left spooled for the store at ``url`` (a command opening it).

    Cheap when there is nothing: one directory listing. Bounded by ``timeout_s``.
    """
    import time

    u = url or default_store_url()
    spool = store_spool(u)
    if not spool.run_dirs():
        return DrainReport()
    deliverer = StoreDeliverer(u)
    rep = drain(spool, deliverer, deadline=time.monotonic() + timeout_s, wait_locks=True)
    if rep.delivered:
        log.info("greenlm: wrote %d spooled event(s) to %s", rep.delivered, u)
    return rep


def open_destination(config: TrackerConfig) -> StoreSink:
    """The run-store destination of a window: the store at ``config.store`` (default SQLite)."""
    return StoreSink(config.store)
