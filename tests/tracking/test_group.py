"""The ranks of a node coordinate through the node (tracking/group.py): real processes here
with a launcher's environment set by the test, replacement NVML GPUs (nvml_ranks.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from greenlm.store import open_store

PROC = Path(__file__).with_name("rank_proc.py")


def launch(rank: int, world: int, seconds: float, job: str | None, gpus: str, *, visible: str | None = None, flag=None):
    """A rank under torchrun's environment (``job``: its run id), or, with ``job=None``, under
    DeepSpeed's launcher's, which names no job: the launcher (here the test) is the identity.
    """
    env = {
        **os.environ,
        "RANK": str(rank),
        "WORLD_SIZE": str(world),
        "LOCAL_RANK": str(rank),
        "GREENLM_TEST_GPUS": gpus,
    }
    if job is None:
        env.update(LOCAL_SIZE=str(world), CROSS_RANK="0", CROSS_SIZE="1")
    else:
        env.update(TORCHELASTIC_RUN_ID=job, LOCAL_WORLD_SIZE=str(world), GROUP_WORLD_SIZE="1")
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    args = [sys.executable, str(PROC), str(seconds)] + ([str(flag)] if flag else [])
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(*procs: subprocess.Popen) -> None:
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode in (0, -signal.SIGKILL), out


def only_run() -> dict:
    runs = [_r.to_dict() for _r in open_store().list_runs(project="group")]
    assert len(runs) == 1, [(r["run_id"], r["status"]) for r in runs]
    return runs[0]


@pytest.fixture
def runtime(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "runtime"
    monkeypatch.setenv("GREENLM_RUNTIME_DIR", str(d))
    return d


def test_three_ranks_two_gpus_each_gpu_once(runtime):
    job = uuid.uuid4().hex
    finish(*[launch(r, 3, 1.0, job, "300,200") for r in range(3)])
    run = only_run()
    assert run["status"] == "completed"
    comps = run["components"]
    gpus = sorted(c["name"].split("/")[1] for c in comps if c["kind"] == "gpu")
    assert gpus == ["gpu:0", "gpu:1"], "2 GPUs for 3 ranks: each claimed by one rank"
    assert sum(c["kind"] == "cpu" for c in comps) == 1 and sum(c["kind"] == "ram" for c in comps) == 1
    assert next(c for c in comps if c["kind"] == "cpu")["rank"] == 0, "local rank 0 measures the node"
    assert sorted(r["rank"] for r in run["metadata"]["distributed"]["ranks"]) == [0, 1, 2]
    assert not any(runtime.iterdir()), "the node's folder is removed once its part is final"


def test_a_gpu_shared_by_two_ranks_is_counted_once(runtime):
    job = uuid.uuid4().hex
    finish(*[launch(r, 2, 1.0, job, "300,200", visible="1") for r in range(2)])
    run = only_run()
    gpus = [c for c in run["components"] if c["kind"] == "gpu"]
    assert len(gpus) == 1 and gpus[0]["name"].endswith("/gpu:1"), "both ranks see physical GPU 1 as cuda:0"
    ranks = {r["rank"]: r for r in run["metadata"]["distributed"]["ranks"]}
    assert gpus[0]["energy_j"] == pytest.approx(200.0 * ranks[gpus[0]["rank"]]["duration_s"], rel=0.05)


def test_a_rank_that_starts_late_joins_the_run(runtime):
    job = uuid.uuid4().hex
    finish(launch(0, 2, 0.5, job, "300,200"))
    waiting = [_r.to_dict() for _r in open_store().list_runs(project="group")]
    assert [r["status"] for r in waiting] == ["running"], "rank 1 has not reported: the run is not complete"
    finish(launch(1, 2, 0.5, job, "300,200"))
    run = only_run()
    assert run["status"] == "completed"
    assert sorted(c["name"].split("/")[1] for c in run["components"] if c["kind"] == "gpu") == ["gpu:0", "gpu:1"]
    starts = sorted(r["started_at"] for r in run["metadata"]["distributed"]["ranks"])
    assert starts[0] < starts[1] and run["duration_s"] > 1.0, "the run spans both ranks' windows"


def test_a_killed_rank_is_named_and_its_last_report_kept(runtime, tmp_path):
    job = uuid.uuid4().hex
    opened = tmp_path / "opened"
    victim = launch(1, 2, 30.0, job, "300,200", flag=opened)
    survivor = launch(0, 2, 3.0, job, "300,200")
    deadline = time.monotonic() + 60
    while not opened.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # a few snapshots
    victim.kill()
    finish(victim, survivor)
    run = only_run()
    assert run["status"] == "failed"
    assert "rank 1 (failed: the process ended without a final report" in run["error"]
    gpu1 = next(c for c in run["components"] if c["name"].endswith("/gpu:1"))
    assert gpu1["rank"] == 1 and gpu1["energy_j"] > 100.0, "the killed rank's energy up to its last report"


def test_the_group_run_is_listed_while_the_job_runs(runtime, tmp_path):
    job = uuid.uuid4().hex
    flags = [tmp_path / f"open{r}" for r in range(2)]
    procs = [launch(r, 2, 4.0, job, "300,200", flag=flags[r]) for r in range(2)]
    deadline = time.monotonic() + 60
    while not all(f.exists() for f in flags) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)
    live = [_r.to_dict() for _r in open_store().list_runs(project="group")]
    finish(*procs)
    assert len(live) == 1 and live[0]["status"] == "running", "one growing run, not one per rank"
    assert live[0]["energy_j"] > 0
    assert only_run()["status"] == "completed"


def test_two_jobs_of_one_long_lived_launcher_are_two_runs(runtime):
    """A launcher that names no job (DeepSpeed's, plain RANK/WORLD_SIZE) started twice by the
    same parent: the second job must not reopen (and overwrite) the first one's run."""
    finish(*[launch(r, 2, 0.5, None, "300,200") for r in range(2)])
    finish(*[launch(r, 2, 0.5, None, "300,200") for r in range(2)])
    runs = [_r.to_dict() for _r in open_store().list_runs(project="group")]
    assert len(runs) == 2 and {r["status"] for r in runs} == {"completed"}
    assert {r["metadata"]["distributed"]["launcher"] for r in runs} == {"deepspeed"}
    for r in runs:
        assert sorted(x["rank"] for x in r["metadata"]["distributed"]["ranks"]) == [0, 1]


def test_greenlm_track_is_the_rank_and_a_tracker_inside_stays_its_own(runtime):
    """``srun greenlm track -- python train.py`` with a tracker in train.py: the task's rank is
    ``greenlm track``; the script's window does not report the same rank a second time."""
    job = uuid.uuid4().hex
    procs = []
    for r in range(2):
        env = {
            **os.environ,
            "TORCHELASTIC_RUN_ID": job,
            "RANK": str(r),
            "WORLD_SIZE": "2",
            "LOCAL_RANK": str(r),
            "LOCAL_WORLD_SIZE": "2",
            "GROUP_WORLD_SIZE": "1",
            "GREENLM_TEST_GPUS": "300,200",
        }
        cmd = [sys.executable, "-m", "greenlm", "track", "--project", "tracked", "--", sys.executable, str(PROC), "1"]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    finish(*procs)
    (job_run,) = [_r.to_dict() for _r in open_store().list_runs(project="tracked")]
    assert job_run["status"] == "completed"
    assert sorted(x["rank"] for x in job_run["metadata"]["distributed"]["ranks"]) == [0, 1]
    inner = [_r.to_dict() for _r in open_store().list_runs(project="group")]
    assert len(inner) == 2 and all("distributed" not in r["metadata"] for r in inner)
