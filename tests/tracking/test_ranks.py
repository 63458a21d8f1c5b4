"""Which rank of which job: the launchers' environments (tracking/ranks.py)."""

from __future__ import annotations

import os

import pytest

from greenlm.config import TrackerConfig
from greenlm.errors import ConfigError
from greenlm.tracking import ranks


def torchrun(rank: int, run_id: str = "job-1", **extra: str) -> dict[str, str]:
    return {
        "TORCHELASTIC_RUN_ID": run_id,
        "TORCHELASTIC_RESTART_COUNT": "0",
        "RANK": str(rank),
        "WORLD_SIZE": "4",
        "LOCAL_RANK": str(rank % 2),
        "LOCAL_WORLD_SIZE": "2",
        "GROUP_RANK": str(rank // 2),
        "GROUP_WORLD_SIZE": "2",
        "MASTER_ADDR": "10.0.0.1",
        "MASTER_PORT": "29500",
        "TORCHELASTIC_USE_AGENT_STORE": "True",
        "GREENLM_NODE_ID": f"node{rank // 2}",
        **extra,
    }


def test_torchrun_ranks_derive_one_run_id_without_talking():
    infos = [ranks.detect(torchrun(r)) for r in range(4)]
    assert [(i.rank, i.local_rank, i.node_rank, i.node) for i in infos] == [
        (0, 0, 0, "node0"),
        (1, 1, 0, "node0"),
        (2, 0, 1, "node1"),
        (3, 1, 1, "node1"),
    ]
    assert {i.world_size for i in infos} == {4} and {i.nodes for i in infos} == {2}
    assert {i.launcher for i in infos} == {"torchrun"}
    assert len({i.job for i in infos}) == 1
    gid = ranks.group_run_id(infos[0].job)
    assert len(gid) == 32 and all(ranks.group_run_id(i.job) == gid for i in infos)
    assert ranks.group_run_id(infos[0].job, 2) != gid, "the next window is another run"
    restarted = ranks.detect(torchrun(0, TORCHELASTIC_RESTART_COUNT="1"))
    assert ranks.group_run_id(restarted.job) != gid, "an elastic restart is another run"
    other = ranks.detect(torchrun(0, run_id="job-2"))
    assert ranks.group_run_id(other.job) != gid


def test_torchrun_without_a_run_id():
    one_node = {**torchrun(0, run_id="none"), "WORLD_SIZE": "2", "GROUP_WORLD_SIZE": "1"}
    a = ranks.detect(one_node, parent_pid=os.getpid())
    b = ranks.detect({**one_node, "RANK": "1", "LOCAL_RANK": "1"}, parent_pid=os.getpid())
    assert a.job == b.job and a.job.startswith("agent:"), "the agent that started both identifies the job"
    other_agent = ranks.detect(one_node, parent_pid=os.getppid())
    assert other_agent.job != a.job
    multi = ranks.detect(torchrun(2, run_id="none"))
    assert multi.job == "torchstore:10.0.0.1:29500:0", "several nodes agree through torchrun's store"
    job, why = ranks.agree(ranks.detect(torchrun(2, run_id="none", MASTER_PORT="1")), timeout_s=0.5)
    assert job is None and "could not agree" in why


def test_accelerate_is_torchrun_underneath():
    info = ranks.detect(torchrun(1, ACCELERATE_MIXED_PRECISION="bf16"))
    assert info.launcher == "accelerate" and info.job == ranks.detect(torchrun(1)).job


def slurm_step(procid: int, **extra: str) -> dict[str, str]:
    return {
        "SLURM_CLUSTER_NAME": "c1",
        "SLURM_JOB_ID": "777",
        "SLURM_STEP_ID": "3",
        "SLURM_PROCID": str(procid),
        "SLURM_LOCALID": str(procid % 4),
        "SLURM_NODEID": str(procid // 4),
        "SLURM_STEP_NUM_TASKS": "8",
        "SLURM_STEP_NUM_NODES": "2",
        "SLURM_STEP_TASKS_PER_NODE": "4(x2)",
        "SLURM_STEP_NODELIST": "gpu-[01-02]",
        "SLURM_NTASKS": "8",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURMD_NODENAME": f"gpu-0{procid // 4 + 1}",
        **extra,
    }


def test_slurm_step():
    infos = [ranks.detect(slurm_step(p)) for p in range(8)]
    i5 = infos[5]
    assert (i5.rank, i5.world_size, i5.local_rank, i5.local_world_size, i5.node, i5.node_rank, i5.nodes) == (
        5,
        8,
        1,
        4,
        "gpu-02",
        1,
        2,
    )
    assert i5.launcher == "slurm" and i5.job == "slurm:c1:777.3"
    assert len({i.job for i in infos}) == 1
    assert i5.slurm["job_id"] == "777" and i5.slurm["step_id"] == "3" and i5.slurm["task"] == 5


def test_sbatch_script_is_one_process_of_the_batch_step():
    env = {"SLURM_JOB_ID": "778", "SLURM_NTASKS": "8", "SLURM_PROCID": "0", "SLURM_JOB_NUM_NODES": "2"}
    info = ranks.detect(env)
    assert info.world_size == 1 and not info.distributed
    assert info.slurm["step_id"] == "batch" and info.slurm["job_tasks"] == 8 and info.slurm["job_nodes"] == 2


def test_torchrun_inside_slurm_takes_ranks_from_torchrun_identity_from_slurm():
    env = {**slurm_step(0, SLURM_STEP_NUM_TASKS="2", SLURM_STEP_TASKS_PER_NODE="1(x2)"), **torchrun(3)}
    info = ranks.detect(env)
    assert info.rank == 3 and info.world_size == 4 and info.launcher == "torchrun"
    assert info.job == "slurm:c1:777.3"


def test_mpi():
    ompi = {
        "OMPI_COMM_WORLD_RANK": "3",
        "OMPI_COMM_WORLD_SIZE": "16",
        "OMPI_COMM_WORLD_LOCAL_RANK": "3",
        "OMPI_COMM_WORLD_LOCAL_SIZE": "8",
        "PMIX_NAMESPACE": "prterun-host-4242@1",
    }
    info = ranks.detect(ompi)
    assert (info.rank, info.world_size, info.local_rank, info.local_world_size, info.launcher) == (3, 16, 3, 8, "mpi")
    assert info.job == "mpi:prterun-host-4242@1" and info.nodes == 2
    pmi = ranks.detect({"PMI_RANK": "1", "PMI_SIZE": "2", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "2"})
    assert pmi.rank == 1 and pmi.local_world_size == 2 and pmi.job.startswith("launcher:"), "one node: its launcher"
    no_id = ranks.detect({"PMI_RANK": "1", "PMI_SIZE": "4", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "2"})
    assert no_id.job is None, "several nodes and no identity: nothing to derive"


def test_deepspeed_launcher_and_group_id_override():
    ds = {"RANK": "9", "WORLD_SIZE": "16", "LOCAL_RANK": "1", "LOCAL_SIZE": "8", "CROSS_RANK": "1", "CROSS_SIZE": "2"}
    info = ranks.detect(ds)
    assert (info.launcher, info.node_rank, info.nodes, info.local_world_size) == ("deepspeed", 1, 2, 8)
    assert info.job is None
    assert ranks.detect({**ds, "GREENLM_GROUP_ID": "exp-42"}).job == "user:exp-42"


def test_one_process_is_not_distributed():
    info = ranks.detect({})
    assert not info.distributed and info.launcher == "none" and info.slurm is None


def test_tasks_per_node():
    assert ranks.expand_tasks_per_node("2(x3),1") == [2, 2, 2, 1]
    assert ranks.expand_tasks_per_node("x") == []


@pytest.mark.parametrize(("raw", "value"), [("auto", None), ("false", False), ("1", True), (None, None)])
def test_distributed_setting(monkeypatch, raw, value):
    if raw is not None:
        monkeypatch.setenv("GREENLM_DISTRIBUTED", raw)
    assert TrackerConfig.resolve().distributed is value


def test_distributed_setting_refuses_nonsense(monkeypatch):
    monkeypatch.setenv("GREENLM_DISTRIBUTED", "sometimes")
    with pytest.raises(ConfigError, match=r"distributed must be true or false \(or auto\).*GREENLM_DISTRIBUTED"):
        TrackerConfig.resolve()
