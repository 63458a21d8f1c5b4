"""Parsing what Slurm's tools print (no cluster needed).

``data/sacct_completion.txt`` is real ``sacct --completion -P`` output captured from the test
cluster of conftest.py (a two-task job). That cluster measures no energy, so the
``ConsumedEnergyRaw`` path is checked with a sample line written here in the format ``sacct
-P`` prints with accounting storage (``man sacct``: ConsumedEnergyRaw is in joules); the
Slurm commands of ``read_accounting`` are replaced at the subprocess boundary by a runner
that returns such output.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from greenlm.integrations import slurm as sl
from greenlm.report.summary import job_lines

DATA = Path(__file__).with_name("data")

#: A step of a 2-node job on a cluster with acct_gather_energy/rapl (sample, not captured).
SAMPLE_WITH_ENERGY = (
    "4242.0|python|COMPLETED|0:0|01:02:03|3723|2026-11-30T10:00:00|2026-11-30T11:02:03|16|"
    "cpu=16,mem=64G,node=2,billing=16,energy=5400000|2|gpu-[01-02]|2|5400000"
)


def test_captured_completion_log_output():
    rows = [sl.record(r) for r in sl.parse_pipes((DATA / "sacct_completion.txt").read_text())]
    assert len(rows) == 1
    r = rows[0]
    assert r["job_step"] == "1" and r["state"] == "COMPLETED" and r["exit_code"] == "0:0"
    assert r["elapsed_s"] == 4.0 and r["alloc_cpus"] == 2 and r["nodes"] == 1 and r["nodelist"] == "vm"
    assert "alloc_tres" not in r and "consumed_energy_j" not in r, "blank fields are left out, not zeros"


def test_sample_line_with_consumed_energy():
    (r,) = [sl.record(x) for x in sl.parse_pipes(SAMPLE_WITH_ENERGY, sl.SACCT_FIELDS)]
    assert r["consumed_energy_j"] == 5_400_000.0
    assert r["elapsed_s"] == 3723.0 and r["nodes"] == 2 and r["tasks"] == 2
    assert r["alloc_tres"] == {"cpu": "16", "mem": "64G", "node": "2", "billing": "16", "energy": "5400000"}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("00:00:04", 4.0),
        ("01:02:03", 3723.0),
        ("2-03:04:05", 2 * 86400 + 3 * 3600 + 4 * 60 + 5),
        ("1-02:03", 86400 + 2 * 3600 + 3 * 60),
        ("12:34.500", 754.5),
        ("UNLIMITED", None),
        ("", None),
        ("Unknown", None),
    ],
)
def test_durations(text, seconds):
    assert sl.parse_duration(text) == seconds


def test_a_failed_energy_reading_is_not_a_figure():
    # Slurm prints a huge sentinel (NO_VAL64) when its energy plugin failed
    line = SAMPLE_WITH_ENERGY.rsplit("|", 1)[0] + "|18446744073709551614"
    (r,) = [sl.record(x) for x in sl.parse_pipes(line, sl.SACCT_FIELDS)]
    assert "consumed_energy_j" not in r


def _runner(outputs: dict[str, tuple[int, str, str]]):
    """Slurm's commands replaced at the subprocess boundary: first word(s) -> (rc, stdout, stderr)."""
    calls: list[list[str]] = []

    def run(cmd):
        calls.append(list(cmd))
        key = " ".join(cmd[:3]) if cmd[0] == "scontrol" else cmd[0] + (" -c" if "--completion" in cmd else "")
        rc, out, err = outputs.get(key, (1, "", f"{key}: not replaced"))
        return subprocess.CompletedProcess(cmd, rc, out, err)

    run.calls = calls  # type: ignore[attr-defined]
    return run


def test_read_accounting_with_an_energy_plugin_gives_a_cross_check():
    run = _runner(
        {
            "scontrol show job": (
                0,
                "JobId=4242 JobState=RUNNING Partition=gpu NumNodes=2 NumCPUs=16 NumTasks=2 "
                "TRES=cpu=16,node=2,billing=16 StartTime=2026-11-30T10:00:00 RunTime=01:02:03 TimeLimit=1-00:00:00",
                "",
            ),
            "scontrol show config": (0, "AcctGatherEnergyType    = acct_gather_energy/rapl\n", ""),
            "sacct": (0, SAMPLE_WITH_ENERGY + "\n", ""),
            "sstat": (0, "4242.0|2|00:10:00|5100000|cpu=00:10:00,energy=5100000\n", ""),
        }
    )
    acc = sl.read_accounting({"job_id": "4242", "step_id": "0"}, run)
    assert acc["allocation"]["alloc_cpus"] == 16 and acc["allocation"]["run_time_s"] == 3723.0
    assert acc["sacct"]["consumed_energy_j"] == 5_400_000.0
    e = acc["energy"]
    assert e["available"] and e["consumed_energy_j"] == 5_100_000.0, "the running step's sstat figure first"
    assert "acct_gather_energy/rapl" in e["source"] and "sstat" in e["source"]
    chk = sl.cross_check(acc)
    assert chk["energy_j"] == 5_100_000.0 and chk["independent"] is True
    # shown beside greenlm's own figure, with the ratio
    d = {
        "run_id": "x",
        "project": "p",
        "status": "completed",
        "duration_s": 3700.0,
        "energy_j": 4_590_000.0,
        "facility_energy_j": 4_590_000.0,
        "co2e_g": 1.0,
        "metadata": {"cross_checks": [chk]},
    }
    assert "Slurm ConsumedEnergy: 1.42 kWh (greenlm / it = 0.90)" in "\n".join(job_lines(d))


def test_read_accounting_says_why_there_is_no_energy():
    run = _runner(
        {
            "scontrol show config": (0, "AcctGatherEnergyType    = acct_gather_energy/none\n", ""),
            "sacct": (1, "", "Slurm accounting storage is disabled\n"),
            "sacct -c": (0, "", ""),
        }
    )
    acc = sl.read_accounting({"job_id": "7", "step_id": "batch"}, run)
    assert acc["energy"]["available"] is False and "acct_gather_energy/none" in acc["energy"]["reason"]
    assert sl.cross_check(acc) is None
    assert "sacct" not in acc, "no record before the job ended"
