"""What greenlm creates for its user is private to that user: GREENLM_HOME 0700, runs.db 0600.

The run store holds command lines, host names and, on a team server, token hashes: on a
shared machine other users must not read it. Folders and files the user already has keep
their own modes (a user may share a store on purpose).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    old = os.umask(0o022)  # the common default, which gave 0755 folders and 0644 files
    try:
        yield
    finally:
        os.umask(old)


def test_a_fresh_home_and_store_are_private(tmp_path: Path, usual_umask: None, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "parent" / "greenlm-home"
    monkeypatch.setenv("GREENLM_HOME", str(home))
    env = {**os.environ, "GREENLM_HOME": str(home)}
    code = "import sys; from greenlm.cli import main; sys.exit(main(sys.argv[1:]))"
    p = subprocess.run(
        [sys.executable, "-c", code, "track", "--", sys.executable, "-c", "pass"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert p.returncode == 0 and "stored in" in p.stderr, p.stderr
    assert mode(home) == 0o700 and mode(home.parent) == 0o700  # every folder greenlm made
    assert mode(home / "runs.db") == 0o600
    for sub in ("spool",):
        assert mode(home / sub) == 0o700, sub
    # while a writer has it open, SQLite's -wal and -shm files take the database's mode
    from greenlm.store import open_store

    st = open_store()
    with st.engine.connect() as conn:
        conn.exec_driver_sql("SELECT count(*) FROM runs").all()
        side = [home / "runs.db-wal", home / "runs.db-shm"]
        assert all(f.exists() for f in side)
        assert [mode(f) for f in side] == [0o600, 0o600]


def test_an_explicit_store_path_is_private_too(tmp_path: Path, usual_umask: None) -> None:
    from greenlm.store import open_store

    db = tmp_path / "new" / "folder" / "team.db"
    open_store(f"sqlite:///{db}")
    assert mode(db) == 0o600 and mode(db.parent) == 0o700 and mode(db.parent.parent) == 0o700


def test_what_the_user_made_keeps_its_mode(tmp_path: Path, usual_umask: None) -> None:
    from greenlm.store import open_store

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o750)
    os.chmod(shared, 0o750)
    db = shared / "runs.db"
    db.touch()
    os.chmod(db, 0o640)
    open_store(f"sqlite:///{db}")
    assert mode(shared) == 0o750 and mode(db) == 0o640
