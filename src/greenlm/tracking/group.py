"""The ranks of one node coordinate through the node; the nodes through the run store.

No collective, no user process group: a :class:`GroupMember` is one rank's part in a
distributed run, and everything it shares goes through files under a per-job runtime
directory on its node, ``<runtime root>/<group run id>/<node>/`` (see :func:`runtime_root`):

* ``node-meters.lock``: local rank 0 (or, when the launcher does not number the ranks of a
  node, the first rank to take this ``flock``) measures the node-level meters (CPU, RAM),
  charged to the launcher's process tree (slurmstepd, the torchrun agent, ...: every rank
  of the node); the others do not.
* ``device-<id>.lock``: a GPU is measured by the rank that claims it. When every local rank
  sees the same ``n`` GPUs and ``n`` is a multiple of the local world size ``L``, local rank
  ``r`` claims positions ``r, r+L, ...`` (rank ``r`` drives ``cuda:r``); otherwise each rank
  claims every GPU it sees that no other rank of the node has claimed. A GPU is identified
  by its physical NVML index, so two ranks that see it under different
  ``CUDA_VISIBLE_DEVICES`` numbers still claim the same lock.
* ``rank-<r>.json``: each rank's report, rewritten atomically every ``flush_interval_s``
  (a snapshot) and at the end (final), with its pid: a rank whose process is gone without a
  final report counts as died, with the figures of its last snapshot.
* ``writer.lock``: one rank per node (whoever holds it; another takes over when it ends)
  sends the node's *part* (the merge of its ranks' reports, :mod:`greenlm.tracking.merge`)
  to the run store and the team server, at most every ``flush_interval_s`` and never more
  often than :data:`MAX_GROUP_WRITES_PER_S` writes per second across the job.
* ``assemble.lock``: the rank that closes last builds the final part and sends it; the
  node's directory is then removed.

A part is an ordinary run (``metadata.distributed.role == "part"``, id
``<group run id>.<node key>``) that the destinations store like any other; the store merges
the parts of a group into the group run as they arrive (``greenlm.store.groups``), so the
team server does the same for the runs it receives.

Nothing here raises into the user's job: a node directory that cannot be made turns the
window back into a run of this process alone, with a warning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from greenlm._files import write_text_atomic
from greenlm.tracking import ranks as rk
from greenlm.tracking.merge import RankReport, device_label, merge
from greenlm.tracking.result import RunResult
from greenlm.tracking.sink import DESTINATIONS, DeliveryReport, RunSink

if TYPE_CHECKING:
    from greenlm.config import TrackerConfig
    from greenlm.meters.base import Meter

log = logging.getLogger(__name__)

#: Across the whole job, the node writers together aim at no more than this many part
#: writes per second to one store or server: a node's cadence is
#: ``max(flush_interval_s, nodes / MAX_GROUP_WRITES_PER_S)``.
MAX_GROUP_WRITES_PER_S = 20.0
#: How long a closing rank waits for the node's assembly lock.
ASSEMBLE_WAIT_S = 10.0
#: Node directories left by jobs that ended without cleaning up are removed after this long.
STALE_DIR_S = 2 * 86400.0
#: Job keys that only this node's launcher process makes unique (see ``ranks.py``).
LOCAL_KEYS = ("agent", "launcher", "node")


def runtime_root(config: TrackerConfig | None = None) -> Path:
    """Where the ranks of a node meet: ``runtime_dir`` (``GREENLM_RUNTIME_DIR``), else
    ``$XDG_RUNTIME_DIR/greenlm``, else ``<tmp>/greenlm-<uid>``. It must be local to the node
    and shared by its ranks (a per-job ``/tmp`` under Slurm is).
    """
    if config is not None and config.runtime_dir:
        return Path(config.runtime_dir).expanduser()
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg) and os.access(xdg, os.W_OK):
        return Path(xdg) / "greenlm"
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"greenlm-{uid}"


def node_key(node: str) -> str:
    """A short, file-name- and run-id-safe key for a node name."""
    return "n" + hashlib.sha256(node.encode()).hexdigest()[:10]


def part_run_id(group_run_id: str, node: str) -> str:
    """The run id of a node's part of a group."""
    return f"{group_run_id}.{node_key(node)}"


