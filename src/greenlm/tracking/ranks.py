"""Which rank of which job this process is, read from the launcher's environment.

A distributed run needs two facts every rank can know on its own, without talking to the
others: where it sits (rank, world size, local rank, node) and the identity of the job, from
which every rank derives the same group run id. Both come from what the launcher exports:

================  ===========================================  ================================
launcher          rank / world / local                          job identity (the group key)
================  ===========================================  ================================
torchrun          ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,     ``TORCHELASTIC_RUN_ID`` and
(torch elastic,   ``LOCAL_WORLD_SIZE``, ``GROUP_RANK``,         ``TORCHELASTIC_RESTART_COUNT``
accelerate)       ``GROUP_WORLD_SIZE`` (nodes)                  (see the "none" run id below)
MPI               ``OMPI_COMM_WORLD_{RANK,SIZE,LOCAL_RANK,      ``PMIX_NAMESPACE`` or
                  LOCAL_SIZE}``; ``PMI_RANK``, ``PMI_SIZE``,    ``OMPI_MCA_ess_base_jobid``
                  ``MPI_LOCALRANKID``, ``MPI_LOCALNRANKS``
DeepSpeed, env    ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,     none of its own
                  ``LOCAL_SIZE``, ``CROSS_RANK``/``CROSS_SIZE``
Slurm (srun)      ``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS``,   ``SLURM_CLUSTER_NAME``,
                  ``SLURM_LOCALID``, ``SLURM_NODEID``,          ``SLURM_JOB_ID``, ``SLURM_STEP_ID``
                  ``SLURM_STEP_NUM_NODES``                      (``batch`` in an sbatch script)
================  ===========================================  ================================

Slurm's identity wins whenever the process runs inside a Slurm job (a torchrun or MPI job
launched by srun is one job step); ``GREENLM_GROUP_ID`` overrides everything (a wrapper
script can set it to one value on every node). Where the launcher gives no identity:

* torchrun with the default run id ``none`` (``--master-port`` given, no ``--rdzv-id``): on
  one node the ranks are children of one torchrun agent, whose pid and start time identify
  the job; across nodes the ranks agree through the agent's own key-value store (the
  ``TCPStore`` at ``MASTER_ADDR:MASTER_PORT`` that torchrun runs for its workers), one
  compare-and-set, not a collective of the user's process group;
* other launchers on one node (DeepSpeed's ``launch``, ``mpirun`` without PMIx): the
  launcher process (nearest known ancestor) and its start time;
* several nodes with no identity at all: each node is stored as a run of its own, with a
  warning saying to set ``GREENLM_GROUP_ID`` (or torchrun's ``--rdzv-id``).

The node is ``$GREENLM_NODE_ID``, else ``$SLURMD_NODENAME``, else the host name (set
``GREENLM_NODE_ID`` to simulate several nodes on one host).

Nothing here imports torch unless the torchrun store has to be asked; nothing here talks
to the network otherwise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import re
import socket
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: Process names (``/proc/<pid>/comm``) of launchers whose process tree holds every rank of a node.
LAUNCHER_NAMES = frozenset(
    {
        "slurmstepd",
        "torchrun",
        "pt_elastic",  # torchrun's agent renames its main thread, hence the process
        "orted",
        "prted",
        "prterun",
        "mpirun",
        "mpiexec",
        "mpiexec.hydra",
        "hydra_pmi_proxy",
        "pmi_proxy",
        "deepspeed",
    }
)
#: Command-line words that mark a Python process as a launcher (``python -m torch.distributed.run``).
LAUNCHER_WORDS = ("torch.distributed.run", "torch.distributed.launch", "deepspeed.launcher.launch", "torchrun")


@dataclass(frozen=True)
class RankInfo:
    """Where this process sits in its job, and the job's identity.

    ``local_rank`` / ``local_world_size`` / ``node_rank`` / ``nodes`` are ``None`` when the
    launcher does not say. ``job`` is the key the group run id is derived from (``None``: no
    identity could be derived; the node then forms a run of its own). ``slurm`` holds the
    Slurm job's facts when the process runs inside one (also for a single task).
    """

    rank: int
    world_size: int
    local_rank: int | None
    local_world_size: int | None
    node: str
    node_rank: int | None
    nodes: int | None
    launcher: str  # torchrun | accelerate | deepspeed | mpi | slurm | env | none
    job: str | None
    slurm: dict[str, Any] | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def distributed(self) -> bool:
        """Whether this process is one rank of several."""
        return self.world_size > 1

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("notes", None)
        return d


def node_id(env: Mapping[str, str] | None = None) -> str:
    """Name of this node: ``$GREENLM_NODE_ID`` > ``$SLURMD_NODENAME`` > host name."""
    e = os.environ if env is None else env
    return (e.get("GREENLM_NODE_ID") or e.get("SLURMD_NODENAME") or socket.gethostname())[:64]


def _int(env: Mapping[str, str], *names: str) -> int | None:
    for n in names:
        v = env.get(n)
        if v is not None and re.fullmatch(r"\s*-?\d+\s*", v):
            return int(v)
    return None


def expand_tasks_per_node(spec: str) -> list[int]:
    """Slurm's ``2(x3),1`` (tasks on each node) as ``[2, 2, 2, 1]``; ``[]`` if unreadable."""
    out: list[int] = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if not m:
            return []
        out += [int(m.group(1))] * int(m.group(2) or 1)
    return out


