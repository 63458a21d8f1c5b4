"""Distributed by default: real torchrun launches (gloo on CPU) with the code a user writes for
one process store one run, CPU and RAM counted once per node, each GPU once.

GPUs are replacement NVML devices (tests/integrations/nvml_ranks.py over
tests/meters/fake_pynvml.py): greenlm's NVML code path is real, the vendor library is not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch.distributed")

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


def _wait(p: subprocess.Popen, timeout: float = 180) -> tuple[int, str]:
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


def _only_run(project: str) -> dict:
    runs = [_r.to_dict() for _r in open_store().list_runs(project=project)]
    assert len(runs) == 1, f"one run for the job, got {[(r['run_id'], r['status']) for r in runs]}"
    return runs[0]


def _check_counted_once(run: dict, nodes: dict[str, int]) -> None:
    comps = run["components"]
    assert run["energy_j"] == pytest.approx(sum(c["energy_j"] for c in comps), rel=1e-9)
    for node, n_gpus in nodes.items():
        here = [c for c in comps if c["node"] == node]
        assert sum(c["kind"] == "cpu" for c in here) == 1, f"CPU of {node} counted once"
        assert sum(c["kind"] == "ram" for c in here) == 1, f"RAM of {node} counted once"
        assert len({c["rank"] for c in here if c["kind"] != "gpu"}) == 1, "node-level meters on one rank"
        gpus = sorted(c["name"] for c in here if c["kind"] == "gpu")
        assert gpus == [f"{node}/gpu:{i}" for i in range(n_gpus)], "each GPU of the node once"
    names = [c["name"] for c in comps]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("visible_one", [False, True], ids=["both-see-both-gpus", "each-sees-one-gpu"])
def test_torchrun_plain_tracker_stores_one_run_each_gpu_once(visible_one: bool, tmp_path: Path) -> None:
    extra = ["--out", str(tmp_path / "views")] + (["--visible-one"] if visible_one else [])
    rc, out = _wait(_torchrun(2, free_port(), *extra, env={"GREENLM_TEST_GPUS": "300,250"}))
    assert rc == 0, out[-4000:]
    run = _only_run("dist")
    assert run["status"] == "completed"
    meta = run["metadata"]["distributed"]
    assert meta["role"] == "group" and meta["world_size"] == 2 and meta["launcher"] == "torchrun"
    assert sorted(r["rank"] for r in meta["ranks"]) == [0, 1]
    (node,) = meta["nodes"]
    _check_counted_once(run, {node: 2})
    # GPU i is measured by rank i (its own device) and draws its replacement power
    by_rank = {r["rank"]: r for r in meta["ranks"]}
    for i, watts in ((0, 300.0), (1, 250.0)):
        gpu = next(c for c in run["components"] if c["name"] == f"{node}/gpu:{i}")
        assert gpu["rank"] == i
        assert gpu["energy_j"] / by_rank[i]["duration_s"] == pytest.approx(watts, rel=0.05)
    assert {m.get("nvml_index") for m in run["meters"] if m["kind"] == "gpu"} == {0, 1}
    train = next(p for p in run["phases"] if p["path"] == "train")
    assert train["steps"] == 20, "every rank made the 20 steps: the job's steps, not 40"
    # the phase holds both GPUs: more than the 300 W one alone could give
    assert train["energy_j"] / train["duration_s"] > 400.0
    views = {v["rank"]: v for v in (json.loads(f.read_text()) for f in (tmp_path / "views").glob("*.json"))}
    assert {v["run_id"] for v in views.values()} == {run["run_id"]}, "every rank names the job's run"
    assert sum(v["energy_j"] for v in views.values()) == pytest.approx(run["energy_j"], rel=1e-6), (
        "the run is the sum of what the ranks measured, nothing twice"
    )


def test_hf_trainer_under_torchrun_stores_one_run_with_node_meters_once(tmp_path: Path) -> None:
    script = SCRIPT.with_name("dist_hf.py")
    out_dir = tmp_path / "out"
    rc, out = _wait(_torchrun(2, free_port(), str(out_dir), script=script), timeout=300)
    assert rc == 0, out[-4000:]
    views = {v["rank"]: v for v in (json.loads(f.read_text()) for f in out_dir.glob("view-*.json"))}
    assert set(views) == {0, 1}, out[-4000:]
    assert {v["tracker"] for v in views.values()} == {"EnergyTracker"}, "the callback's plain tracker"
    assert views[0]["group_run_id"] == views[1]["group_run_id"], "both ranks tracked one run"
    run = _only_run("hf-dist")
    assert run["run_id"] == views[0]["run_id"] == views[0]["group_run_id"]
    assert run["status"] == "completed"
    meta = run["metadata"]["distributed"]
    assert meta["world_size"] == 2 and sorted(r["rank"] for r in meta["ranks"]) == [0, 1]
    (node,) = meta["nodes"]
    _check_counted_once(run, {node: 0})
    assert run["energy_j"] == pytest.approx(views[0]["rank_energy_j"] + views[1]["rank_energy_j"], rel=1e-6)
    train = next(p for p in run["phases"] if p["path"] == "train")
    assert train["steps"] == 6
    # the Trainer logs on rank 0 only, and it logs the growing energy of the run
    assert views[0]["logged_energy"] and views[0]["logged_energy"] == sorted(views[0]["logged_energy"])


def test_lightning_under_torchrun_stores_one_run(tmp_path: Path) -> None:
    pytest.importorskip("pytorch_lightning")
    out_dir = tmp_path / "out"
    rc, out = _wait(_torchrun(2, free_port(), str(out_dir), script=SCRIPT.with_name("dist_lightning.py")), 300)
    assert rc == 0, out[-4000:]
    views = {v["rank"]: v for v in (json.loads(f.read_text()) for f in out_dir.glob("view-*.json"))}
    assert set(views) == {0, 1}, out[-4000:]
    run = _only_run("pl-dist")
    assert run["status"] == "completed" and run["run_id"] == views[0]["group_run_id"] == views[1]["group_run_id"]
    meta = run["metadata"]["distributed"]
    assert sorted(r["rank"] for r in meta["ranks"]) == [0, 1]
    (node,) = meta["nodes"]
    _check_counted_once(run, {node: 0})
    paths = {p["path"]: p for p in run["phases"]}
    assert {"fit", "fit/train", "fit/train/validate"} <= set(paths)
    # 64 samples, batch 8, 2 ranks: 4 batches per rank per epoch, 2 epochs
    assert paths["fit/train"]["steps"] == 8
    assert views[0]["sent_energy"] and not views[1]["sent_energy"], "loggers run on global rank 0"


def test_simulated_two_nodes_count_node_meters_once_per_node() -> None:
    """Two torchrun agents (static rendezvous, no --rdzv-id) as two nodes on one host: the
    ranks agree on the run through torchrun's own store, each node sends its part."""
    port = free_port()
    env = {"GREENLM_TEST_GPUS": "300,250"}
    a = _torchrun(2, port, nnodes=2, node_rank=0, env={**env, "GREENLM_NODE_ID": "node-a"})
    b = _torchrun(2, port, nnodes=2, node_rank=1, env={**env, "GREENLM_NODE_ID": "node-b"})
    (rc_a, out_a), (rc_b, out_b) = _wait(a), _wait(b)
    assert _workers_succeeded(rc_a, out_a) and _workers_succeeded(rc_b, out_b), out_a + out_b
    run = _only_run("dist")
    assert run["status"] == "completed", "every rank of both nodes finished"
    meta = run["metadata"]["distributed"]
    assert meta["world_size"] == 4
    assert meta["nodes"] == {"node-a": [0, 1], "node-b": [2, 3]}
    _check_counted_once(run, {"node-a": 2, "node-b": 2})
    parts = [
        r
        for r in [_r.to_dict() for _r in open_store().list_runs(project="dist", include_rank_rows=True)]
        if r["run_id"] != run["run_id"]
    ]
    assert sorted(p["metadata"]["distributed"]["node"] for p in parts) == ["node-a", "node-b"]
    assert sum(p["energy_j"] for p in parts) == pytest.approx(run["energy_j"], rel=1e-9)


