"""Concurrent ``--output emissions.csv`` appends: every run's row is kept, the file stays the user's."""

from __future__ import annotations

import csv
import os
import stat
import subprocess
import sys


def _track_to(csv_path, store, n: int) -> list[subprocess.Popen]:
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "greenlm",
                "track",
                "--project",
                f"p{i}",
                "--store",
                store,
                "--output",
                str(csv_path),
                "--",
                sys.executable,
                "-c",
                "pass",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(n)
    ]


def test_eight_parallel_runs_leave_eight_rows_and_one_header(tmp_path):
    out = tmp_path / "emissions.csv"
    procs = _track_to(out, f"sqlite:///{tmp_path / 'runs.db'}", 8)
    assert [p.wait(timeout=180) for p in procs] == [0] * 8
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == 8
    assert sorted(r["project_name"] for r in rows) == [f"p{i}" for i in range(8)]
    assert out.read_text().count("timestamp,") == 1, "one header"


def test_a_symlinked_csv_stays_a_link_and_keeps_its_mode(tmp_path):
    real = tmp_path / "shared" / "emissions.csv"
    real.parent.mkdir()
    link = tmp_path / "emissions.csv"
    procs = _track_to(real, f"sqlite:///{tmp_path / 'runs.db'}", 1)
    assert procs[0].wait(timeout=120) == 0
    os.chmod(real, 0o640)
    link.symlink_to(real)
    procs = _track_to(link, f"sqlite:///{tmp_path / 'runs.db'}", 2)
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert link.is_symlink(), "the link was not replaced by a plain file"
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert len(list(csv.DictReader(real.open(encoding="utf-8")))) == 3


def test_a_csv_with_another_header_is_left_untouched(tmp_path):
    out = tmp_path / "other.csv"
    out.write_text("a,b\n1,2\n")
    cmd = [sys.executable, "-m", "greenlm", "track", "--store", f"sqlite:///{tmp_path / 'r.db'}", "--output", str(out)]
    p = subprocess.run(
        [*cmd, "--", sys.executable, "-c", "pass"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, "the command's exit code wins"
    assert "different header" in p.stderr
    assert out.read_text() == "a,b\n1,2\n"


def test_export_writes_through_a_symlink(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("[]")
    os.chmod(real, 0o600)
    link = tmp_path / "export.json"
    link.symlink_to(real)
    p = subprocess.run(
        [sys.executable, "-m", "greenlm", "runs", "export", "--format", "json", "-o", str(link)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert link.is_symlink() and stat.S_IMODE(real.stat().st_mode) == 0o600
