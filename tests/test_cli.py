"""The command line as a user runs it: subprocesses, exit codes, JSON, CSV, bad input."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from greenlm.report.codecarbon_csv import CODECARBON_COLUMNS, COLUMNS


def greenlm(*args, env=None, check=None, timeout=120):
    e = {**os.environ, **(env or {})}
    p = subprocess.run([sys.executable, "-m", "greenlm", *args], capture_output=True, text=True, env=e, timeout=timeout)
    if check is not None:
        assert p.returncode == check, p.stderr
    return p


BUSY = "import time,sys\nt=time.time()\nwhile time.time()-t<{s}: pass\nsys.exit({rc})"


def test_track_passes_the_exit_code_through_and_prints_a_summary(tmp_path):
    p = greenlm("track", "--location", "FRA", "--interval", "0.1", "--", sys.executable, "-c", BUSY.format(s=0.5, rc=7))
    assert p.returncode == 7
    assert "status=failed" in p.stderr and "cpu" in p.stderr and "modeled" in p.stderr
    assert "FRA" in p.stderr


def test_track_json_is_one_object_with_the_child_process_energy(tmp_path):
    p = greenlm(
        "track",
        "--json",
        "--location",
        "US-CA",
        "--project",
        "cli",
        "--interval",
        "0.1",
        "--meta",
        "params=125e6",
        "--",
        sys.executable,
        "-c",
        BUSY.format(s=1.0, rc=0),
    )
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["status"] == "completed" and d["project"] == "cli"
    assert d["location"]["code"] == "US-CA" and not d["location"]["defaulted"]
    cpu = next(c for c in d["components"] if c["kind"] == "cpu")
    # one busy thread for ~1 s: the child's CPU time is counted (exact from wait4)
    assert cpu["energy_j"] > 0.5 and cpu["provenance"] == "modeled"
    assert cpu["low_j"] < cpu["energy_j"] < cpu["high_j"]
    assert d["metadata"]["params"] == 125e6
    shown = json.loads(greenlm("runs", "show", d["run_id"][:10], "--json", check=0).stdout)
    assert shown["energy_j"] == pytest.approx(d["energy_j"])


def test_track_counts_grandchildren(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(f"import subprocess,sys\nsubprocess.run([sys.executable,'-c',{BUSY.format(s=0.8, rc=0)!r}])\n")
    d = json.loads(
        greenlm(
            "track", "--json", "--location", "FRA", "--interval", "0.1", "--", sys.executable, str(script), check=0
        ).stdout
    )
    assert next(c for c in d["components"] if c["kind"] == "cpu")["energy_j"] > 0.5


def test_output_csv_uses_codecarbon_layout_and_appends(tmp_path):
    out = tmp_path / "emissions.csv"
    for _ in range(2):
        greenlm(
            "track",
            "--location",
            "DEU",
            "--output",
            str(out),
            "--interval",
            "0.1",
            "--",
            sys.executable,
            "-c",
            "pass",
            check=0,
        )
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2
    assert list(rows[0]) == list(COLUMNS)
    assert rows[0]["country_iso_code"] == "DEU" and float(rows[0]["emissions"]) >= 0
    assert rows[0]["greenlm_provenance"] == "modeled"


def test_codecarbon_columns_match_codecarbons_own_output_format():
    ed = pytest.importorskip("codecarbon.output_methods.emissions_data")
    assert [f.name for f in dataclasses.fields(ed.EmissionsData)] == list(CODECARBON_COLUMNS)


def test_runs_list_show_export(tmp_path):
    greenlm("track", "--project", "alpha", "--location", "FRA", "--", sys.executable, "-c", "pass", check=0)
    lst = json.loads(greenlm("runs", "list", "--json", check=0).stdout)
    assert [r["project"] for r in lst] == ["alpha"]
    assert "alpha" in greenlm("runs", "list", check=0).stdout
    assert "IT energy" in greenlm("runs", "show", lst[0]["run_id"], check=0).stdout
    out = tmp_path / "all.csv"
    greenlm("runs", "export", "--format", "csv", "-o", str(out), check=0)
    assert list(csv.DictReader(out.open()))[0]["run_id"] == lst[0]["run_id"]
    js = json.loads(greenlm("runs", "export", "--format", "json", check=0).stdout)
    assert js[0]["run_id"] == lst[0]["run_id"]


def test_detect_explains_missing_meters():
    out = greenlm("detect", "--rapl-root", "/nonexistent", check=0).stdout
    assert "RAPL" in out and "missing" in out and "NVML" in out
    d = json.loads(greenlm("detect", "--json", check=0).stdout)
    assert {r["backend"] for r in d["report"]} >= {"NVML", "RAPL", "CPU model", "RAM model"}


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--location", "Atlantis"], "Unknown location"),
        (["--pue", "-2"], "argument --pue: must be >= 1"),
        (["--pue", "nan"], "argument --pue: expected a finite number"),
        (["--price", "-1"], "argument --price: must be >= 0"),
        (["--interval", "0"], "argument --interval: must be"),
        ([], "needs a command"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path, args, match):
    out = tmp_path / "e.csv"
    home = tmp_path / "h"
    cmd = [] if match == "needs a command" else ["--", sys.executable, "-c", "open('ran','w')"]
    p = greenlm("track", "--output", str(out), *args, *cmd, env={"GREENLM_HOME": str(home)})
    assert p.returncode == 2
    # argparse's usage error ("greenlm track: error: argument --pue: ...") or greenlm's own ("error: ...")
    assert match in p.stderr and ("error: " + match in p.stderr or p.stderr.startswith("error:"))
    assert "Traceback" not in p.stderr
    assert not out.exists() and not (home / "runs.db").exists() and not Path("ran").exists()


def test_unreadable_config_file_exits_2(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("{{{")
    p = greenlm("track", "--", sys.executable, "-c", "pass", env={"GREENLM_CONFIG": str(cfg)})
    assert p.returncode == 2 and str(cfg) in p.stderr


def test_locations_search():
    out = greenlm("locations", "virginia", check=0).stdout
    assert "aws:us-east-1" in out and "US-VA" in out


def test_child_killed_by_a_signal_exits_128_plus_signal():
    p = greenlm("track", "--", sys.executable, "-c", "import os,signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert p.returncode == 128 + 9
    assert "status=failed" in p.stderr


def test_sigint_is_forwarded_and_the_run_is_marked_interrupted(tmp_path):
    import signal
    import time

    env = {**os.environ}
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "greenlm",
            "track",
            "--json",
            "--interval",
            "0.1",
            "--location",
            "FRA",
            "--",
            sys.executable,
            "-c",
            "import time\ntry:\n    time.sleep(30)\nexcept KeyboardInterrupt:\n    raise SystemExit(130)",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    time.sleep(1.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 130, err
    d = json.loads(out)
    assert d["status"] == "interrupted" and "signal" in d["error"]


def test_runs_list_refuses_a_bad_limit():
    for _ in range(2):
        greenlm("track", "--project", "lim", "--", sys.executable, "-c", "pass", check=0)
    for limit in ("-1", "0", "two", "1.5"):
        p = greenlm("runs", "list", "--limit", limit)
        assert p.returncode == 2 and "Traceback" not in p.stderr, limit
        assert "--limit" in p.stderr and ("1 or more" in p.stderr or "whole number" in p.stderr), p.stderr
        assert p.stdout == ""
    assert len(json.loads(greenlm("runs", "list", "--limit", "1", "--json", check=0).stdout)) == 1
