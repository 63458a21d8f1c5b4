"""Reading never writes: no file, folder or migration from a read, and read-only stores read.

Tests run as root, and root ignores file modes, so "read-only" is made real three ways:
SQLite's own ``mode=ro`` (every reader opens that way, so a write through it fails), a
read-only bind mount in a private mount namespace (``unshare -m``; skipped where mounting is
not allowed), and an unprivileged user (``runuser -u nobody``) reading a 0444 file in a 0555
folder (skipped where there is no such user).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from greenlm.errors import StoreError
from greenlm.store import open_store
from greenlm.store import schema as S
from tests.store.helpers import db_path, sql, tracked_run

READ_COMMANDS = (
    ("runs", "list"),
    ("runs", "list", "--json"),
    ("runs", "export", "--format", "json"),
    ("runs", "export", "--format", "csv"),
)


def _cli(
    *args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "greenlm", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


# ------------------------------------------------------------------ nothing created
@pytest.mark.parametrize(
    "args",
    [
        ("runs", "list"),
        ("runs", "show", "abcd1234"),
        ("runs", "export"),
        ("report", "abcd1234", "-o", "{tmp}/r.html"),
        ("dashboard", "--port", "1"),
    ],
)
def test_a_store_url_that_points_nowhere_is_a_clear_error_and_creates_nothing(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    missing = tmp_path / "nonexistent" / "dir" / "x.db"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    p = _cli(*argv, "--store", f"sqlite:///{missing}")
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    assert f"No run store at {missing}" in p.stderr and "nothing was created" in p.stderr
    assert not (tmp_path / "nonexistent").exists()


def test_a_missing_file_in_an_existing_folder_is_not_created(tmp_path: Path) -> None:
    p = _cli("runs", "list", "--store", f"sqlite:///{tmp_path / 'typo.db'}")
    assert p.returncode == 2 and "No run store at" in p.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_default_store_not_there_yet_reads_as_empty_and_is_not_created(tmp_path: Path) -> None:
    home = tmp_path / "fresh-home"
    p = _cli("runs", "list", env={"GREENLM_HOME": str(home)})
    assert p.returncode == 0 and "no runs stored yet" in p.stdout, p.stderr
    assert _cli("runs", "list", "--json", env={"GREENLM_HOME": str(home)}).stdout.strip() == "[]"
    assert not home.exists(), "reading created GREENLM_HOME"


def test_a_file_that_is_not_a_store_is_a_clear_error(tmp_path: Path) -> None:
    other = tmp_path / "notes.db"
    con = sqlite3.connect(other)
    con.execute("create table notes (t text)")
    con.commit()
    con.close()
    before = _digest(tmp_path)
    p = _cli("runs", "list", "--store", f"sqlite:///{other}")
    assert p.returncode == 2 and "not a greenlm run store" in p.stderr and "Traceback" not in p.stderr
    assert _digest(tmp_path) == before
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite at all" * 100)
    p = _cli("runs", "list", "--store", f"sqlite:///{garbage}")
    assert p.returncode == 2 and "not a greenlm run store" in p.stderr and "Traceback" not in p.stderr


# ------------------------------------------------------------------ no migration
def _v1_store(url: str) -> None:
    """A store as greenlm with schema version 1 left it, with one run (run through its migration)."""
    st = open_store(url)
    r = tracked_run(url, project="old")
    with st.begin() as conn:  # back to what version 1 had: no v2 column, no server tables
        for t in (S.tokens, S.batches):
            t.drop(conn)
        conn.exec_driver_sql("ALTER TABLE runs DROP COLUMN samples_compacted_to_s")
        conn.execute(S.meta.update().values(value="1"))
    from greenlm.store import clear_store_cache

    clear_store_cache()
    return r


def test_reading_an_older_schema_does_not_migrate_it(store_url: str) -> None:
    r = _v1_store(store_url)
    folder = db_path(store_url).parent
    before = _digest(folder)
    for args in READ_COMMANDS:
        p = _cli(*args, "--store", store_url)
        assert p.returncode == 0, (args, p.stderr)
        assert r.run_id in p.stdout or r.run_id[:12] in p.stdout
    p = _cli("runs", "show", r.run_id, "--store", store_url)
    assert p.returncode == 0 and "IT energy" in p.stdout
    assert sql(store_url, "SELECT value FROM greenlm_meta WHERE key = 'schema_version'") == [("1",)]
    assert _digest(folder)[db_path(store_url).name] == before[db_path(store_url).name]


def test_a_writer_still_migrates(store_url: str) -> None:
    r = _v1_store(store_url)
    tracked_run(store_url, project="new")
    assert open_store(store_url).schema_version == S.SCHEMA_VERSION
    assert {x.run_id for x in open_store(store_url, read_only=True).list_runs()} >= {r.run_id}


def test_a_store_that_needs_a_migration_says_so_to_a_reader(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _v1_store(store_url)
    monkeypatch.setattr(S, "READABLE_FROM", 2)  # as if version 2 had changed what reads rely on
    with pytest.raises(StoreError, match="needs a migration to version"):
        open_store(store_url, read_only=True)
    assert sql(store_url, "SELECT value FROM greenlm_meta WHERE key = 'schema_version'") == [("1",)]


def test_writes_through_a_reader_are_refused(store_url: str) -> None:
    r = tracked_run(store_url)
    st = open_store(store_url, read_only=True)
    with pytest.raises(StoreError, match="open for reading only"):
        st.save_result(r)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):  # the connection itself is mode=ro
        st.engine.raw_connection().cursor().execute("DELETE FROM runs")


# ------------------------------------------------------------------ really read-only
@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder outside pytest's private tmp (which only root may enter)."""
    d = Path(tempfile.mkdtemp(prefix="greenlm-ro-"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(d)], check=False)
        shutil.rmtree(d, ignore_errors=True)