def test_a_rank_that_dies_leaves_the_run_marked_with_what_was_measured() -> None:
    rc, out = _wait(
        _torchrun(2, free_port(), "--steps=200", "--die-rank=1", "--die-step=25", env={"GREENLM_TEST_GPUS": "300,250"})
    )
    assert rc != 0, out
    run = _only_run("dist")
    assert run["status"] == "failed"
    assert (run["error"] or "").startswith("ranks that did not complete: rank 1 (failed: the process ended"), run[
        "error"
    ]
    assert 1 in run["metadata"]["distributed"]["failed_ranks"]
    ranks = {r["rank"]: r for r in run["metadata"]["distributed"]["ranks"]}
    assert ranks[1].get("died") is True and ranks[0]["status"] in ("failed", "interrupted")
    gpus = {c["rank"]: c for c in run["components"] if c["kind"] == "gpu"}
    assert set(gpus) == {0, 1}, "rank 1's last reported energy is kept"
    assert gpus[1]["energy_j"] > 0
    assert gpus[1]["energy_j"] < gpus[0]["energy_j"], "rank 1 stopped counting when it died"


def test_distributed_false_keeps_one_run_per_process(tmp_path: Path) -> None:
    env = {"GREENLM_TEST_GPUS": "300,250", "GREENLM_DISTRIBUTED": "false"}
    rc, out = _wait(_torchrun(2, free_port(), env=env))
    assert rc == 0, out[-4000:]
    runs = [_r.to_dict() for _r in open_store().list_runs(project="dist")]
    assert len(runs) == 2 and {r["status"] for r in runs} == {"completed"}
    for r in runs:
        assert "distributed" not in r["metadata"]
        assert sorted(c["name"] for c in r["components"] if c["kind"] == "gpu") == ["gpu:0", "gpu:1"], (
            "each process reads every GPU it sees, as before"
        )
