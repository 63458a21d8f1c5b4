"""Distributed training (torchrun, torch.distributed, Slurm): one run for all ranks.

``with DistributedTracker(project="pretrain") as t: train()`` on every rank (after
``torch.distributed.init_process_group``; ``start`` and ``stop`` are collective).

Who measures what (no double counting)
--------------------------------------
* Node identity: ``$GREENLM_NODE_ID``, else ``$SLURMD_NODENAME``, else the host name (set
  ``GREENLM_NODE_ID`` to simulate several nodes on one host).
* Node-level meters (``Meter.node_level``: CPU package, RAM) run on local rank 0 only. Under
  torchrun or srun they are attributed to the launcher's process tree (the torchrun agent or
  slurmstepd, i.e. every rank of this node), otherwise to the rank's own process tree.
* Device meters (GPUs): each rank measures the GPUs it can see. When every rank sees the
  same ``n`` GPUs and ``n`` is a multiple of the local world size ``L``, local rank ``r``
  measures those at positions ``r, r + L, ...`` (rank ``r`` drives ``cuda:r``). Otherwise each
  rank measures all it sees, and the merge keeps each physical device once (by node and NVML
  index, else meter name), from the lowest rank that measured it.
* The run's total is the sum of these distinct devices; each component of the stored run is
  named ``<node>/<device>`` and carries ``node`` and ``rank``.

How the run is assembled, and what happens when a rank dies
-----------------------------------------------------------
1. ``start()``: rank 0 draws the group run id and broadcasts it over a gloo group; every rank
   opens its own tracker, which stores a *rank row* in the run store (``metadata
   ["distributed"]["role"] == "rank"``) and flushes its progress every ``flush_interval_s``.
2. ``stop()``: every rank closes its window and sends its result to rank 0
   (``gather_object`` over gloo, bounded by ``gather_timeout_s``). Rank 0 stores the merged
   run (id = the group run id, ``role == "group"``) with the per-node / per-rank breakdown;
   the rank rows are then deleted.
3. If the gather fails or times out, if the block raises, or if rank 0 is stopped by SIGTERM
   (torchrun stops the survivors when a worker dies), rank 0 merges what it has: its own
   result and every rank row of the group it finds in the store (final results, or the last
   flushed progress of ranks that died). The run is stored ``failed`` (``interrupted`` for
   SIGTERM / Ctrl-C) with ``error`` naming the ranks that did not complete and
   ``metadata["distributed"]["failed_ranks"]``; the rank rows are kept as evidence. With a
   store every node can reach (PostgreSQL, or SQLite on a shared file system) the merged run
   includes every rank's last flush; with node-local stores, only what reached rank 0.
4. SIGTERM belongs to the distributed tracker for the whole window: one that arrives while
   the window is already closing is held until the merged run is stored, then re-delivered.

Cost and scale: each rank samples only its own meters (one NVML call per GPU per interval;
node-level meters once per node) and writes one row of progress per ``flush_interval_s``;
the merge moves one small JSON object per rank. For many nodes, point ``GREENLM_STORE`` at
PostgreSQL so that every rank row reaches one store, and raise ``flush_interval_s`` (writes
scale as ranks / flush interval).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import signal
import socket
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from greenlm.meters.base import Meter
from greenlm.tracking import signals
from greenlm.tracking.result import ComponentEnergy, PhaseEnergy, RunResult, totals_from_components

log = logging.getLogger(__name__)


def node_id(env: dict[str, str] | None = None) -> str:
    """Name of this node: ``$GREENLM_NODE_ID`` > ``$SLURMD_NODENAME`` > host name."""
    e = os.environ if env is None else env
    return (e.get("GREENLM_NODE_ID") or e.get("SLURMD_NODENAME") or socket.gethostname())[:64]


def _int(env: dict[str, str] | Any, *names: str, default: int) -> int:
    for n in names:
        v = env.get(n)
        if v is not None and str(v).strip().lstrip("-").isdigit():
            return int(v)
    return default


@dataclass(frozen=True)
class RankInfo:
    """Where this process sits in the job, from the launcher's environment."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    node: str
    node_rank: int | None
    launcher: str  # torchrun | slurm | none

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> RankInfo:
        """Torchrun (``RANK``, ``LOCAL_RANK``, ``GROUP_RANK``...) else Slurm (``SLURM_PROCID``...)."""
        e: Any = os.environ if env is None else env
        if "TORCHELASTIC_RUN_ID" in e or "LOCAL_RANK" in e:
            launcher = "torchrun" if "TORCHELASTIC_RUN_ID" in e else "none"
            node_rank = _int(e, "GROUP_RANK", "NODE_RANK", default=-1)
            return cls(
                _int(e, "RANK", default=0),
                _int(e, "WORLD_SIZE", default=1),
                _int(e, "LOCAL_RANK", default=0),
                _int(e, "LOCAL_WORLD_SIZE", default=1),
                node_id(e),
                node_rank if node_rank >= 0 else None,
                launcher,
            )
        if "SLURM_PROCID" in e:
            return cls(
                _int(e, "SLURM_PROCID", default=0),
                _int(e, "SLURM_NTASKS", default=1),
                _int(e, "SLURM_LOCALID", default=0),
                _int(e, "SLURM_NTASKS_PER_NODE", "SLURM_TASKS_PER_NODE", default=1),
                node_id(e),
                _int(e, "SLURM_NODEID", default=0),
                "slurm",
            )
        return cls(0, 1, 0, 1, node_id(e), None, "none")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def select_meters(meters: Sequence[Meter], info: RankInfo) -> list[Meter]:
    """The meters this rank runs: node-level ones on local rank 0 only; GPUs split by position
    when every local rank sees the same GPUs (see the module docstring).
    """
    node_level = [m for m in meters if getattr(m, "node_level", False)]
    devices = [m for m in meters if not getattr(m, "node_level", False)]
    n, L, r = len(devices), max(1, info.local_world_size), info.local_rank
    if n >= L > 1 and n % L == 0 and "CUDA_VISIBLE_DEVICES" not in os.environ:
        devices = [m for i, m in enumerate(devices) if i % L == r % L]
    return (node_level if info.local_rank == 0 else []) + devices


