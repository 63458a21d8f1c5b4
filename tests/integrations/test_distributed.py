"""Distributed: real torchrun launches (gloo on CPU) store one run with no double counting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch.distributed")

from greenlm.integrations.distributed import RankInfo, select_meters
from greenlm.meters.fake import ReplayMeter
from greenlm.store.runs import open_store

from ._serving import free_port

SCRIPT = Path(__file__).with_name("dist_train.py")


def _torchrun(
    nproc: int,
    port: int,
    *extra: str,
    nnodes: int = 1,
    node_rank: int = 0,
    env: dict[str, str] | None = None,
    script: Path = SCRIPT,
) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={nproc}",
        f"--nnodes={nnodes}",
        f"--node-rank={node_rank}",
        "--master-addr=127.0.0.1",
        f"--master-port={port}",
        "--monitor-interval=0.2",
        str(script),
        *extra,
    ]
    e = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(p: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        pytest.fail(f"torchrun did not finish in {timeout} s; its output:\n{out[-4000:]}")
    return p.returncode, out


def _workers_succeeded(rc: int, out: str) -> bool:
    """Whether a torchrun agent's workers all succeeded.

    With two simulated nodes on one machine, the agents meet at torchrun's exit barrier on
    node 0's store after their workers are done; node 0's agent may close that store while
    node 1's agent still reads it. torchrun then logs "Error waiting on exit barrier" and can
    exit non-zero although every worker succeeded: a launcher teardown race, not the
    workload's failure (a failed worker is reported as ChildFailedError).
    """
    if rc == 0:
        return True
    return "Error waiting on exit barrier" in out and "ChildFailedError" not in out


def _group_runs() -> list[dict]:
    runs = [r.to_dict() for r in open_store().list_runs(project="dist")]
    return [r for r in runs if r["metadata"].get("distributed", {}).get("role") == "group"]


def _check_no_double_counting(run: dict, nodes: dict[str, int]) -> None:
    comps = run["components"]
    assert run["energy_j"] == pytest.approx(sum(c["energy_j"] for c in comps), rel=1e-9)
    for node, n_ranks in nodes.items():
        here = [c for c in comps if c["node"] == node]
        assert sum(c["kind"] == "cpu" for c in here) == 1, f"CPU of {node} counted once"
        assert sum(c["kind"] == "ram" for c in here) == 1, f"RAM of {node} counted once"
        assert all(c["rank"] == min(c2["rank"] for c2 in here) for c in here if c["kind"] != "gpu"), (
            "node-level meters run on the node's local rank 0"
        )
        gpus = [c for c in here if c["kind"] == "gpu"]
        assert len(gpus) == n_ranks and len({c["rank"] for c in gpus}) == n_ranks
    names = [c["name"] for c in comps]
    assert len(names) == len(set(names))


def test_torchrun_two_ranks_store_one_run() -> None:
    rc, out = _wait(_torchrun(2, free_port()))
    assert rc == 0, out
    runs = [r.to_dict() for r in open_store().list_runs(project="dist")]
    assert len(runs) == 1, "the rank rows are replaced by the merged run"
    run = runs[0]
    assert run["status"] == "completed"
    meta = run["metadata"]["distributed"]
    assert meta["world_size"] == 2 and sorted(r["rank"] for r in meta["ranks"]) == [0, 1]
    (node,) = meta["nodes"]
    _check_no_double_counting(run, {node: 2})
    gpu = {c["rank"]: c for c in run["components"] if c["kind"] == "gpu"}
    dur = {r["rank"]: r["duration_s"] for r in meta["ranks"]}
    # replayed 100 W and 110 W: compare mean power (the ranks' windows differ under load)
    power = {k: gpu[k]["energy_j"] / dur[k] for k in (0, 1)}
    assert power[1] / power[0] == pytest.approx(1.1, rel=0.05)
    train = next(p for p in run["phases"] if p["path"] == "train")
    assert train["steps"] == 20
    # the phase covers both ranks' devices: more power than one 110 W GPU plus the CPU could give
    assert train["energy_j"] / train["duration_s"] > 150.0
    assert any(m.get("replay") for m in run["meters"]), "stand-in GPUs are labelled"


def test_hf_trainer_under_torchrun_stores_one_run_with_node_meters_once(tmp_path: Path) -> None:
    script = SCRIPT.with_name("dist_hf.py")
    out_dir = tmp_path / "out"
    rc, out = _wait(_torchrun(2, free_port(), str(out_dir), script=script), timeout=240)
    assert rc == 0, out[-4000:]
    views = {v["rank"]: v for v in (json.loads(f.read_text()) for f in out_dir.glob("view-*.json"))}
    assert set(views) == {0, 1}, out[-4000:]
    assert {v["tracker"] for v in views.values()} == {"DistributedTracker"}, "the callback went distributed alone"
    assert views[0]["group_run_id"] == views[1]["group_run_id"], "both ranks tracked one run"
    runs = [r.to_dict() for r in open_store().list_runs(project="hf-dist")]
    assert len(runs) == 1, "the rank rows are replaced by the merged run"
    (run,) = runs
    assert run["run_id"] == views[0]["run_id"] == views[0]["group_run_id"], "rank 0's result is the merged run"
    assert run["status"] == "completed"
    meta = run["metadata"]["distributed"]
    assert meta["world_size"] == 2 and sorted(r["rank"] for r in meta["ranks"]) == [0, 1]
    (node,) = meta["nodes"]
    here = [c for c in run["components"] if c["node"] == node]
    assert sum(c["kind"] == "cpu" for c in here) == 1 and sum(c["kind"] == "ram" for c in here) == 1
    assert run["energy_j"] == pytest.approx(sum(c["energy_j"] for c in run["components"]), rel=1e-9)
    train = next(p for p in run["phases"] if p["path"] == "train")
    assert train["steps"] == 6
    # the Trainer logs on rank 0 only, and it logs the growing energy of the run
    assert views[0]["logged_energy"] and views[0]["logged_energy"] == sorted(views[0]["logged_energy"])


def test_simulated_two_nodes_count_node_meters_once_per_node() -> None:
    port = free_port()
    a = _torchrun(2, port, nnodes=2, node_rank=0, env={"GREENLM_NODE_ID": "node-a"})
    b = _torchrun(2, port, nnodes=2, node_rank=1, env={"GREENLM_NODE_ID": "node-b"})
    (rc_a, out_a), (rc_b, out_b) = _wait(a), _wait(b)
    assert _workers_succeeded(rc_a, out_a) and _workers_succeeded(rc_b, out_b), out_a + out_b
    (run,) = _group_runs()
    assert run["status"] == "completed", "every rank of both nodes finished"
    meta = run["metadata"]["distributed"]
    assert meta["world_size"] == 4
    assert meta["nodes"] == {"node-a": [0, 1], "node-b": [2, 3]}
    _check_no_double_counting(run, {"node-a": 2, "node-b": 2})
    assert len(open_store().list_runs(project="dist")) == 1


def test_a_rank_that_dies_leaves_the_run_marked_with_what_was_measured() -> None:
    rc, out = _wait(_torchrun(2, free_port(), "--steps=200", "--die-rank=1", "--die-step=25"))
    assert rc != 0, out
    groups = _group_runs()
    assert len(groups) == 1, f"rank 0 stored no merged run; torchrun said:\n{out[-3000:]}"
    (run,) = groups
    assert run["status"] in ("failed", "interrupted")
    assert "rank 1" in (run["error"] or "")
    assert 1 in run["metadata"]["distributed"]["failed_ranks"]
    by_rank = {c["rank"] for c in run["components"] if c["kind"] == "gpu"}
    assert by_rank == {0, 1}, "rank 1's last flushed energy is kept"
    assert all(c["energy_j"] > 0 for c in run["components"] if c["kind"] == "gpu")


def test_sigterm_while_rank0_closes_is_held_until_the_merged_run_is_stored() -> None:
    """torchrun's SIGTERM often reaches rank 0 while it is already closing; here it arrives
    deterministically at that moment. The merged run must be stored before SIGTERM's usual
    effect (the process ends) takes place."""
    rc, out = _wait(_torchrun(2, free_port(), "--term-rank0-while-closing"))
    assert rc != 0, "rank 0 still ends by SIGTERM: " + out[-2000:]
    assert "SIGTERM" in out
    groups = _group_runs()
    assert len(groups) == 1, f"no merged run; torchrun said:\n{out[-3000:]}"
    (run,) = groups
    assert run["status"] == "completed", "every rank finished its work before the signal"
    assert sorted(r["rank"] for r in run["metadata"]["distributed"]["ranks"]) == [0, 1]


def test_gpu_split_and_node_level_rule() -> None:
    gpus = [ReplayMeter(f"gpu:{i}", "gpu", 1.0) for i in range(4)]
    cpu = ReplayMeter("cpu", "cpu", 1.0, node_level=True)
    env = {
        "TORCHELASTIC_RUN_ID": "x",
        "RANK": "1",
        "WORLD_SIZE": "2",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "2",
        "GREENLM_NODE_ID": "n0",
    }
    info = RankInfo.from_env(env)
    assert info.launcher == "torchrun" and info.node == "n0"
    chosen = select_meters([cpu, *gpus], info)
    assert [m.name for m in chosen] == ["gpu:1", "gpu:3"], "no node-level meter off local rank 0"
    info0 = RankInfo.from_env({**env, "RANK": "0", "LOCAL_RANK": "0"})
    assert [m.name for m in select_meters([cpu, *gpus], info0)] == ["cpu", "gpu:0", "gpu:2"]


def test_slurm_environment() -> None:
    info = RankInfo.from_env(
        {
            "SLURM_PROCID": "5",
            "SLURM_NTASKS": "8",
            "SLURM_LOCALID": "1",
            "SLURM_NTASKS_PER_NODE": "4",
            "SLURM_NODEID": "1",
            "SLURMD_NODENAME": "gpu-17",
        }
    )
    assert (info.rank, info.world_size, info.local_rank, info.node, info.launcher) == (5, 8, 1, "gpu-17", "slurm")