def _need_ro_mount(folder: Path) -> None:
    unshare = shutil.which("unshare")
    probe = (
        subprocess.run(
            [unshare, "-m", "sh", "-c", f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder}"],
            capture_output=True,
            check=False,
        )
        if unshare
        else None
    )
    if probe is None or probe.returncode != 0:
        pytest.skip("cannot make a read-only bind mount here (needs unshare and CAP_SYS_ADMIN)")


def _in_ro_mount(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = " ".join(shlex.quote(a) for a in (sys.executable, "-m", "greenlm", *args))
    mount = f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder}"
    script = f"{mount} && touch {folder}/probe 2>/dev/null; exec {argv}"
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120, check=False
    )


def test_a_store_on_a_read_only_mount_can_be_read(shared_dir: Path) -> None:
    url = f"sqlite:///{shared_dir / 'runs.db'}"
    runs = [tracked_run(url, project="ro") for _ in range(2)]
    from greenlm.store import clear_store_cache

    clear_store_cache()  # the writer closes: SQLite removes its -wal and -shm files
    assert sorted(p.name for p in shared_dir.iterdir()) == ["runs.db"]
    _need_ro_mount(shared_dir)
    for args in READ_COMMANDS:
        p = _in_ro_mount(shared_dir, *args, "--store", url)
        assert p.returncode == 0, (args, p.stderr)
        assert all(r.run_id[:12] in p.stdout for r in runs), args
    p = _in_ro_mount(shared_dir, "runs", "show", runs[0].run_id, "--store", url)
    assert p.returncode == 0 and runs[0].run_id in p.stdout
    report = shared_dir.parent / f"{shared_dir.name}-report.html"
    p = _in_ro_mount(shared_dir, "report", runs[0].run_id, "--store", url, "-o", str(report))
    assert p.returncode == 0, p.stderr
    assert runs[0].run_id in report.read_text()
    report.unlink()
    assert not (shared_dir / "probe").exists(), "the mount was writable"
    # a writer on the same mount is told why it cannot write, not a traceback
    p = _in_ro_mount(shared_dir, "track", "--store", url, "--", sys.executable, "-c", "pass")
    assert p.returncode == 0, p.stderr  # the job ran and its exit code passed through
    assert "read-only" in p.stderr and "Traceback" not in p.stderr


def test_a_read_only_file_in_a_read_only_folder_can_be_read(shared_dir: Path) -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv (util-linux) to drop root's override of file modes")
    # root without CAP_DAC_OVERRIDE is held to file modes like any user
    no_override = (
        setpriv,
        "--bounding-set=-dac_override,-dac_read_search",
        "--inh-caps=-dac_override,-dac_read_search",
    )
    url = f"sqlite:///{shared_dir / 'runs.db'}"
    r = tracked_run(url, project="modes")
    from greenlm.store import clear_store_cache

    clear_store_cache()
    os.chmod(shared_dir / "runs.db", 0o444)
    os.chmod(shared_dir, 0o555)
    probe = subprocess.run([*no_override, "touch", str(shared_dir / "probe")], capture_output=True, check=False)
    if probe.returncode == 0:
        pytest.skip("dropping CAP_DAC_OVERRIDE did not make the folder read-only here")
    for args in READ_COMMANDS:
        p = _cli(*args, "--store", url, prefix=no_override)
        assert p.returncode == 0, (args, p.stderr)
        assert r.run_id[:12] in p.stdout
    p = _cli("track", "--store", url, "--", sys.executable, "-c", "pass", prefix=no_override)
    assert p.returncode == 0 and "read-only" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert sorted(x.name for x in shared_dir.iterdir()) == ["runs.db"]


def test_a_read_only_store_that_needs_a_migration_says_so(shared_dir: Path) -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv (util-linux) to drop root's override of file modes")
    url = f"sqlite:///{shared_dir / 'runs.db'}"
    _v1_store(url)
    os.chmod(shared_dir / "runs.db", 0o444)
    os.chmod(shared_dir, 0o555)
    # as if version 2 had changed what reads rely on: a version-1 store then needs migrating
    code = (
        "import sys; import greenlm.store.schema as S; S.READABLE_FROM = 2; "
        "from greenlm.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    p = subprocess.run(
        [
            setpriv,
            "--bounding-set=-dac_override,-dac_read_search",
            "--inh-caps=-dac_override,-dac_read_search",
            sys.executable,
            "-c",
            code,
            "runs",
            "list",
            "--store",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if "cannot be migrated" not in p.stderr and "any command that writes" in p.stderr:
        pytest.skip("dropping CAP_DAC_OVERRIDE did not make the store read-only here")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert f"needs a migration to version {S.SCHEMA_VERSION}" in p.stderr
    assert "read-only here, so it cannot be migrated" in p.stderr
    assert sql(url, "SELECT value FROM greenlm_meta WHERE key = 'schema_version'") == [("1",)]
