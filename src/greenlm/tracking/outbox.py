"""Send runs to a team server without ever losing one: :class:`HttpSink` and its outbox.

This is the tracker's side of the team server (a destination like the run store), so it
lives in ``tracking``; the server package only receives.

The tracker calls the sink from its sampling thread; the sink never blocks that thread on the
network and never raises into the user's job. Every event (a run's start, each batch of
samples, the final result) is first written to disk under
``$GREENLM_HOME/outbox/<server key>/<run_id>/NNNNNNNN-<kind>.json`` (atomically), then
delivered in order by a background thread (one per process and server, shared by all sinks)
with a timeout on every request and exponential backoff while the server is unreachable.
``finish()`` also tries to deliver the run's last events itself, for a bounded time, so a
short script's run is on the server when it exits.

What is still in the outbox when the process ends is delivered later: by the next tracker
that reports to the same server (its sink drains the whole outbox in the background), or by
``greenlm server push``. The server is idempotent by run id and by batch number, so sending
an event twice (a crash between delivery and deletion, two processes draining at once) is
harmless. Events the server rejects as invalid (HTTP 422) are moved to ``rejected/`` beside
them, with a warning, rather than retried forever or deleted.
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
from typing import Any

from greenlm._files import write_text_atomic
from greenlm.config import greenlm_home
from greenlm.tracking.result import RunResult
from greenlm.tracking.sink import Progress, RunStart, SampleRow

log = logging.getLogger(__name__)

#: At most this many samples per batch (one request each); larger flushes are split.
MAX_SAMPLES_PER_EVENT = 10_000
KINDS = ("start", "samples", "result")
#: An empty run folder untouched for this long belongs to a run that ended without a result
#: (its process was killed); delivery then removes it.
STALE_RUN_DIR_S = 3600.0


def normalise_url(url: str) -> str:
    """``host:8787`` -> ``http://host:8787``; no trailing slash."""
    u = url.strip().rstrip("/")
    if "://" not in u:
        u = "http://" + u
    return u


def outbox_root() -> Path:
    """``$GREENLM_HOME/outbox``."""
    return greenlm_home() / "outbox"


def server_key(url: str) -> str:
    """The outbox folder name of a server (a hash of its URL)."""
    return hashlib.sha256(normalise_url(url).encode()).hexdigest()[:16]


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


@dataclass
class DrainReport:
    """What one pass over an outbox did."""

    delivered: int = 0
    pending: int = 0
    rejected: int = 0
    runs_done: int = 0
    error: str | None = None

    def add(self, other: DrainReport) -> None:
        self.delivered += other.delivered
        self.pending += other.pending
        self.rejected += other.rejected
        self.runs_done += other.runs_done
        self.error = self.error or other.error


class Outbox:
    """The events of one server that are not yet acknowledged, one folder per run."""

    def __init__(self, url: str, root: Path | None = None) -> None:
        self.url = normalise_url(url)
        self.dir = (root or outbox_root()) / server_key(self.url)
        self._seq: dict[str, int] = {}
        self._lock = threading.Lock()

    def _ensure(self) -> None:
        if not (self.dir / "server.json").exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            _atomic_write(self.dir / "server.json", json.dumps({"url": self.url}))

    def put(self, run_id: str, kind: str, payload: dict[str, Any]) -> Path:
        """Write one event atomically; events of a run are numbered in order.

        A delivery thread may remove a run folder it has emptied (see
        :meth:`Delivery.deliver_run`) between our ``mkdir`` and our write; the folder is then
        made again and the write retried, so an event is never lost to that race.
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
        text = json.dumps(_clean(payload), allow_nan=False, default=str)
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

    def pending(self) -> int:
        """How many events wait for delivery."""
        return sum(len(list(d.glob("*.json"))) for d in self.run_dirs())

    def reject(self, path: Path, reason: str) -> None:
        """Keep an event the server refused as invalid, with the reason, out of the queue."""
        rej = self.dir / "rejected"
        rej.mkdir(parents=True, exist_ok=True)
        target = rej / f"{path.parent.name}-{path.name}"
        with contextlib.suppress(OSError):
            os.replace(path, target)
            _atomic_write(target.with_suffix(".reason.txt"), reason)


def _seq_of(p: Path) -> int:
    try:
        return int(p.name.split("-", 1)[0])
    except ValueError:
        return 0


def _idle_for(p: Path) -> float:
    """Seconds since anything was added to or removed from a folder."""
    return time.time() - _mtime(p)


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0


def _atomic_write(path: Path, text: str) -> None:
    write_text_atomic(path, text, fsync=True)


@contextlib.contextmanager
def _run_lock(run_dir: Path, wait_s: float) -> Iterator[bool]:
    """An exclusive lock on a run folder across processes (True if acquired)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: rely on the server's idempotency
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


