"""Fault injection: the run store fails for a moment, or at the end, or is busy at open.

Each test asserts what the user sees (the delivery report, the CLI's "stored in" line, the
exit code) and what the store holds afterwards (status, energy equal to the result's,
samples up to the end, nothing duplicated). Faults are real: a SQLite file on a small tmpfs
that fills up and frees, a real PostgreSQL server stopped and started again mid-run, a
second process holding SQLite's write lock.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from greenlm import EnergyTracker
from greenlm.meters import ReplayMeter
from greenlm.store import open_store, replay
from tests.postgres_server import PostgresServer


def _tracker(store: str, **kw) -> EnergyTracker:
    kw.setdefault("interval_s", 0.02)
    kw.setdefault("flush_interval_s", 0.05)
    return EnergyTracker(
        project="faults",
        location="FRA",
        store=store,
        meters=[ReplayMeter("gpu:0", "gpu", power_w=100.0)],
        handle_signals=False,
        **kw,
    )


def _assert_stored_whole(store_url: str, result) -> None:
    """The store holds the run as the tracker saw it: completed, same energy, every sample once."""
    st = open_store(store_url)
    d = st.get_run(result.run_id).to_dict()
    assert d["status"] == "completed"
    assert d["energy_j"] == pytest.approx(result.energy_j, rel=1e-9)
    samples = st.get_samples(result.run_id)
    keys = [(s.t_s, s.component) for s in samples]
    assert len(keys) == len(set(keys)), "no sample stored twice"
    assert max(s.t_s for s in samples) == pytest.approx(result.duration_s, abs=1e-6), "samples to the end"
    assert samples[-1].energy_j == pytest.approx(result.energy_j, rel=1e-9)


# ----------------------------------------------------------------- a full disk
@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()}): needs root and mount rights")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` until it is full; the filler file's path."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        chunk = b"\0" * 65536
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, chunk)
        with contextlib.suppress(OSError):  # the last few bytes
            while True:
                os.write(fd, b"\0" * 512)
    finally:
        os.close(fd)
    return filler


@pytest.mark.parametrize("spool_on_full_disk", [False, True], ids=["spool-elsewhere", "spool-on-the-full-disk"])
def test_a_disk_that_fills_and_frees_mid_run_loses_nothing(tmp_path, monkeypatch, spool_on_full_disk):
    with _tmpfs(tmp_path / "small", "4m") as disk:
        url = f"sqlite:///{disk / 'runs.db'}"
        if spool_on_full_disk:  # then even the spool cannot be written: the run waits in memory
            monkeypatch.setenv("GREENLM_HOME", str(disk / "home"))
        t = _tracker(url)
        with t:
            time.sleep(0.5)
            filler = _fill(disk)
            time.sleep(0.8)  # flushes fail: the store (and maybe the spool) is full
            filler.unlink()
            time.sleep(0.5)
        result = t.result
        assert [r["state"] for r in t.delivery] == ["stored"], t.delivery
        _assert_stored_whole(url, result)


def test_a_disk_still_full_at_the_end_says_not_stored_and_keeps_the_run(tmp_path):
    with _tmpfs(tmp_path / "small", "4m") as disk:
        url = f"sqlite:///{disk / 'runs.db'}"
        t = _tracker(url)
        with t:
            time.sleep(0.3)
            filler = _fill(disk)
            time.sleep(0.3)
        (rep,) = t.delivery
        assert rep["state"] == "waiting" and rep["pending_events"] >= 1, rep
        assert any("not yet stored" in w for w in t.result.warnings)
        filler.unlink()
        replay(url)  # what the next greenlm command that opens this store does
        _assert_stored_whole(url, t.result)


# ----------------------------------------------------------------- PostgreSQL goes away
@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    pg = PostgresServer().start()
    try:
        yield pg
    finally:
        pg.close()


TRACKED = textwrap.dedent("""
    import time
    from greenlm.tracking.tracker import EnergyTracker
    t = EnergyTracker(project="pg-outage", location="FRA", interval_s=0.05, flush_interval_s=0.2)
    with t:
        time.sleep({seconds})
""")


@pytest.mark.postgres
def test_postgres_stopped_for_3s_mid_run_the_run_is_complete_and_the_cli_says_stored(tmp_path, postgres):
    script = tmp_path / "job.py"
    script.write_text(TRACKED.format(seconds=6))
    cmd = [sys.executable, "-m", "greenlm", "track", "--store", postgres.url, "--json", "--"]
    p = subprocess.Popen(
        [*cmd, sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2.0)
    postgres.stop()
    time.sleep(3.0)
    postgres.start()
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    import json

    result = json.loads(out)
    assert "stored in postgresql+psycopg://greenlm@" in err and "NOT" not in err, err
    st = open_store(postgres.url)
    d = st.get_run(result["run_id"]).to_dict()
    assert d["status"] == "completed"
    assert d["energy_j"] == pytest.approx(result["energy_j"], rel=1e-9)
    samples = st.get_samples(result["run_id"])
    keys = [(s.t_s, s.component) for s in samples]
    assert len(keys) == len(set(keys))
    assert max(s.t_s for s in samples) == pytest.approx(result["duration_s"], abs=1e-6)


@pytest.mark.postgres
def test_postgres_down_at_the_end_is_reported_and_the_next_command_stores_the_run(tmp_path, postgres):
    t = _tracker(postgres.url)
    with t:
        time.sleep(0.4)
        postgres.stop()
        time.sleep(0.3)
    (rep,) = t.delivery
    assert rep["state"] == "waiting", rep
    assert "greenlm@" in rep["destination"]
    postgres.start()
    r = subprocess.run(
        [sys.executable, "-m", "greenlm", "runs", "list", "--store", postgres.url, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    _assert_stored_whole(postgres.url, t.result)


# ----------------------------------------------------------------- busy at open
def test_a_store_locked_by_another_writer_for_longer_than_sqlite_waits_does_not_hold_the_job(tmp_path):
    db = tmp_path / "runs.db"
    url = f"sqlite:///{db}"
    open_store(url)  # exists, migrated
    locked = threading.Event()
    release = threading.Event()

    def hold_the_write_lock() -> None:
        con = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        con.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(60)
        con.execute("ROLLBACK")
        con.close()

    holder = threading.Thread(target=hold_the_write_lock, daemon=True)
    holder.start()
    assert locked.wait(10)
    try:
        t = _tracker(url)
        t0 = time.monotonic()
        with t:
            time.sleep(0.3)
        exited_after = time.monotonic() - t0
        (rep,) = t.delivery
    finally:
        release.set()
        holder.join(10)
    assert exited_after < 10, f"the with block took {exited_after:.1f} s to exit"
    assert rep["state"] == "waiting" and rep["pending_events"] >= 2, rep
    replay(url)
    _assert_stored_whole(url, t.result)


def test_spool_files_are_private_to_the_user(tmp_path):
    t = _tracker(f"sqlite:///{tmp_path / 'runs.db'}")
    with t:
        time.sleep(0.1)
    spool = Path(os.environ["GREENLM_HOME"]) / "spool"
    assert oct(spool.stat().st_mode & 0o777) == "0o700"
    for d in spool.iterdir():
        assert oct(d.stat().st_mode & 0o777) == "0o700"
