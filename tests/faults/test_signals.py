"""Fault injection: the signals and exits that end real jobs, and what the run records.

Real processes are signalled (SIGTERM from a launcher or ``docker stop``, SIGHUP from a
closed terminal, SIGKILL of ``greenlm track`` itself) and the stored run is read back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from greenlm.store import open_store

JOB = textwrap.dedent("""
    import sys, time
    from greenlm import EnergyTracker
    from greenlm.meters import ReplayMeter
    t = EnergyTracker(project="sig", location="FRA", interval_s=0.02, flush_interval_s=0.05, store=sys.argv[1],
                      meters=[ReplayMeter("gpu:0", "gpu", power_w=100.0)])
    with t:
        with t.phase("train"):
            for step in range(10_000):
                with t.phase("forward"):
                    time.sleep(0.005)
                t.step()
                if step == 20:
                    print(t.run_id, flush=True)
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_closes_the_open_phases_at_the_stop_time(tmp_path, sig):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    script = tmp_path / "job.py"
    script.write_text(JOB)
    p = subprocess.Popen([sys.executable, str(script), url], stdout=subprocess.PIPE, text=True)
    run_id = p.stdout.readline().strip()
    time.sleep(0.3)
    p.send_signal(sig)
    assert p.wait(timeout=30) == -sig, "the signal still ends the process the way it would have"
    d = open_store(url).get_run(run_id).to_dict()
    assert d["status"] == "interrupted" and signal.Signals(sig).name in (d["error"] or "")
    phases = {ph["path"]: ph for ph in d["phases"]}
    assert {"train", "train/forward"} <= set(phases), "open phases are kept, closed at the stop time"
    assert phases["train"]["steps"] == d["steps"] > 20
    assert phases["train"]["duration_s"] == pytest.approx(d["duration_s"], abs=0.1)
    assert phases["train"]["energy_j"] == pytest.approx(d["energy_j"], rel=0.1)
    assert any("phases still open" in w for w in d["warnings"])


@pytest.mark.parametrize(("code", "status"), [("0", "completed"), ("None", "completed"), ("3", "failed")])
def test_sys_exit_inside_the_window(tmp_path, code, status):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    script = tmp_path / "job.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        from greenlm import EnergyTracker
        t = EnergyTracker(project="exit", store={url!r}, interval_s=0.05)
        with t:
            print(t.run_id, flush=True)
            sys.exit({code})
    """)
    )
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    d = open_store(url).get_run(p.stdout.strip()).to_dict()
    assert d["status"] == status, d["error"]


def test_sigkill_of_greenlm_track_does_not_leave_the_command_running(tmp_path):
    marker = tmp_path / "child.pid"
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "greenlm",
            "track",
            "--store",
            f"sqlite:///{tmp_path / 'runs.db'}",
            "--",
            sys.executable,
            "-c",
            f"import os, time; open({str(marker)!r}, 'w').write(str(os.getpid())); time.sleep(120)",
        ]
    )
    deadline = time.monotonic() + 30
    while not marker.exists() or not marker.read_text():
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.05)
    child = int(marker.read_text())
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=10)
    deadline = time.monotonic() + 10
    while psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the command outlived greenlm track (no parent-death signal)"
        time.sleep(0.05)


def _track(tmp_path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "greenlm", "track", "--store", f"sqlite:///{tmp_path / 'runs.db'}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        **kw,
    )


def test_an_output_path_that_cannot_be_written_is_refused_before_the_command_runs(tmp_path):
    ran = tmp_path / "ran"
    p = _track(tmp_path, "--output", "/missing/dir/x.csv", "--", "sh", "-c", f"touch {ran}; exit 5")
    assert p.returncode == 2
    assert "--output" in p.stderr and "/missing/dir" in p.stderr and "Traceback" not in p.stderr
    assert not ran.exists(), "nothing ran"


def test_the_commands_exit_code_wins_even_when_stdout_is_closed_early(tmp_path):
    codes = []
    for _ in range(6):
        p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "greenlm",
                "track",
                "--json",
                "--store",
                f"sqlite:///{tmp_path / 'runs.db'}",
                "--",
                "sh",
                "-c",
                "exit 7",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        p.stdout.read(1)  # `| head -c1`: read a byte, then close the pipe
        p.stdout.close()
        codes.append(p.wait(timeout=60))
    assert codes == [7] * 6


def test_json_file_is_the_run_whatever_the_command_prints(tmp_path):
    out = tmp_path / "run.json"
    p = _track(tmp_path, "--json-file", str(out), "--", "sh", "-c", "echo '{not json'; exit 0")
    assert p.returncode == 0
    assert p.stdout.startswith("{not json")
    d = json.loads(out.read_text())
    assert d["status"] == "completed" and d["run_id"]
