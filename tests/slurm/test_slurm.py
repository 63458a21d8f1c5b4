"""Slurm as a real engine: srun and sbatch on a one-node test cluster (conftest.py).

Each job step is stored as one run with the job id, step, nodes and tasks in its metadata,
CPU and RAM counted once for the node, each replacement GPU once; ``greenlm runs show``
prints the per-task breakdown; ``greenlm track`` inside the job records what Slurm itself
says (``scontrol``, ``sstat``, ``sacct``); ``greenlm slurm check`` reads ``sacct`` after the job.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from greenlm.store import open_store

HERE = Path(__file__).parent


def _runs(project: str) -> list[dict]:
    return [_r.to_dict() for _r in open_store().list_runs(project=project)]


def _greenlm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "greenlm", *args], capture_output=True, text=True, timeout=120, check=False, env=env
    )


def test_srun_two_tasks_with_a_plain_tracker_store_one_run(slurm, monkeypatch):
    monkeypatch.setenv("GREENLM_TEST_GPUS", "300,250")
    p = slurm.run(
        "srun", "--ntasks=2", "--kill-on-bad-exit=1", sys.executable, str(HERE / "task.py"), "srun-plain", timeout=180
    )
    assert p.returncode == 0, p.stdout + p.stderr + slurm.logs()
    runs = _runs("srun-plain")
    assert len(runs) == 1, f"one run for the job step, got {[(r['run_id'], r['metadata']) for r in runs]}"
    (run,) = runs
    assert run["status"] == "completed"
    s = run["metadata"]["slurm"]
    assert s["step_id"] == "0" and s["step_tasks"] == 2 and s["step_nodes"] == 1
    assert s["job_id"].isdigit() and s["cluster"] == "greenlm-test"
    dist = run["metadata"]["distributed"]
    assert dist["role"] == "group" and dist["world_size"] == 2 and dist["launcher"] == "slurm"
    assert sorted(r["rank"] for r in dist["ranks"]) == [0, 1]
    assert dist["nodes"] == {slurm.node: [0, 1]}
    comps = run["components"]
    assert sum(c["kind"] == "cpu" for c in comps) == 1, "the node's CPU once, not once per task"
    assert sum(c["kind"] == "ram" for c in comps) == 1
    gpus = sorted(c["name"] for c in comps if c["kind"] == "gpu")
    assert gpus == [f"{slurm.node}/gpu:0", f"{slurm.node}/gpu:1"], "each GPU once"
    assert run["energy_j"] == pytest.approx(sum(c["energy_j"] for c in comps), rel=1e-9)
    gpu_rank = {c["name"]: c["rank"] for c in comps if c["kind"] == "gpu"}
    assert gpu_rank == {f"{slurm.node}/gpu:0": 0, f"{slurm.node}/gpu:1": 1}, "task r measures GPU r"
    by_rank = {r["rank"]: r for r in dist["ranks"]}
    for r, watts in ((0, 300.0), (1, 250.0)):
        gpu = next(c for c in comps if c["name"] == f"{slurm.node}/gpu:{r}")
        assert gpu["energy_j"] / by_rank[r]["duration_s"] == pytest.approx(watts, rel=0.05)
    work = next(p for p in run["phases"] if p["path"] == "work")
    assert work["energy_j"] > 0 and work["steps"] > 10

    shown = _greenlm("runs", "show", run["run_id"])
    assert shown.returncode == 0, shown.stderr
    assert f"slurm           job {s['job_id']} step 0" in shown.stdout
    assert "rank/task" in shown.stdout
    table = shown.stdout.split("rank/task", 1)[1]
    assert table.count(slurm.node) >= 2, "one row per task"


BATCH = """\
#!/bin/bash
#SBATCH --ntasks=2
#SBATCH --output={out}/slurm-%j.out
set -e
{py} -m greenlm track --project sbatch-batch -- {py} {work}
srun --ntasks=2 {py} -m greenlm track --project sbatch-step -- {py} {work}
"""


def test_sbatch_with_greenlm_track_stores_one_run_per_step(slurm, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text(BATCH.format(out=tmp_path, py=sys.executable, work=HERE / "work.py"))
    p = slurm.run("sbatch", "--wait", "--parsable", str(script), timeout=240)
    outs = "".join(f.read_text() for f in tmp_path.glob("slurm-*.out"))
    assert p.returncode == 0, p.stdout + p.stderr + outs + slurm.logs()
    job_id = p.stdout.strip().split(";")[0]

    (batch,) = _runs("sbatch-batch")
    s = batch["metadata"]["slurm"]
    assert (s["job_id"], s["step_id"]) == (job_id, "batch")
    assert s["job_tasks"] == 2 and s["job_nodes"] == 1, "the allocation's tasks and nodes"
    assert "distributed" not in batch["metadata"], "the batch script is one process: an ordinary run"
    assert batch["status"] == "completed" and batch["metadata"]["command"][0] == sys.executable
    acc = s["accounting"]
    assert acc["allocation"]["alloc_cpus"] == 2 and acc["allocation"]["nodes"] == 1
    assert acc["allocation"]["source"] == "scontrol show job"
    assert acc["energy"] == {
        "available": False,
        "reason": "the cluster has no energy accounting (AcctGatherEnergyType=acct_gather_energy/none)",
    }
    assert "cross_checks" not in batch["metadata"], "no Slurm energy: nothing beside greenlm's figure"

    (step,) = _runs("sbatch-step")
    s = step["metadata"]["slurm"]
    assert (s["job_id"], s["step_id"], s["step_tasks"]) == (job_id, "0", 2)
    dist = step["metadata"]["distributed"]
    assert sorted(r["rank"] for r in dist["ranks"]) == [0, 1] and step["status"] == "completed"
    comps = step["components"]
    assert sum(c["kind"] == "cpu" for c in comps) == 1 and sum(c["kind"] == "ram" for c in comps) == 1
    assert "job's run is" in outs, "each task says which run it is part of"

    # after the job: sacct (here from the job completion log) beside the stored run
    chk = _greenlm("slurm", "check", batch["run_id"], "--json", env=slurm.env())
    assert chk.returncode == 0, chk.stderr
    out = json.loads(chk.stdout)
    rec = out["slurm_record"]
    assert rec["state"] == "COMPLETED" and rec["job_step"] == job_id and rec["alloc_cpus"] == 2
    assert out["source"].startswith("sacct --completion")
    assert rec["elapsed_s"] >= batch["duration_s"] - 1.0, "the job lasted at least as long as its batch step's run"
    text = _greenlm("slurm", "check", step["run_id"], env=slurm.env())
    assert "COMPLETED" in text.stdout and "no ConsumedEnergy" in text.stdout


def test_slurm_check_of_a_run_outside_slurm_is_a_clear_error(tmp_path):
    from greenlm import EnergyTracker
    from greenlm.meters.fake import ReplayMeter

    with EnergyTracker(project="local", meters=[ReplayMeter("gpu:0", "gpu", 10.0)]) as t:
        pass
    p = _greenlm("slurm", "check", t.result.run_id)
    assert p.returncode == 2 and "did not run in a Slurm job" in p.stderr and "Traceback" not in p.stderr


def test_captured_sacct_output_parses(slurm, tmp_path):
    """The parser against what this cluster's sacct really prints (completion log, -P)."""
    from greenlm.integrations import slurm as sl

    script = tmp_path / "short.sh"
    script.write_text(textwrap.dedent("#!/bin/bash\n#SBATCH --ntasks=1\nsleep 1\n"))
    p = slurm.run("sbatch", "--wait", "--parsable", f"--output={tmp_path}/o.txt", str(script))
    assert p.returncode == 0, p.stderr
    job = p.stdout.strip()
    raw = slurm.run("sacct", "--completion", "-j", job, "-P", f"--format={','.join(sl.SACCT_FIELDS)}")
    assert raw.returncode == 0, raw.stderr
    rows = [sl.record(r) for r in sl.parse_pipes(raw.stdout)]
    assert [r["job_step"] for r in rows] == [job]
    r = rows[0]
    assert r["state"] == "COMPLETED" and r["exit_code"] == "0:0" and r["nodes"] == 1
    assert 1.0 <= r["elapsed_s"] <= 30.0
    assert "consumed_energy_j" not in r, "no energy plugin: no figure, not a zero"
