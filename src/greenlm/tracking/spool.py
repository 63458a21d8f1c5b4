"""A durable, ordered queue of a run's events on disk, and the courier that empties it.

Both of a window's destinations, the run store and a team server, are written through a
spool: every event (a run's start, each batch of samples, the final result) is first
written to disk, atomically, under ``<root>/<destination key>/<run_id>/NNNNNNNN-<kind>.json``,
then delivered in order by a background :class:`Courier` (one per process and destination,
shared by every window). So a destination that fails for a moment (a store restarted, a
full disk, a server down) loses nothing: what was not delivered stays on disk and goes out
when the destination is back, at the next flush, at the end of the run, by the next
greenlm process that writes there, or by ``greenlm runs sync`` / ``greenlm server push``.

What a delivery can answer (:class:`Outcome`):

* ``ok``: delivered; the event file is removed.
* ``down``: the destination is unreachable (connection refused, database locked or down,
  disk full). Nothing is wrong with the event: the pass stops and is retried with backoff.
* ``retry``: the destination answered but failed on this event (an HTTP 5xx, a database
  error). The event's tries are counted; after :data:`MAX_TRIES` the event is moved aside
  (``rejected/``, with the reason) so it cannot block the run's later events, or other runs.
  The rest of that run waits for the next pass; other runs go on.
* ``reject``: the destination refused the event as invalid (HTTP 413/422): moved aside at once.

If even the spool cannot be written (the disk holding ``$GREENLM_HOME`` is full), events are
kept in memory, in order, and written to the spool or delivered directly as soon as either
works again: a run is only reported ``failed`` when neither worked by the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from greenlm._files import private_dir, write_text_atomic
from greenlm.tracking.result import RunResult
from greenlm.tracking.sink import DeliveryReport, Progress, RunStart, SampleRow

log = logging.getLogger(__name__)

#: At most this many samples per event (one request or transaction each); larger flushes are split.
MAX_SAMPLES_PER_EVENT = 10_000
KINDS = ("start", "samples", "result")
#: An event that fails this many times (the destination answering with an error) is moved aside.
MAX_TRIES = 5
#: An empty run folder untouched for this long belongs to a run that ended without a result
#: (its process was killed); delivery then removes it.
STALE_RUN_DIR_S = 3600.0
#: Longest wait between delivery passes while a destination is down.
MAX_BACKOFF_S = 60.0


def destination_key(text: str) -> str:
    """The spool folder name of a destination (a hash of its URL: no credentials on disk)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def clean_json(x: Any) -> Any:
    """``x`` with non-finite floats as ``None`` (strict JSON has no NaN or Infinity)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): clean_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean_json(v) for v in x]
    return x


@dataclass(frozen=True)
class Outcome:
    """What one delivery attempt answered: ``ok``, ``down``, ``retry`` or ``reject`` (see module)."""

    state: str
    reason: str = ""

    @classmethod
    def ok(cls) -> Outcome:
        return cls("ok")


class Deliverer(Protocol):
    """Delivers one event to a destination (the store, a server)."""

    def deliver(self, run_id: str, kind: str, payload: dict[str, Any]) -> Outcome: ...

    def close(self) -> None: ...


@dataclass
class DrainReport:
    """What one pass over a spool did."""

    delivered: int = 0
    pending: int = 0
    rejected: int = 0
    runs_done: int = 0
    error: str | None = None
    #: The destination was unreachable (as opposed to failing on an event).
    down: bool = False

    def add(self, other: DrainReport) -> None:
        self.delivered += other.delivered
        self.pending += other.pending
        self.rejected += other.rejected
        self.runs_done += other.runs_done
        self.error = self.error or other.error
        self.down = self.down or other.down


class Spool:
    """The undelivered events of one destination, one folder per run (created 0700)."""

    def __init__(self, key: str, root: Path, meta: dict[str, Any] | None = None) -> None:
        self.key = key
        self.dir = root / key
        self._meta = dict(meta or {})
        self._seq: dict[str, int] = {}
        self._lock = threading.Lock()

    def _ensure(self) -> None:
        if not (self.dir / "destination.json").exists():
            private_dir(self.dir.parent)
            private_dir(self.dir)
            _atomic_write(self.dir / "destination.json", json.dumps(self._meta))

    def put(self, run_id: str, kind: str, payload: dict[str, Any]) -> Path:
        """Write one event atomically; events of a run are numbered in order.

        A delivery may remove a run folder it has emptied between our ``mkdir`` and our write;
        the folder is then made again and the write retried, so an event is never lost to
        that race. Raises OSError when the disk cannot take it.
        """
        self._ensure()
        d = self.dir / run_id
        d.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if run_id not in self._seq:
                self._seq[run_id] = max([_seq_of(p) for p in d.glob("*.json")] + [0])
            self._seq[run_id] += 1
            seq = self._seq[run_id]
        if kind == "samples":
            payload = {**payload, "seq": seq}
        path = d / f"{seq:08d}-{kind}.json"
        text = json.dumps(clean_json(payload), allow_nan=False, default=str)
        for attempt in range(3):
            try:
                _atomic_write(path, text)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
                d.mkdir(parents=True, exist_ok=True)
        return path

    def run_dirs(self) -> list[Path]:
        """Runs with undelivered events, oldest first."""
        if not self.dir.is_dir():
            return []
        dirs = [p for p in self.dir.iterdir() if p.is_dir() and p.name != "rejected"]
        return sorted(dirs, key=lambda p: _mtime(p))

    def pending(self, run_id: str | None = None) -> int:
        """How many events wait for delivery (of one run, or of all)."""
        dirs = [self.dir / run_id] if run_id else self.run_dirs()
        return sum(len(list(d.glob("*.json"))) for d in dirs if d.is_dir())

    def reject(self, path: Path, reason: str) -> None:
        """Keep an event the destination refused, with the reason, out of the queue."""
        rej = self.dir / "rejected"
        rej.mkdir(parents=True, exist_ok=True)
        target = rej / f"{path.parent.name}-{path.name}"
        with contextlib.suppress(OSError):
            os.replace(path, target)
            _atomic_write(target.with_suffix(".reason.txt"), reason)
        with contextlib.suppress(OSError):
            path.with_name(path.name + ".tries").unlink()

    def count_try(self, path: Path, reason: str) -> int:
        """Record one failed delivery of the event at ``path``; how many so far."""
        tries_file = path.with_name(path.name + ".tries")
        n = 0
        with contextlib.suppress(OSError, ValueError):
            n = int(json.loads(tries_file.read_text(encoding="utf-8"))["tries"])
        n += 1
        with contextlib.suppress(OSError):
            _atomic_write(tries_file, json.dumps({"tries": n, "last": reason[:500]}))
        return n


def _seq_of(p: Path) -> int:
    try:
        return int(p.name.split("-", 1)[0])
    except ValueError:
        return 0


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0


def _atomic_write(path: Path, text: str) -> None:
    write_text_atomic(path, text, fsync=True, mode=0o600)


@contextlib.contextmanager
def _run_lock(run_dir: Path, wait_s: float) -> Iterator[bool]:
    """An exclusive lock on a run folder across processes (True if acquired)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: rely on the destination's idempotency
        yield True
        return
    try:
        fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        yield False
        return
    deadline = time.monotonic() + wait_s
    got = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                got = True
                break
            except OSError:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.05)
        yield got
    finally:
        if got:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def deliver_run(
    spool: Spool, deliverer: Deliverer, run_dir: Path, wait_s: float = 0.0, deadline: float | None = None
) -> DrainReport:
    """Deliver a run's events in order; stops at the first that cannot be delivered now."""
    rep = DrainReport()
    if not run_dir.is_dir():
        return rep
    idle_s = time.time() - _mtime(run_dir)  # before the lock file touches the folder
    with _run_lock(run_dir, wait_s) as got:
        if not got:
            rep.pending = len(list(run_dir.glob("*.json")))
            return rep
        files = sorted(run_dir.glob("*.json"), key=_seq_of)
        finished = False
        for i, f in enumerate(files):
            if deadline is not None and time.monotonic() > deadline:
                rep.pending += len(files) - i
                return rep
            kind = f.stem.split("-", 1)[-1]
            try:
                payload = json.loads(f.read_text(encoding="utf-8"))
            except FileNotFoundError:
                continue  # delivered by another process meanwhile
            except (OSError, ValueError) as e:
                spool.reject(f, f"unreadable event: {e}")
                rep.rejected += 1
                continue
            if kind not in KINDS:
                spool.reject(f, f"unknown event kind {kind!r}")
                rep.rejected += 1
                continue
            try:
                out = deliverer.deliver(run_dir.name, kind, payload)
            except Exception as e:  # a deliverer bug must not stop the spool forever
                out = Outcome("retry", f"{type(e).__name__}: {e}")
            if out.state == "ok":
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()
                with contextlib.suppress(FileNotFoundError):
                    f.with_name(f.name + ".tries").unlink()
                rep.delivered += 1
                finished = finished or kind == "result"
            elif out.state == "reject":
                spool.reject(f, out.reason)
                finished = finished or kind == "result"
                rep.rejected += 1
            elif out.state == "retry":
                tries = spool.count_try(f, out.reason)
                if tries >= MAX_TRIES:
                    spool.reject(f, f"failed {tries} times; last: {out.reason}")
                    rep.rejected += 1
                    finished = finished or kind == "result"
                    log.warning(
                        "greenlm: an event of run %s failed %d times (%s); moved aside to %s",
                        run_dir.name,
                        tries,
                        out.reason[:200],
                        spool.dir / "rejected",
                    )
                    continue
                rep.pending += len(files) - i
                rep.error = out.reason
                return rep
            else:  # down
                rep.pending += len(files) - i
                rep.error = out.reason or "unreachable"
                rep.down = True
                return rep
        if not any(run_dir.glob("*.json")) and (finished or idle_s > STALE_RUN_DIR_S):
            # Only a run whose result went out (or a folder nobody has written to for a long
            # time) is removed: an empty folder of a live run is about to get events.
            for extra in run_dir.iterdir():
                with contextlib.suppress(OSError):
                    extra.unlink()
            with contextlib.suppress(OSError):
                run_dir.rmdir()
            rep.runs_done += 1
    return rep