def _pid_ns() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


class _Lock:
    """An exclusive ``flock`` on a file, held until :meth:`release` (or the process ends)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def try_acquire(self, wait_s: float = 0.0) -> bool:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return True
        if self.fd is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return False
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.fd = fd
                return True
            except OSError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.02)

    @property
    def held(self) -> bool:
        return self.fd is not None

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


class GroupMember:
    """One rank's membership in a distributed run (built by :meth:`join`)."""

    def __init__(
        self,
        info: rk.RankInfo,
        job_key: str,
        window: int,
        root: Path,
        config: TrackerConfig,
        store_arg: Any,
        warnings: list[str],
    ) -> None:
        self.info = info
        self.job_key = job_key
        self.window = window
        self.group_run_id = rk.group_run_id(job_key, window)
        self.part_id = part_run_id(self.group_run_id, info.node)
        self.dir = root / self.group_run_id / node_key(info.node)
        self.config = config
        self._store_arg = store_arg
        self._warnings = warnings
        self._node_lock = _Lock(self.dir / "node-meters.lock")
        self._writer = _Lock(self.dir / "writer.lock")
        self._claims: list[_Lock] = []
        #: Whether this rank measures the node-level meters of its node.
        self.node_meters = False
        self._meters: dict[str, dict[str, Any]] = {}
        self._sinks: list[tuple[str, RunSink]] | None = None
        self._reports: list[DeliveryReport] = []
        self._ship_lock = threading.Lock()
        self._last_ship = -1e18
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        nodes = info.nodes or 1
        self.ship_every_s = max(config.flush_interval_s, nodes / MAX_GROUP_WRITES_PER_S)
        import psutil

        try:
            self._create_time = psutil.Process().create_time()
        except psutil.Error:
            self._create_time = 0.0

    # ----------------------------------------------------------------- joining
    @classmethod
    def join(
        cls, config: TrackerConfig, store_arg: Any, warnings: list[str], info: rk.RankInfo | None = None
    ) -> GroupMember | None:
        """Membership of this process in its job's run, or ``None`` (not distributed, or
        coordination impossible here: the window then is a run of this process alone).
        """
        info = info or rk.detect()
        if config.distributed is False or (not info.distributed and config.distributed is not True):
            return None
        info, job, problem = _resolve_job(info)
        if problem:
            warnings.append(problem)
        root = runtime_root(config)
        window = rk.next_window(job)
        if job.split(":", 1)[0] in LOCAL_KEYS:
            # a key only this node's launcher makes unique: a long-lived launcher (a shell) may
            # start the same job twice; a run of this key that already ended is not reopened
            while (root / f"{rk.group_run_id(job, window)}.done").exists():
                window = rk.next_window(job)
        m = cls(info, job, window, root, config, store_arg, warnings)
        try:
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
            m.dir.mkdir(parents=True, exist_ok=True)
            _clean_stale(root, keep=m.group_run_id)
        except OSError as e:
            warnings.append(
                f"distributed: cannot use the runtime directory {root} ({e}); this rank is stored as a run "
                "of its own (set GREENLM_RUNTIME_DIR to a node-local, writable directory)"
            )
            return None
        return m

    # ----------------------------------------------------------------- meters
    def tree_pid(self) -> int | None:
        """The process tree node-level meters are charged to: the node's launcher (the
        nearest known launcher ancestor, else the parent process).
        """
        import psutil

        parent = os.getppid()
        for pid in (rk.launcher_pid(), parent if parent > 1 else None):
            if pid is None:
                continue
            try:  # another user's launcher may be hidden (/proc mounted with hidepid)
                psutil.Process(pid).cpu_times()
                return pid
            except psutil.Error:
                continue
        return None

    def select(self, meters: Sequence[Meter]) -> list[Meter]:
        """The meters this rank runs (see the module docstring); the others are closed."""
        node_level = [m for m in meters if getattr(m, "node_level", False)]
        devices = [m for m in meters if not getattr(m, "node_level", False)]
        chosen: list[Meter] = []
        # local rank 0 when the launcher numbers the node's ranks, else the first to start
        eligible = self.info.local_rank in (None, 0)
        if node_level and eligible and self._node_lock.try_acquire():
            chosen += node_level
            self.node_meters = True
        n, L = len(devices), self.info.local_world_size or 0
        r = self.info.local_rank or 0
        if L > 1 and n >= L and n % L == 0:
            candidates = [m for i, m in enumerate(devices) if i % L == r % L]
        else:
            candidates = list(devices)
        for m in candidates:
            info = _describe(m)
            label = device_label(m.name, m.kind, info)
            lock = _Lock(self.dir / f"device-{_safe(label)}.lock")
            if lock.try_acquire():
                self._claims.append(lock)
                chosen.append(m)
        for m in meters:
            if m not in chosen:
                with contextlib.suppress(Exception):
                    m.close()
        return chosen

    def keep_warnings(self, warnings: Sequence[str], chosen: Sequence[Meter]) -> list[str]:
        """The detection warnings that concern this rank: all of them on the rank measuring the
        node-level meters (every rank of a node detects the same), else those naming its devices.
        """
        if self.node_meters:
            return list(warnings)
        names = [m.name for m in chosen]
        return [w for w in warnings if any(w.startswith(f"{n}:") or f" {n} " in w for n in names)]

    def remember_meters(self, info: list[dict[str, Any]]) -> None:
        """The started meters' descriptions (GPU identity for the merge)."""
        self._meters = {str(d.get("name")): dict(d) for d in info}

    def metadata(self) -> dict[str, Any]:
        """What the rank's result records about its place in the job."""
        i = self.info
        return {
            "role": "rank",
            "group_run_id": self.group_run_id,
            "rank": i.rank,
            "world_size": i.world_size,
            "local_rank": i.local_rank,
            "local_world_size": i.local_world_size,
            "node": i.node,
            "node_rank": i.node_rank,
            "nodes_expected": i.nodes,
            "launcher": i.launcher,
            "window": self.window,
            "node_meters": self.node_meters,
        }

    # ----------------------------------------------------------------- reports
    def _rank_file(self, rank: int) -> Path:
        return self.dir / f"rank-{rank}.json"

    def _write_report(self, result: RunResult, state: str) -> None:
        doc = {
            "rank": self.info.rank,
            "node": self.info.node,
            "local_rank": self.info.local_rank,
            "pid": os.getpid(),
            "create_time": self._create_time,
            "pid_ns": _pid_ns(),
            "host": socket.gethostname(),
            "state": state,
            "updated": time.time(),
            "meters": self._meters,
            "result": result.to_dict(timeline=state == "final"),
        }
        write_text_atomic(self._rank_file(self.info.rank), json.dumps(doc, default=str))

    def read_reports(self) -> list[RankReport]:
        """Every report of this node now (a running one whose process is gone: died)."""
        out = []
        for p in sorted(self.dir.glob("rank-*.json")):
            try:
                doc = json.loads(p.read_text(encoding="utf-8"))
                result = RunResult.from_dict(doc["result"])
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.debug("greenlm: unreadable rank report %s: %s", p, e)
                continue
            state = str(doc.get("state") or "running")
            if state == "running" and not self._alive(doc):
                state = "died"
            out.append(
                RankReport(
                    result,
                    int(doc["rank"]),
                    str(doc.get("node") or self.info.node),
                    doc.get("local_rank"),
                    state,
                    {str(k): dict(v) for k, v in (doc.get("meters") or {}).items()},
                )
            )
        return out

    def _alive(self, doc: dict[str, Any]) -> bool:
        import psutil

        pid = int(doc.get("pid") or 0)
        if pid == os.getpid():
            return True
        same_view = doc.get("pid_ns") == _pid_ns() and doc.get("host") == socket.gethostname()
        if not same_view:  # another pid namespace: trust only a recent report
            return time.time() - float(doc.get("updated") or 0) < 3 * self.config.flush_interval_s + 10
        try:
            p = psutil.Process(pid)
            return abs(p.create_time() - float(doc.get("create_time") or 0)) < 1.0 and (
                p.status() != psutil.STATUS_ZOMBIE
            )
        except psutil.Error:
            return False

    def node_part(self, reports: list[RankReport] | None = None) -> RunResult:
        """The part of this node: the merge of its ranks' reports."""
        reps = self.read_reports() if reports is None else reports
        i = self.info
        return merge(
            reps,
            run_id=self.part_id,
            world_size=i.world_size,
            role="part",
            node=i.node,
            expected_ranks=i.local_world_size or len(reps),
            job=self._job_meta(),
            timeline_by_kind=i.nodes != 1,  # many nodes: the group's timeline is by kind
        )

    def _job_meta(self) -> dict[str, Any]:
        i = self.info
        return {
            "group_run_id": self.group_run_id,
            "launcher": i.launcher,
            "nodes_expected": i.nodes,
            "window": self.window,
        }

    # ----------------------------------------------------------------- during the window
    def flush(self, snapshot: RunResult) -> None:
        """Every ``flush_interval_s``: write this rank's snapshot; the node writer sends the part."""
        try:
            self._write_report(snapshot, "running")
        except OSError as e:
            self._warn(f"distributed: cannot write this rank's report in {self.dir} ({e})")
            return
        now = time.monotonic()
        if now - self._last_ship < self.ship_every_s:
            return
        if not self._writer.try_acquire():
            return
        self._last_ship = now
        self._ship_later()

    def start_writer(self, snapshot: RunResult) -> None:
        """At the window's start: the first rank of the node announces the part (so the group
        run is listed from the start), in a thread of its own.
        """
        with contextlib.suppress(OSError):
            self._write_report(snapshot, "running")
        if self._writer.try_acquire():
            self._last_ship = time.monotonic()
            self._ship_later()

    def _ship_later(self) -> None:
        """Build and send the node's part in the background (the latest state wins)."""
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="greenlm-group", daemon=True)
            self._worker.start()
        self._wake.set()

    def _work(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                with self._ship_lock:
                    self._ship(self.node_part())
            except Exception as e:  # never raise into the user's job
                log.debug("greenlm: sending the node's part failed: %s", e, exc_info=True)

    # ----------------------------------------------------------------- at the end
    def finish(self, result: RunResult) -> RunResult:
        """The window closed: write the final report; the node's last rank sends the final part."""
        self._stop.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout=30.0)
        try:
            self._write_report(result, "final")
        except OSError as e:
            self._warn(f"distributed: cannot write this rank's final report in {self.dir} ({e})")
        assemble = _Lock(self.dir / "assemble.lock")
        got = assemble.try_acquire(wait_s=ASSEMBLE_WAIT_S)
        try:
            if not self._rank_file(self.info.rank).exists():
                return result  # the node's last rank already sent the final part, this report in it
            reports = self.read_reports()
            others_running = any(r.state == "running" and r.rank != self.info.rank for r in reports)
            if not others_running or self._writer.held:
                with self._ship_lock:
                    part = self.node_part(reports)
                    self._ship(part)
                complete = not others_running and part.status != "running"
                if complete and got:
                    self._cleanup()
        except Exception as e:
            log.debug("greenlm: the node's final part failed: %s", e, exc_info=True)
            self._warn(f"distributed: this node's part could not be sent ({e})")
        finally:
            assemble.release()
            self.release()
        if list(result.warnings) != self._warnings:  # what went wrong sending the part
            result = dataclasses.replace(result, warnings=tuple(dict.fromkeys([*result.warnings, *self._warnings])))
        return result

    def release(self) -> None:
        """Give up every lock (the window closed)."""
        for lock in self._claims:
            lock.release()
        self._claims = []
        self._node_lock.release()
        self._writer.release()

    def _cleanup(self) -> None:
        with contextlib.suppress(OSError):
            shutil.rmtree(self.dir)
        with contextlib.suppress(OSError):
            self.dir.parent.rmdir()  # the group's folder, once every node of this host is done
        if self.job_key.split(":", 1)[0] in LOCAL_KEYS:
            with contextlib.suppress(OSError):
                (self.dir.parent.parent / f"{self.group_run_id}.done").touch()

    # ----------------------------------------------------------------- destinations
    def _open_sinks(self) -> list[tuple[str, RunSink]]:
        if self._sinks is not None:
            return self._sinks
        sinks: list[tuple[str, RunSink]] = []
        arg = self._store_arg
        for d in DESTINATIONS:
            if d.kind == "local" and arg is False:
                continue
            try:
                if d.kind == "local" and arg is not None and not isinstance(arg, (str, os.PathLike)):
                    sink: RunSink | None = arg
                else:
                    sink = d.open(self.config)
            except Exception as e:
                self._warn(f"{d.name} unavailable ({e}); this node's part of the run is not stored there")
                self._reports.append(DeliveryReport(d.name, "failed", f"could not be opened: {e}"))
                continue
            if sink is not None:
                sinks.append((str(getattr(sink, "label", None) or d.name), sink))
        self._sinks = sinks
        return sinks

    def _ship(self, part: RunResult) -> None:
        reports = [r for r in self._reports if r.state == "failed" and "opened" in r.detail]
        for label, sink in self._open_sinks():
            try:
                out: Any = sink.finish(part)  # type: ignore[func-returns-value]  # a sink may report
            except Exception as e:
                self._warn(f"{label} write failed ({e}); this node's part of the run may be missing there")
                reports.append(DeliveryReport(label, "failed", f"{type(e).__name__}: {e}"))
                continue
            rep = out if isinstance(out, DeliveryReport) else None
            if rep is None:
                status: Callable[[], DeliveryReport] | None = getattr(sink, "delivery_report", None)
                rep = status() if callable(status) else DeliveryReport(label, "stored")
            reports.append(rep)
        self._reports = reports

    def report(self) -> list[dict[str, Any]]:
        """Where this node's part went at the last send, per destination."""
        return [r.to_dict() for r in self._reports]

    def _warn(self, msg: str) -> None:
        if msg not in self._warnings:
            self._warnings.append(msg)
        log.warning("greenlm: %s", msg)