class Delivery:
    """Posts outbox events to the server (one httpx client, a timeout on every request)."""

    def __init__(self, outbox: Outbox, token: str | None, timeout_s: float = 5.0) -> None:
        import httpx

        self.outbox = outbox
        headers = {"User-Agent": "greenlm-tracker"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.client = httpx.Client(
            base_url=outbox.url, headers=headers, timeout=httpx.Timeout(timeout_s, connect=min(3.0, timeout_s))
        )
        self._warned: set[str] = set()

    def close(self) -> None:
        self.client.close()

    def _warn_once(self, key: str, msg: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(msg, *args)

    def _endpoint(self, run_id: str, kind: str) -> str:
        if kind == "start":
            return f"/api/v1/runs/{run_id}/start"
        if kind == "samples":
            return f"/api/v1/runs/{run_id}/samples"
        return "/api/v1/runs"

    def deliver_run(self, run_dir: Path, wait_s: float = 0.0, deadline: float | None = None) -> DrainReport:
        """Post a run's events in order; stops at the first that cannot be delivered now."""
        import httpx

        rep = DrainReport()
        if not run_dir.is_dir():
            return rep
        idle_s = _idle_for(run_dir)  # before the lock file touches the folder
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
                    self.outbox.reject(f, f"unreadable event: {e}")
                    rep.rejected += 1
                    continue
                if kind not in KINDS:
                    self.outbox.reject(f, f"unknown event kind {kind!r}")
                    rep.rejected += 1
                    continue
                try:
                    r = self.client.post(self._endpoint(run_dir.name, kind), json=payload)
                    if r.status_code == 413 and kind == "result" and payload.get("timeline"):
                        payload.pop("timeline")  # the samples carry the trace; keep the result
                        _atomic_write(f, json.dumps(payload))
                        r = self.client.post(self._endpoint(run_dir.name, kind), json=payload)
                except httpx.HTTPError as e:
                    rep.pending += len(files) - i
                    rep.error = f"{type(e).__name__}: {e}"
                    return rep
                if r.status_code < 300:
                    with contextlib.suppress(FileNotFoundError):
                        f.unlink()
                    rep.delivered += 1
                    finished = finished or kind == "result"
                elif r.status_code in (413, 422) or (r.status_code == 404 and kind == "samples"):
                    # 404 for samples: the server never got this run's start (it was rejected),
                    # so these samples cannot be stored; the result can, without them.
                    reason = f"HTTP {r.status_code}: {r.text[:2000]}"
                    self.outbox.reject(f, reason)
                    finished = finished or kind == "result"
                    self._warn_once(
                        f"rej-{run_dir.name}",
                        "greenlm: server %s refused an event of run %s (%s); kept in %s",
                        self.outbox.url,
                        run_dir.name,
                        reason[:200],
                        self.outbox.dir / "rejected",
                    )
                    rep.rejected += 1
                else:
                    rep.pending += len(files) - i
                    rep.error = f"HTTP {r.status_code}: {r.text[:300]}"
                    if r.status_code in (401, 403):
                        self._warn_once(
                            "auth",
                            "greenlm: server %s refused the token (HTTP %s); runs stay "
                            "in %s until `greenlm server push --token ...`",
                            self.outbox.url,
                            r.status_code,
                            self.outbox.dir,
                        )
                    return rep
            if not any(run_dir.glob("*.json")) and (finished or idle_s > STALE_RUN_DIR_S):
                # Only a run whose result went out (or a folder nobody has written to for a
                # long time) is removed: an empty folder of a live run is about to get events.
                with contextlib.suppress(OSError):
                    (run_dir / ".lock").unlink()
                    run_dir.rmdir()
                rep.runs_done += 1
        return rep

    def drain(self, deadline: float | None = None) -> DrainReport:
        """Deliver every run in the outbox, oldest first; stops when the server is unreachable."""
        total = DrainReport()
        dirs = self.outbox.run_dirs()
        for i, d in enumerate(dirs):
            rep = self.deliver_run(d, deadline=deadline)
            total.add(rep)
            if rep.error:
                total.pending += sum(len(list(x.glob("*.json"))) for x in dirs[i + 1 :])
                break
        return total


class Courier:
    """Delivers one outbox in the background: one thread per process, server and token.

    Every :class:`HttpSink` of a process that reports to the same server with the same token
    shares one courier, so a program that opens thousands of tracking windows still runs one
    delivery thread. It drains the whole outbox of that server (runs left by earlier
    processes included), backs off while the server is unreachable, and sleeps when idle.
    """

    def __init__(self, outbox: Outbox, token: str | None, timeout_s: float, background: bool) -> None:
        self.outbox = outbox
        self._token = token
        self._timeout_s = timeout_s
        self._delivery: Delivery | None = None
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._worker, name="greenlm-outbox", daemon=True)
            self._thread.start()

    def delivery(self) -> Delivery:
        if self._delivery is None:
            self._delivery = Delivery(self.outbox, self._token, self._timeout_s)
        return self._delivery

    def drain(self, deadline: float | None = None) -> DrainReport:
        """Deliver what is in the outbox now."""
        with self.lock:
            return self.delivery().drain(deadline=deadline)

    def deliver_run(self, run_id: str, wait_s: float) -> None:
        """Try to deliver one run's events within ``wait_s`` seconds (at the end of a run)."""
        deadline = time.monotonic() + wait_s
        if self.lock.acquire(timeout=wait_s):
            try:
                left = max(0.0, deadline - time.monotonic())
                self.delivery().deliver_run(self.outbox.dir / run_id, wait_s=left, deadline=deadline)
            finally:
                self.lock.release()

    def _worker(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                rep = self.drain()
            except Exception as e:
                log.debug("greenlm: outbox worker error: %s", e, exc_info=True)
                rep = DrainReport(error=str(e))
            if rep.error:
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 60.0)
                continue
            backoff = 1.0
            self.wake.wait(30.0)
            self.wake.clear()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the background thread (what is undelivered stays in the outbox)."""
        with _COURIERS_LOCK:
            for k in [k for k, v in _COURIERS.items() if v is self]:
                del _COURIERS[k]
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        if self._delivery is not None:
            with contextlib.suppress(Exception):
                self._delivery.close()


_COURIERS: dict[tuple[Any, ...], Courier] = {}
_COURIERS_LOCK = threading.Lock()


def courier_for(outbox: Outbox, token: str | None, timeout_s: float = 5.0, background: bool = True) -> Courier:
    """The process's courier for this outbox and token (started on first use, again after fork)."""
    if not background:
        return Courier(Outbox(outbox.url, outbox.dir.parent), token, timeout_s, background=False)
    key = (os.getpid(), str(outbox.dir), token, timeout_s)
    with _COURIERS_LOCK:
        c = _COURIERS.get(key)
        if c is None:
            c = _COURIERS[key] = Courier(Outbox(outbox.url, outbox.dir.parent), token, timeout_s, background=True)
        return c


class HttpSink:
    """RunSink that reports to a team server through a durable outbox (never raises)."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        outbox_dir: str | Path | None = None,
        timeout_s: float = 5.0,
        finish_wait_s: float = 10.0,
        background: bool = True,
    ) -> None:
        self.url = normalise_url(url)
        self.finish_wait_s = finish_wait_s
        self.outbox = Outbox(self.url, Path(outbox_dir) if outbox_dir else None)
        self._warned = False
        # Starting the courier also drains what earlier processes left for this server.
        self.courier = courier_for(self.outbox, token, timeout_s, background)

    # ----------------------------------------------------------------- RunSink
    def begin(self, run: RunStart) -> None:
        self._put(run.run_id, "start", dataclasses.asdict(run))

    def flush(self, run_id: str, samples: list[SampleRow], progress: Progress) -> None:
        prog = dataclasses.asdict(progress)
        rows = [dataclasses.asdict(s) for s in samples]
        for i in range(0, max(len(rows), 1), MAX_SAMPLES_PER_EVENT):
            self._put(run_id, "samples", {"samples": rows[i : i + MAX_SAMPLES_PER_EVENT], "progress": prog})

    def finish(self, result: RunResult) -> None:
        if not self._put(result.run_id, "result", result.to_dict(timeline=True)):
            return
        try:
            self.courier.deliver_run(result.run_id, self.finish_wait_s)
        except Exception as e:  # never raise into the user's job
            log.debug("greenlm: delivery at finish failed: %s", e, exc_info=True)
        self.courier.wake.set()

    # ----------------------------------------------------------------- internals
    def _put(self, run_id: str, kind: str, payload: dict[str, Any]) -> bool:
        try:
            self.outbox.put(run_id, kind, payload)
        except Exception as e:
            if not self._warned:
                self._warned = True
                log.warning(
                    "greenlm: cannot write the outbox %s (%s); this run may not reach %s", self.outbox.dir, e, self.url
                )
            return False
        self.courier.wake.set()
        return True

    def drain(self, deadline: float | None = None) -> DrainReport:
        """Deliver what is in the outbox now (also used by tests)."""
        return self.courier.drain(deadline=deadline)


def push(
    url: str | None = None, token: str | None = None, root: Path | None = None, timeout_s: float = 10.0
) -> dict[str, DrainReport]:
    """Deliver the outbox now: one server (``url``) or every server that has events waiting."""
    base = root or outbox_root()
    targets: list[str] = []
    if url:
        targets = [normalise_url(url)]
    elif base.is_dir():
        for d in sorted(base.iterdir()):
            meta = d / "server.json"
            if meta.is_file():
                with contextlib.suppress(OSError, ValueError):
                    targets.append(str(json.loads(meta.read_text(encoding="utf-8"))["url"]))
    out: dict[str, DrainReport] = {}
    for t in targets:
        delivery = Delivery(Outbox(t, base), token, timeout_s)
        try:
            out[t] = delivery.drain()
        finally:
            delivery.close()
    return out


def open_destination(config: Any) -> HttpSink | None:
    """The team-server destination of a window: an :class:`HttpSink` when ``config.server`` is set."""
    if not config.server:
        return None
    return HttpSink(config.server, config.token)