def detect_meters(info: RankInfo | None = None, **settings: Any) -> tuple[list[Meter], list[str]]:
    """Meters of this machine (and fallback warnings) as a rank sees them: node-level meters
    attributed to the launcher's process tree under torchrun / srun. ``settings``:
    ``cpu_tdp_w``, ``attribution``, ``gpus`` (as for ``EnergyTracker``).
    """
    from greenlm.config import TrackerConfig
    from greenlm.meters.detect import detect

    info = info or RankInfo.from_env()
    cfg = TrackerConfig.resolve(**{k: v for k, v in settings.items() if v is not None})
    pid = os.getppid() if info.launcher in ("torchrun", "slurm") else None
    det = detect(pid=pid, rapl_root=cfg.rapl_root, cpu_tdp_w=cfg.cpu_tdp_w, attribution=cfg.attribution, gpus=cfg.gpus)
    return det.meters, det.warnings


def device_key(node: str, component: dict[str, Any], meter: dict[str, Any] | None) -> tuple[str, str]:
    """Identity of a measured device: node-level meters per node, GPUs by device id.

    A GPU's id is its meter's ``device_id`` (``nvml:0``, ``nvml:0/MIG-...``,
    ``amdsmi:0000:c1:00.0``), else its NVML index. A GPU component charged by a process
    share (``scope="process"``) belongs to its own process tree: ranks sharing one GPU each
    keep their share.
    """
    m = meter or {}
    ident = m.get("device_id")
    if ident is None and m.get("nvml_index") is not None:
        ident = f"nvml:{m['nvml_index']}"
    if ident is None:
        return node, str(component["name"])
    if component.get("scope") == "process" and component.get("kind") == "gpu":
        return node, f"{ident}/pid:{m.get('pid')}"
    return node, str(ident)


