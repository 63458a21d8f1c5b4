"""A real, throwaway PostgreSQL server for tests: initdb in a temp dir, stop and start at will.

Used by the fault-injection tests (a store that goes away mid-run and comes back). Skips
when the PostgreSQL binaries are absent, unless GREENLM_REQUIRE_POSTGRES is set (CI), in
which case it fails.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


def _bindir() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    dirs = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
    )
    return Path(dirs[-1]) if dirs and (Path(dirs[-1]) / "initdb").exists() else None


def missing(reason: str) -> None:
    if os.environ.get("GREENLM_REQUIRE_POSTGRES"):
        pytest.fail(f"GREENLM_REQUIRE_POSTGRES is set but {reason}")
    pytest.skip(f"{reason}: install Debian's postgresql package to run the PostgreSQL tests")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """``start()``, ``stop()``, ``url``; the data survives a stop (same port on restart)."""

    def __init__(self, password: str | None = None) -> None:
        """``password``: the server then asks for it (scram-sha-256); it is not in ``url``."""
        pytest.importorskip("psycopg")
        bindir = _bindir()
        if bindir is None:
            missing("the PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        assert bindir is not None
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="greenlm-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.url = f"postgresql+psycopg://greenlm@127.0.0.1:{self.port}/postgres"
        self._as: list[str] = []
        if os.geteuid() == 0:  # postgres refuses to run as root: run it as the postgres user
            import pwd

            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                missing("running as root and there is no 'postgres' user to run the server")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            runuser = shutil.which("runuser")
            if runuser is None:
                missing("running as root and runuser is not installed")
            self._as = [str(runuser), "-u", "postgres", "--"]
        auth = ["-A", "trust"]
        if password is not None:
            pwfile = self.root / "pwfile"
            pwfile.write_text(password + "\n")
            if self._as:
                os.chown(pwfile, pw.pw_uid, pw.pw_gid)
            auth = ["-A", "scram-sha-256", f"--pwfile={pwfile}"]
        self._run(str(bindir / "initdb"), "-D", str(self.data), *auth, "-U", "greenlm", "-E", "UTF8", "--no-sync")

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self._as, *cmd], check=check, capture_output=True, text=True, timeout=120)

    def start(self) -> PostgresServer:
        log = self.root / "server.log"
        try:
            self._run(
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(log),
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {self.port} -h 127.0.0.1 -k {self.root} -c fsync=off",
                "start",
            )
        except subprocess.CalledProcessError as e:
            text = log.read_text() if log.exists() else ""
            pytest.fail(f"could not start PostgreSQL: {e.stderr or e.stdout}\n{text[-2000:]}")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