def drain(spool: Spool, deliverer: Deliverer, deadline: float | None = None, wait_locks: bool = False) -> DrainReport:
    """Deliver every run, oldest first. A run that fails on an event waits; the others go on.
    A destination that is down ends the pass. A run another courier is delivering right now
    is skipped, unless ``wait_locks`` (then it is waited for, until ``deadline``).
    """
    total = DrainReport()
    dirs = spool.run_dirs()
    for i, d in enumerate(dirs):
        wait_s = max(0.0, deadline - time.monotonic()) if wait_locks and deadline is not None else 0.0
        rep = deliver_run(spool, deliverer, d, wait_s=wait_s, deadline=deadline)
        total.add(rep)
        if rep.down:
            total.pending += sum(len(list(x.glob("*.json"))) for x in dirs[i + 1 :])
            break
    return total


class Courier:
    """Delivers one spool in the background: one thread per process and destination.

    Every sink of a process that writes to the same destination shares one courier, so a
    program that opens thousands of windows still runs one delivery thread. It drains the
    whole spool (runs left by earlier processes included), backs off while the destination
    is down or failing, and sleeps when idle.
    """

    def __init__(self, spool: Spool, make_deliverer: Any, background: bool) -> None:
        self.spool = spool
        self._make = make_deliverer
        self._deliverer: Deliverer | None = None
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.last_ok: float | None = None
        if background:
            self._thread = threading.Thread(target=self._worker, name="greenlm-outbox", daemon=True)
            self._thread.start()

    def deliverer(self) -> Deliverer:
        if self._deliverer is None:
            self._deliverer = self._make()
        return self._deliverer

    def drain(self, deadline: float | None = None) -> DrainReport:
        """Deliver what is in the spool now."""
        with self.lock:
            rep = drain(self.spool, self.deliverer(), deadline=deadline)
        self._note(rep)
        return rep

    def deliver_run(self, run_id: str, wait_s: float, retry_down: bool = True) -> DrainReport:
        """Try to deliver one run's events within ``wait_s`` seconds (at the end of a run),
        retrying while the destination is down (unless ``retry_down`` is False).
        """
        deadline = time.monotonic() + wait_s
        rep = DrainReport(pending=self.spool.pending(run_id))
        delay = 0.05
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.lock.acquire(timeout=left):
                break
            try:
                left = max(0.0, deadline - time.monotonic())
                rep = deliver_run(self.spool, self.deliverer(), self.spool.dir / run_id, wait_s=left, deadline=deadline)
            finally:
                self.lock.release()
            self._note(rep)
            if rep.pending == 0 or (rep.down and not retry_down):
                break
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 1.0)
        return rep

    def _note(self, rep: DrainReport) -> None:
        if rep.error:
            self.last_error = rep.error
        elif rep.delivered:
            self.last_error = None
            self.last_ok = time.time()

    def _worker(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                rep = self.drain()
            except Exception as e:
                log.debug("greenlm: spool worker error: %s", e, exc_info=True)
                rep = DrainReport(error=str(e))
            if rep.error:
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            backoff = 1.0
            self.wake.wait(30.0)
            self.wake.clear()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the background thread (what is undelivered stays in the spool)."""
        with _COURIERS_LOCK:
            for k in [k for k, v in _COURIERS.items() if v is self]:
                del _COURIERS[k]
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        if self._deliverer is not None:
            with contextlib.suppress(Exception):
                self._deliverer.close()


_COURIERS: dict[tuple[Any, ...], Courier] = {}
_COURIERS_LOCK = threading.Lock()


def courier_for(spool: Spool, key: tuple[Any, ...], make_deliverer: Any, background: bool = True) -> Courier:
    """The process's courier for this spool and ``key`` (started on first use, again after fork)."""
    if not background:
        return Courier(Spool(spool.key, spool.dir.parent, spool._meta), make_deliverer, background=False)
    k = (os.getpid(), str(spool.dir), *key)
    with _COURIERS_LOCK:
        c = _COURIERS.get(k)
        if c is None:
            c = _COURIERS[k] = Courier(Spool(spool.key, spool.dir.parent, spool._meta), make_deliverer, True)
        return c


class SpooledSink:
    """A RunSink whose events go through a :class:`Spool` to a destination (never raises).

    Subclasses give the spool, the courier and a label; this class turns the tracker's calls
    into events, keeps them in memory when the spool cannot be written, and at the end of a
    run delivers what it can within ``finish_wait_s`` and reports where the run stands.
    """

    label: str
    spool: Spool
    courier: Courier
    finish_wait_s: float = 10.0
    #: At the end of a run, keep retrying a destination that is down until ``finish_wait_s``
    #: (the store: a restart of a few seconds should not leave the run waiting) or give up
    #: at once (a team server: the job must not wait for a server that is away).
    retry_down_at_finish: bool = True

    def _init_spooled(self) -> None:
        self._memory: list[tuple[str, str, dict[str, Any]]] = []
        self._warned_disk = False
        self._warned_down = False

    # ----------------------------------------------------------------- RunSink
    def begin(self, run: RunStart) -> None:
        self._put(run.run_id, "start", dataclasses.asdict(run))

    def flush(self, run_id: str, samples: list[SampleRow], progress: Progress) -> None:
        prog = dataclasses.asdict(progress)
        rows = [dataclasses.asdict(s) for s in samples]
        for i in range(0, max(len(rows), 1), MAX_SAMPLES_PER_EVENT):
            self._put(run_id, "samples", {"samples": rows[i : i + MAX_SAMPLES_PER_EVENT], "progress": prog})
        self._warn_if_down()

    def finish(self, result: RunResult) -> DeliveryReport:
        self._put(result.run_id, "result", result.to_dict(timeline=True))
        try:
            rep = (
                self.courier.deliver_run(result.run_id, self.finish_wait_s, self.retry_down_at_finish)
                if not self._memory
                else None
            )
        except Exception as e:  # never raise into the user's job
            log.debug("greenlm: delivery at finish failed: %s", e, exc_info=True)
            rep = None
        if self._memory:
            self._deliver_memory(deadline=time.monotonic() + self.finish_wait_s)
        self.courier.wake.set()
        return self.delivery_report(result.run_id, rep)

    def delivery_report(self, run_id: str | None = None, rep: DrainReport | None = None) -> DeliveryReport:
        """Where run ``run_id`` stands at this destination."""
        if self._memory:
            return DeliveryReport(
                self.label,
                "failed",
                f"neither the spool ({self.spool.dir}) nor the destination could be written"
                + (f": {self.courier.last_error}" if self.courier.last_error else ""),
                pending_events=len(self._memory),
            )
        pending = self.spool.pending(run_id) if run_id else self.spool.pending()
        if pending == 0:
            rejected = rep.rejected if rep is not None else 0
            detail = f"{rejected} event(s) refused, kept in {self.spool.dir / 'rejected'}" if rejected else ""
            return DeliveryReport(self.label, "stored", detail)
        return DeliveryReport(
            self.label,
            "waiting",
            self.courier.last_error or "not delivered yet",
            where=str(self.spool.dir / run_id) if run_id else str(self.spool.dir),
            pending_events=pending,
        )

    # ----------------------------------------------------------------- internals
    def _put(self, run_id: str, kind: str, payload: dict[str, Any]) -> bool:
        if self._memory:
            self._memory.append((run_id, kind, payload))
            self._retry_memory()
            return False
        try:
            self.spool.put(run_id, kind, payload)
        except Exception as e:
            self._memory.append((run_id, kind, payload))
            if not self._warned_disk:
                self._warned_disk = True
                log.warning(
                    "greenlm: cannot write the spool %s (%s); keeping the run in memory for %s",
                    self.spool.dir,
                    e,
                    self.label,
                )
            self._retry_memory()
            return False
        self.courier.wake.set()
        return True

    def _retry_memory(self) -> None:
        """Move events kept in memory to the spool, or deliver them directly, in order."""
        while self._memory:
            run_id, kind, payload = self._memory[0]
            try:
                self.spool.put(run_id, kind, payload)
            except Exception:
                try:
                    out = self.courier.deliverer().deliver(run_id, kind, clean_json(payload))
                except Exception as e:
                    out = Outcome("down", str(e))
                if out.state not in ("ok", "reject"):
                    return
            self._memory.pop(0)
        self.courier.wake.set()

    def _deliver_memory(self, deadline: float) -> None:
        delay = 0.05
        while self._memory and time.monotonic() < deadline:
            self._retry_memory()
            if self._memory:
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 1.0)

    def _warn_if_down(self) -> None:
        err = self.courier.last_error
        if err and not self._warned_down:
            self._warned_down = True
            log.warning(
                "greenlm: %s is not taking the run (%s); it is kept in %s and sent when it is back",
                self.label,
                err,
                self.spool.dir,
            )

    def drain(self, deadline: float | None = None) -> DrainReport:
        """Deliver what is in the spool now (also used by tests)."""
        return self.courier.drain(deadline=deadline)