class DistributedTracker:
    """A tracker for one rank of a distributed job; rank 0 stores one run for the job.

    Keyword arguments are ``EnergyTracker`` settings. ``meters``: this rank's candidate
    meters (default: detected; node-level ones are dropped on local ranks other than 0).
    ``gather_timeout_s`` bounds the wait for the other ranks at ``stop()``.
    """

    def __init__(
        self,
        project: str | None = None,
        *,
        meters: Sequence[Meter] | None = None,
        gather_timeout_s: float = 120.0,
        env: dict[str, str] | None = None,
        **tracker_kwargs: Any,
    ) -> None:
        from greenlm.tracking.tracker import EnergyTracker

        self.info = RankInfo.from_env(env)
        self.gather_timeout_s = float(gather_timeout_s)
        self._store_arg = tracker_kwargs.pop("store", None)
        warnings: list[str] = []
        if meters is None:
            meters, warnings = self._detect(tracker_kwargs)
        self._warnings = warnings
        chosen = select_meters(list(meters), self.info)
        user_meta = dict(tracker_kwargs.pop("metadata", None) or {})
        listeners = [*tracker_kwargs.pop("listeners", ()), self]
        local_store = False if (self._store_arg is False or not _is_url(self._store_arg)) else self._store_arg
        # One SIGTERM handler for the whole window, owned here (see _on_sigterm): the rank's
        # own tracker must not close and re-raise on its own while rank 0 is merging.
        self._handle_signals = bool(tracker_kwargs.pop("handle_signals", True))
        self._prev_term: Any = None
        self._term_pending = False
        self.local = EnergyTracker(
            project,
            meters=chosen,
            metadata=user_meta,
            listeners=listeners,
            store=local_store,
            handle_signals=False,
            **tracker_kwargs,
        )
        self.group_run_id: str | None = None
        self._group: Any = None
        self._dist: Any = None
        self._stopping = False
        self._result: RunResult | None = None
        self._started_at: str | None = None

    # ----------------------------------------------------------------- delegation
    def __getattr__(self, name: str) -> Any:  # running, steps, phase, step, energy_at, carbon...
        if name == "local":
            raise AttributeError(name)
        return getattr(self.local, name)

    @property
    def result(self) -> RunResult:
        """Rank 0: the merged run; other ranks: this rank's own result."""
        if self._result is None:
            return self.local.result
        return self._result

    def __enter__(self) -> DistributedTracker:
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.stop()
            return
        self._stopping = True
        try:
            self.local.__exit__(exc_type, exc, tb)
            status = "interrupted" if issubclass(exc_type, KeyboardInterrupt) else "failed"
            if self._group is not None:
                self._fallback(status, f"rank {self.info.rank} raised {exc_type.__name__}: {exc}")
        finally:
            self._stopping = False
            self._release_group()
            self._release_sigterm()

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> DistributedTracker:
        """Open the window on this rank (collective: every rank calls it)."""
        if self.local.running:
            self.local.start()
            return self
        self._result = None
        self._started_at = dt.datetime.now(dt.timezone.utc).isoformat()
        gid = uuid.uuid4().hex
        dist = _dist()
        if dist is not None and self.info.world_size > 1:
            self._dist = dist
            self._group = _gloo_group(dist, self.gather_timeout_s)
            box = [gid]
            dist.broadcast_object_list(box, src=0, group=self._group)
            gid = str(box[0])
            self.info = dataclasses.replace(self.info, rank=dist.get_rank(), world_size=dist.get_world_size())
        elif self.info.world_size > 1:
            self._warnings.append(
                "torch.distributed was not initialised when the tracker started: "
                "this rank is measured and stored on its own"
            )
        self.group_run_id = gid
        self.local.set_metadata(distributed={**self.info.to_dict(), "group_run_id": gid, "role": "rank"})
        self.local.start()
        self._hold_sigterm()
        return self

    def stop(self) -> RunResult:
        """Close the window (collective). Rank 0 returns and stores the merged run; the other
        ranks return their own result.
        """
        self._stopping = True
        try:
            mine: RunResult = self.local.stop()
            if self._group is None:  # one process, or no process group: an ordinary run
                return mine
            try:
                gathered = self._gather(self._payload(mine))
            except Exception as e:
                log.warning("greenlm: gathering the ranks' results failed: %s", e)
                merged = self._fallback("failed", f"gather failed: {e}")
                return merged or mine
            ok = False
            if self.info.rank == 0 and gathered is not None:
                try:
                    self._result = self._merge(gathered, "completed", None)
                    ok = self._store(self._result)
                except Exception as e:
                    log.warning("greenlm: merging the ranks' results failed: %s", e)
                    self._fallback("failed", f"merge failed: {e}")
            self._confirm_and_cleanup(ok)
            return self._result if self.info.rank == 0 and self._result is not None else mine
        finally:
            self._stopping = False
            self._release_group()
            self._release_sigterm()

    @property
    def total_steps(self) -> int | None:
        return self.local.total_steps

    @total_steps.setter
    def total_steps(self, n: int | None) -> None:
        self.local.total_steps = n

    # ----------------------------------------------------------------- tracker listener
    def on_stop(self, result: RunResult) -> None:
        """The rank's window closed without ``stop()`` (SIGTERM, interpreter exit)."""
        if self._stopping or self.info.rank != 0 or self.info.world_size <= 1:
            return
        with contextlib.suppress(Exception), _deferred_sigterm():
            self._fallback(
                result.status if result.status != "completed" else "failed",
                f"rank 0 window closed by {result.error or 'the process'}",
            )

    # ----------------------------------------------------------------- SIGTERM
    def _hold_sigterm(self) -> None:
        """Own SIGTERM for the window (main thread only).

        torchrun stops the surviving ranks with SIGTERM when one dies, often while rank 0 is
        already closing (its collective failed when the dead rank's socket closed). A SIGTERM
        that lands while the window is closing is held and re-delivered once the merged run
        is stored; one that lands mid-training closes this rank's window as interrupted,
        lets rank 0 merge what the store has, then does what SIGTERM did before.
        """
        self._term_pending = False
        self._prev_term = signals.take(self._on_sigterm, (signal.SIGTERM,)) if self._handle_signals else None

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        if self._stopping:
            self._term_pending = True  # re-delivered by _release_sigterm
            return
        self._stopping = True
        try:
            with contextlib.suppress(Exception):
                while self.local.running:  # nested windows: close them all
                    self.local.stop("interrupted", "SIGTERM")
                if self._group is not None:
                    self._fallback("interrupted", f"rank {self.info.rank} stopped by SIGTERM")
        finally:
            self._stopping = False
            self._term_pending = True
            self._release_group()
            self._release_sigterm()

    def _release_sigterm(self) -> None:
        """Give SIGTERM back to its previous handler; re-deliver one that was held."""
        prev, self._prev_term = self._prev_term, None
        if prev is None:
            return
        signals.restore(prev)
        if self._term_pending:
            self._term_pending = False
            signals.redeliver(signal.SIGTERM, prev)

    def _release_group(self) -> None:
        """Destroy the window's gloo group (each window makes its own; a local call).

        Left alive, the group's C++ worker threads outlive the window and are torn down
        only at interpreter exit, where gloo can abort the process ("terminate called
        without an active exception") after the job itself finished fine.
        """
        group, self._group = self._group, None
        if group is not None and self._dist is not None:
            try:
                self._dist.destroy_process_group(group)
            except Exception as e:
                log.debug("greenlm: destroying the tracker's gloo group failed: %s", e)

    # ----------------------------------------------------------------- internals
    def _detect(self, kw: dict[str, Any]) -> tuple[list[Meter], list[str]]:
        return detect_meters(
            self.info, cpu_tdp_w=kw.get("cpu_tdp_w"), attribution=kw.get("attribution"), gpus=kw.get("gpus")
        )

    def _payload(self, r: RunResult) -> dict[str, Any]:
        return {"info": self.info.to_dict(), "result": r.to_dict(), "status": r.status}

    def _gather(self, payload: dict[str, Any]) -> list[dict[str, Any]] | None:
        dist = self._dist
        out: list[Any] | None = [None] * self.info.world_size if self.info.rank == 0 else None
        dist.gather_object(payload, out, dst=0, group=self._group)
        return out

    def _confirm_and_cleanup(self, stored: bool) -> None:
        """Rank 0 says whether the merged run is stored; then each rank deletes its rank row."""
        ok = [stored]
        try:
            self._dist.broadcast_object_list(ok, src=0, group=self._group)
        except Exception as e:
            log.debug("greenlm: merge confirmation failed: %s", e)
            return
        if ok[0] and _is_url(self._store_arg) and self._store_arg is not False:
            with contextlib.suppress(Exception):
                self._open_store().delete_run(self.local.run_id)

    def _fallback(self, status: str, error: str) -> RunResult | None:
        """Rank 0: merge its own result with the rank rows found in the store."""
        if self.info.rank != 0:
            return None
        mine = self._payload(self.local.result)
        payloads = {self.info.rank: mine}
        for d in self._rank_rows():
            info = (d.get("metadata") or {}).get("distributed") or {}
            rk = info.get("rank")
            if isinstance(rk, int) and rk not in payloads:
                payloads[rk] = {"info": info, "result": d, "status": d.get("status")}
        # the other ranks first: when rank 0 fails it is usually because one of them died
        failed = sorted(
            (r for r in range(self.info.world_size) if r not in payloads or payloads[r]["status"] != "completed"),
            key=lambda r: (r == self.info.rank, r),
        )
        parts = [f"rank {r} ({payloads[r]['status'] if r in payloads else 'no report'})" for r in failed]
        msg = f"{error}; ranks that did not complete: {', '.join(parts) or 'none'}"
        merged = self._merge([payloads[k] for k in sorted(payloads)], status, msg, failed=failed)
        self._result = merged
        self._store(merged)
        return merged

    def _rank_rows(self) -> list[dict[str, Any]]:
        if not _is_url(self._store_arg) or self._store_arg is False:
            return []
        try:
            st = self._open_store()
            rows = st.list_runs(project=self.local.config.project, include_rank_rows=True)
        except Exception as e:
            log.debug("greenlm: cannot read rank rows: %s", e)
            return []
        out = []
        for d in (r.to_dict() for r in rows if r.ok):
            info = (d.get("metadata") or {}).get("distributed") or {}
            if info.get("group_run_id") == self.group_run_id and info.get("role") == "rank":
                out.append(d)
        return out

    def _open_store(self) -> Any:
        from greenlm.store import open_store

        return open_store(self.local.config.store)

    def _store(self, result: RunResult) -> bool:
        arg = self._store_arg
        if arg is False:
            return True
        try:
            if _is_url(arg):
                self._open_store().save_result(result)
            else:
                arg.finish(result)
            return True
        except Exception as e:
            log.warning("greenlm: could not store the distributed run: %s", e)
            return False

    def _merge(
        self, payloads: list[dict[str, Any]], status: str, error: str | None, failed: Sequence[int] = ()
    ) -> RunResult:
        """One run from the ranks' results: distinct devices, per node and rank."""
        payloads = sorted((p for p in payloads if p), key=lambda p: int(p["info"].get("rank", 0)))
        comps: list[ComponentEnergy] = []
        seen: set[tuple[str, str]] = set()
        dup_warnings: list[str] = []
        phases: dict[str, list[Any]] = {}
        ranks_meta = []
        warnings: list[str] = list(self._warnings)
        meters: list[dict[str, Any]] = []
        duration = 0.0
        started = [p["result"].get("started_at") for p in payloads if p["result"].get("started_at")]
        for p in payloads:
            info, d = p["info"], p["result"]
            node, rank = str(info.get("node", "?")), int(info.get("rank", 0))
            meter_info = {m.get("name"): m for m in d.get("meters") or []}
            rank_e = 0.0
            for c in d.get("components") or []:
                key = device_key(node, c, meter_info.get(c["name"]))
                if key in seen:
                    dup_warnings.append(f"{node}/{c['name']} measured by rank {rank} too: counted once")
                    continue
                seen.add(key)
                e = float(c.get("energy_j") or 0.0)
                rank_e += e
                comps.append(
                    ComponentEnergy(
                        name=f"{node}/{c['name']}",
                        kind=c.get("kind") or "gpu",
                        energy_j=e,
                        provenance=c.get("provenance") or "modeled",
                        low_j=float(c["low_j"]) if c.get("low_j") is not None else e,
                        high_j=float(c["high_j"]) if c.get("high_j") is not None else e,
                        scope=c.get("scope") or "device",
                        detail=c.get("detail") or "",
                        node=node,
                        rank=rank,
                        device_energy_j=None if c.get("device_energy_j") is None else float(c["device_energy_j"]),
                    )
                )
            for m in d.get("meters") or []:
                meters.append({**m, "node": node, "rank": rank})
            for ph in d.get("phases") or []:
                a = phases.setdefault(ph["path"], [ph, 0.0, rank])
                a[1] += float(ph["energy_j"])
            duration = max(duration, float(d.get("duration_s") or 0.0))
            warnings += [f"rank {rank}: {w}" for w in d.get("warnings") or []]
            ranks_meta.append(
                {
                    "rank": rank,
                    "node": node,
                    "local_rank": info.get("local_rank"),
                    "status": p.get("status"),
                    "energy_j": rank_e,
                    "duration_s": d.get("duration_s"),
                    "rank_run_id": d.get("run_id"),
                }
            )
        totals, g_per_j = totals_from_components(comps, self.local.carbon)
        phase_objs = tuple(
            PhaseEnergy(
                name=ph["name"],
                parent=ph.get("parent"),
                energy_j=e,
                duration_s=float(ph["duration_s"]),
                steps=int(ph.get("steps") or 0),
                entries=int(ph.get("entries") or 1),
                co2e_g=e * g_per_j,
            )
            for ph, e, _ in phases.values()
        )
        nodes: dict[str, list[int]] = {}
        for rm in ranks_meta:
            nodes.setdefault(rm["node"], []).append(rm["rank"])
        own = self.local.result
        meta = {
            **{k: v for k, v in own.metadata.items() if k != "distributed"},
            "distributed": {
                "role": "group",
                "group_run_id": self.group_run_id,
                "world_size": self.info.world_size,
                "nodes": nodes,
                "ranks": ranks_meta,
                "failed_ranks": list(failed),
                "rule": "node-level meters on local rank 0; each device once",
            },
        }
        started_at = min(started) if started else (self._started_at or own.started_at)
        ended = (
            None
            if status == "running"
            else (dt.datetime.fromisoformat(started_at) + dt.timedelta(seconds=duration)).isoformat()
        )
        return RunResult(
            run_id=self.group_run_id or own.run_id,
            project=own.project,
            status=status,
            started_at=started_at,
            ended_at=ended,
            duration_s=duration,
            **totals,
            components=tuple(comps),
            phases=phase_objs,
            steps=own.steps,
            warnings=tuple(dict.fromkeys(warnings + dup_warnings)),
            timeline=(),
            metadata=meta,
            host=own.host,
            error=error,
            forecast=own.forecast,
            meters=tuple(meters),
        )


@contextlib.contextmanager
def _deferred_sigterm() -> Iterator[None]:
    """Hold SIGTERM while the merged run is written (torchrun stops the survivors of a failed
    rank with SIGTERM); re-deliver it afterwards. Main thread only.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    try:
        prev = signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    except (ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, prev)
        if got:
            os.kill(os.getpid(), signal.SIGTERM)


def _is_url(arg: Any) -> bool:
    return arg is None or isinstance(arg, str)


def _dist() -> Any:
    """torch.distributed when it is initialised, else None."""
    try:
        import torch.distributed as dist
    except ImportError:
        return None
    if dist.is_available() and dist.is_initialized():
        return dist
    return None


def _gloo_group(dist: Any, timeout_s: float) -> Any:
    """A gloo group for the CPU-side exchange (collective: every rank creates it)."""
    return dist.new_group(backend="gloo", timeout=dt.timedelta(seconds=timeout_s))