def slurm_facts(env: Mapping[str, str]) -> dict[str, Any] | None:
    """The Slurm job and step this process runs in (``None`` outside Slurm).

    In an sbatch script (the batch step) there is no ``SLURM_STEP_ID``: the step is
    ``batch`` and the script is one task, whatever ``--ntasks`` the job asked for.
    """
    job = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
    if not job:
        return None
    step_raw = env.get("SLURM_STEP_ID") or env.get("SLURM_STEPID")
    in_step = step_raw is not None
    step = step_raw if in_step else "batch"
    node_id_ = _int(env, "SLURM_NODEID")
    per_node = expand_tasks_per_node(env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE") or "")
    facts: dict[str, Any] = {
        "cluster": env.get("SLURM_CLUSTER_NAME"),
        "job_id": job,
        "step_id": step,
        "job_name": env.get("SLURM_JOB_NAME"),
        "partition": env.get("SLURM_JOB_PARTITION"),
        "job_nodes": _int(env, "SLURM_JOB_NUM_NODES", "SLURM_NNODES"),
        "job_nodelist": env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST"),
        "job_tasks": _int(env, "SLURM_NTASKS", "SLURM_NPROCS"),
        "step_nodes": _int(env, "SLURM_STEP_NUM_NODES") if in_step else 1,
        "step_nodelist": env.get("SLURM_STEP_NODELIST") if in_step else env.get("SLURMD_NODENAME"),
        "step_tasks": _int(env, "SLURM_STEP_NUM_TASKS") if in_step else 1,
        "task": _int(env, "SLURM_PROCID") if in_step else 0,
        "local_task": _int(env, "SLURM_LOCALID") if in_step else 0,
        "node_index": node_id_ if in_step else 0,
        "tasks_on_node": (
            per_node[node_id_] if in_step and per_node and node_id_ is not None and node_id_ < len(per_node) else None
        ),
        "cpus_on_node": _int(env, "SLURM_CPUS_ON_NODE"),
        "node": env.get("SLURMD_NODENAME"),
        "array_job_id": env.get("SLURM_ARRAY_JOB_ID"),
        "array_task_id": env.get("SLURM_ARRAY_TASK_ID"),
    }
    if not in_step:
        facts["tasks_on_node"] = 1
    return {k: v for k, v in facts.items() if v is not None}


def _slurm_key(s: dict[str, Any]) -> str:
    return f"slurm:{s.get('cluster') or '-'}:{s['job_id']}.{s['step_id']}"


def detect(env: Mapping[str, str] | None = None, *, parent_pid: int | None = None) -> RankInfo:
    """Where this process sits in its job, from the environment.

    ``env`` and ``parent_pid`` replace ``os.environ`` and this process's launcher (its
    torchrun agent, ``mpirun``...) when given.
    """
    e: Mapping[str, str] = os.environ if env is None else env
    node = node_id(e)
    slurm = slurm_facts(e)
    notes: list[str] = []
    user_key = e.get("GREENLM_GROUP_ID")

    def key(own: str | None) -> str | None:
        if user_key:
            return f"user:{user_key}"
        if slurm is not None:
            # a torchrun restart inside one job step is a new run
            restart = e.get("TORCHELASTIC_RESTART_COUNT")
            return _slurm_key(slurm) + (f":restart{restart}" if restart not in (None, "0") else "")
        return own

    if "TORCHELASTIC_RUN_ID" in e and _int(e, "RANK") is not None:
        launcher = "accelerate" if any(k.startswith("ACCELERATE_") for k in e) else "torchrun"
        world = _int(e, "WORLD_SIZE") or 1
        local_world = _int(e, "LOCAL_WORLD_SIZE")
        nodes = _int(e, "GROUP_WORLD_SIZE")
        run_id = e.get("TORCHELASTIC_RUN_ID", "")
        restart = e.get("TORCHELASTIC_RESTART_COUNT", "0")
        own: str | None = None
        if run_id and run_id != "none":
            own = f"torchelastic:{run_id}:{restart}"
        elif nodes == 1 or (local_world is not None and local_world == world):
            own = _agent_key(parent_pid or os.getppid(), restart)
        elif e.get("TORCHELASTIC_USE_AGENT_STORE") == "True" and e.get("MASTER_ADDR") and _int(e, "MASTER_PORT"):
            own = f"torchstore:{e['MASTER_ADDR']}:{e['MASTER_PORT']}:{restart}"  # resolved by agree()
        return RankInfo(
            rank=_int(e, "RANK") or 0,
            world_size=world,
            local_rank=_int(e, "LOCAL_RANK"),
            local_world_size=local_world,
            node=node,
            node_rank=_int(e, "GROUP_RANK"),
            nodes=nodes,
            launcher=launcher,
            job=key(own),
            slurm=slurm,
            notes=tuple(notes),
        )
    if _int(e, "OMPI_COMM_WORLD_RANK") is not None or _int(e, "PMI_RANK") is not None:
        ompi = _int(e, "OMPI_COMM_WORLD_RANK") is not None
        world = (_int(e, "OMPI_COMM_WORLD_SIZE") if ompi else _int(e, "PMI_SIZE")) or 1
        local_world = _int(e, "OMPI_COMM_WORLD_LOCAL_SIZE") if ompi else _int(e, "MPI_LOCALNRANKS")
        ns = e.get("PMIX_NAMESPACE") or e.get("OMPI_MCA_ess_base_jobid")
        own = f"mpi:{ns}" if ns else None
        if own is None and local_world is not None and local_world == world:
            own = _launcher_key(parent_pid)
        return RankInfo(
            rank=(_int(e, "OMPI_COMM_WORLD_RANK") if ompi else _int(e, "PMI_RANK")) or 0,
            world_size=world,
            local_rank=_int(e, "OMPI_COMM_WORLD_LOCAL_RANK") if ompi else _int(e, "MPI_LOCALRANKID"),
            local_world_size=local_world,
            node=node,
            node_rank=slurm.get("node_index") if slurm else None,
            nodes=(slurm or {}).get("step_nodes") or (world // local_world if local_world else None),
            launcher="mpi",
            job=key(own),
            slurm=slurm,
        )
    if _int(e, "RANK") is not None and _int(e, "WORLD_SIZE") is not None:
        world = _int(e, "WORLD_SIZE") or 1
        local_world = _int(e, "LOCAL_WORLD_SIZE", "LOCAL_SIZE")
        launcher = "deepspeed" if "CROSS_RANK" in e or "LOCAL_SIZE" in e else "env"
        own = _launcher_key(parent_pid) if local_world is not None and local_world == world else None
        return RankInfo(
            rank=_int(e, "RANK") or 0,
            world_size=world,
            local_rank=_int(e, "LOCAL_RANK"),
            local_world_size=local_world,
            node=node,
            node_rank=_int(e, "CROSS_RANK", "GROUP_RANK", "NODE_RANK"),
            nodes=_int(e, "CROSS_SIZE", "GROUP_WORLD_SIZE"),
            launcher=launcher,
            job=key(own),
            slurm=slurm,
        )
    if slurm is not None:
        return RankInfo(
            rank=int(slurm.get("task", 0)),
            world_size=int(slurm.get("step_tasks", 1)),
            local_rank=slurm.get("local_task"),
            local_world_size=slurm.get("tasks_on_node"),
            node=node,
            node_rank=slurm.get("node_index"),
            nodes=slurm.get("step_nodes"),
            launcher="slurm",
            job=key(None),
            slurm=slurm,
        )
    return RankInfo(0, 1, None, None, node, None, None, "none", key(None), None)


def _agent_key(agent_pid: int, restart: str) -> str:
    """A torchrun agent's identity on one node: host, pid and start time of the agent."""
    return f"agent:{socket.gethostname()}:{agent_pid}:{_create_time(agent_pid)}:{restart}"


def _launcher_key(parent_pid: int | None) -> str:
    """One node's launcher (the nearest known launcher ancestor, else the parent process)."""
    pid = parent_pid or launcher_pid() or os.getppid()
    return f"launcher:{socket.gethostname()}:{pid}:{_create_time(pid)}"


def create_time(pid: int) -> str:
    """A process's start time, for keys that must not match a later process with the same pid."""
    return _create_time(pid)


def _create_time(pid: int) -> str:
    import psutil

    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except psutil.Error:
        return "?"


def launcher_pid(pid: int | None = None, max_depth: int = 8) -> int | None:
    """The nearest ancestor of ``pid`` (default: this process) that is a known launcher
    (slurmstepd, the torchrun agent, orted, hydra, DeepSpeed's launch), or ``None``.

    Its process tree holds every rank of this node, so node-level meters charged to it count
    all of them.
    """
    import psutil

    try:
        p: psutil.Process | None = psutil.Process(pid or os.getpid()).parent()
    except psutil.Error:
        return None
    for _ in range(max_depth):
        if p is None or p.pid <= 1:
            return None
        try:
            name = p.name()
            if name in LAUNCHER_NAMES:
                return int(p.pid)
            cmd = " ".join(p.cmdline()[:4])
            if any(w in cmd for w in LAUNCHER_WORDS):
                return int(p.pid)
            p = p.parent()
        except psutil.Error:
            return None
    return None


# ----------------------------------------------------------------- the group run id
_WINDOWS: dict[str, int] = {}
_WINDOWS_LOCK = threading.Lock()
_AGREED: dict[str, str] = {}


def next_window(job: str) -> int:
    """The number of this process's next distributed window of ``job`` (1, 2, ...).

    Every rank runs the same program, so the k-th window each rank opens is the same run:
    ``trainer.train()`` then ``trainer.evaluate()`` are two runs of the job, on every rank.
    """
    with _WINDOWS_LOCK:
        _WINDOWS[job] = _WINDOWS.get(job, 0) + 1
        return _WINDOWS[job]


def group_run_id(job: str, window: int = 1) -> str:
    """The run id every rank derives for the ``window``-th window of ``job`` (32 hex digits)."""
    return hashlib.sha256(f"greenlm-group\0{job}\0{window}".encode()).hexdigest()[:32]


def agree(info: RankInfo, timeout_s: float = 15.0) -> tuple[str | None, str | None]:
    """Resolve a job key that needs the launcher's store (``torchstore:``); ``(key, warning)``.

    The first rank to ask sets a fresh id under ``greenlm/group/<restart>`` in torchrun's
    agent store (compare-and-set); every rank reads the same value. Any failure gives
    ``(None, reason)``: the node is then stored as a run of its own.
    """
    job = info.job
    if job is None or not job.startswith("torchstore:"):
        return job, None
    if job in _AGREED:
        return _AGREED[job], None
    _, host, port, restart = job.split(":", 3)
    try:
        import datetime as dt

        from torch.distributed import TCPStore

        store = TCPStore(host, int(port), is_master=False, timeout=dt.timedelta(seconds=timeout_s))
        mine = uuid.uuid4().hex
        got = store.compare_set(f"greenlm/group/{restart}", "", mine)
        value = got.decode() if isinstance(got, bytes) else str(got)
        with contextlib.suppress(Exception):
            del store
    except Exception as e:
        return None, f"the ranks could not agree on a run id through torchrun's store at {host}:{port} ({e})"
    resolved = f"torchstore:{value}:{restart}"
    _AGREED[job] = resolved
    return resolved, None


__all__ = [
    "RankInfo",
    "agree",
    "create_time",
    "detect",
    "expand_tasks_per_node",
    "group_run_id",
    "launcher_pid",
    "next_window",
    "node_id",
    "slurm_facts",
]