def _resolve_job(info: rk.RankInfo) -> tuple[rk.RankInfo, str, str | None]:
    """The job key every rank of the job agrees on, or this node's own (with the reason)."""
    job, problem = rk.agree(info)
    if job is not None:
        return info, job, problem
    # no identity across nodes: the node is a run of its own
    # one process: itself; several: their launcher (a known one is a process of this job)
    anchor = os.getpid() if info.world_size <= 1 else (rk.launcher_pid() or os.getppid())
    key = f"node:{socket.gethostname()}:{anchor}:{rk.create_time(anchor)}:{info.node}"
    why = problem or (
        f"distributed: the {info.launcher} launcher gives no job identity shared by every node, so this node's "
        "ranks are stored as a run of their own; set GREENLM_GROUP_ID to one value on every node (or torchrun's "
        "--rdzv-id) to store the job as one run"
    )
    local = info.local_world_size or 1
    rank = info.local_rank if info.local_rank is not None else info.rank
    return dataclasses.replace(info, rank=rank, world_size=local, nodes=1, job=key), key, why


def _describe(m: Meter) -> dict[str, Any]:
    try:
        return dict(m.describe())
    except Exception:
        return {}


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", label)[:80]


def _clean_stale(root: Path, keep: str) -> None:
    """Remove group folders (and end marks) of this node left by jobs long gone (best effort)."""
    now = time.time()
    with contextlib.suppress(OSError):
        for d in root.iterdir():
            if d.name == keep:
                continue
            with contextlib.suppress(OSError):
                if now - d.stat().st_mtime > STALE_DIR_S:
                    if d.is_dir():
                        shutil.rmtree(d)
                    else:
                        d.unlink()


__all__ = ["MAX_GROUP_WRITES_PER_S", "GroupMember", "node_key", "part_run_id", "runtime_root"]
