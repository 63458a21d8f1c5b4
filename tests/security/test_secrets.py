"""The store's password never leaks, and need not be on a command line at all.

A real PostgreSQL server that asks for a password (scram-sha-256) holds the store. The
password is looked for, as plain text, in every place the issue lists: API 404s, dashboard
pages, ``result.warnings``, ``greenlm track --json``, the ``stored in`` line, and what a team
server receives and stores (and the outbox and spool files on the way).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.postgres_server import PostgresServer
from tests.server.helpers import LiveServer, free_port, track_run

pytestmark = pytest.mark.postgres
PASSWORD = "SuperSecretPW-8c1e"


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    server = PostgresServer(password=PASSWORD).start()
    try:
        yield server
    finally:
        server.close()


def with_password(url: str) -> str:
    return url.replace("greenlm@", f"greenlm:{PASSWORD}@", 1)


def _cli(*args: str, env: dict[str, str] | None = None, home: Path) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLM_")}
    full_env.update(GREENLM_HOME=str(home), **(env or {}))
    code = "import sys; from greenlm.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=full_env, timeout=180, check=False
    )


def _files_text(folder: Path) -> str:
    return "".join(p.read_bytes().decode("utf-8", "replace") for p in folder.rglob("*") if p.is_file())


def test_the_password_from_the_environment_or_a_file(pg: PostgresServer, tmp_path: Path) -> None:
    """The URL carries no password; GREENLM_STORE_PASSWORD or _FILE supplies it."""
    url = pg.url
    p = _cli("track", "--store", url, "--", sys.executable, "-c", "pass", home=tmp_path / "h0")
    assert p.returncode == 0 and "NOT" in p.stderr and "stored in" not in p.stderr.replace("NOT yet stored in", "")
    assert "password authentication failed" in p.stderr or "no password" in p.stderr
    env = {"GREENLM_STORE_PASSWORD": PASSWORD}
    p = _cli("track", "--json", "--store", url, "--", sys.executable, "-c", "pass", env=env, home=tmp_path / "h1")
    assert p.returncode == 0, p.stderr
    rid = json.loads(p.stdout)["run_id"]
    assert f"stored in {url}" in p.stderr
    secret_file = tmp_path / "pw.txt"
    secret_file.write_text(PASSWORD + "\n")
    env = {"GREENLM_STORE_PASSWORD_FILE": str(secret_file)}
    p = _cli("runs", "list", "--store", url, env=env, home=tmp_path / "h2")
    assert p.returncode == 0 and rid[:12] in p.stdout, p.stderr
    both = {"GREENLM_STORE_PASSWORD": PASSWORD, "GREENLM_STORE_PASSWORD_FILE": str(secret_file)}
    p = _cli("runs", "list", "--store", url, env=both, home=tmp_path / "h3")
    assert p.returncode == 2 and "set only one" in p.stderr
    p = _cli("runs", "list", "--store", url, env={"GREENLM_STORE_PASSWORD_FILE": "/nonexistent/pw"}, home=tmp_path)
    assert (
        p.returncode == 2 and "GREENLM_STORE_PASSWORD_FILE=/nonexistent/pw" in p.stderr and "Traceback" not in p.stderr
    )
    for out in (p.stdout, p.stderr):
        assert PASSWORD not in out


def test_no_password_in_api_errors_or_dashboard_pages(pg: PostgresServer, tmp_path: Path) -> None:
    from greenlm.server.app import ServerSettings, create_app

    url = with_password(pg.url)
    track_run(url, "pg-secret", "FRA")
    for settings in (ServerSettings(store_url=url), ServerSettings(store_url=url, read_only=True)):
        app = create_app(settings)
        with LiveServer(app) as srv:
            for path in ("/api/v1/runs/zzzz", "/api/v1/runs/zzzz/samples", "/runs/zzzz", "/", "/compare?ids=zzzz"):
                r = httpx.get(srv.url + path, timeout=30)
                assert PASSWORD not in r.text, path
                if "zzzz" in path:
                    assert r.status_code == 404 and "greenlm:***@" in r.text, (path, r.status_code)
            assert "store: postgresql+psycopg://greenlm:***@" in httpx.get(srv.url + "/").text


def test_no_password_in_warnings_json_stored_in_or_what_a_team_server_gets(pg: PostgresServer, tmp_path: Path) -> None:
    from greenlm.server.app import ServerSettings, create_app

    dead = f"postgresql+psycopg://greenlm:{PASSWORD}@127.0.0.1:{free_port()}/postgres"  # nobody listens there
    team = create_app(ServerSettings(store_url=f"sqlite:///{tmp_path / 'team.db'}"))
    _tid, token = team.state.tokens.create("tracker", ("ingest",))
    home = tmp_path / "home"
    with LiveServer(team) as srv:
        # the Python API: the store is down, the run goes to the team server
        import os

        os.environ["GREENLM_HOME"] = str(home)  # the autouse fixture restores it
        r = track_run(dead, "leak-check", "FRA", server=srv.url, token=token)
        assert any("greenlm:***@" in w for w in r.warnings), r.warnings
        assert not any(PASSWORD in w for w in r.warnings), r.warnings
        # the CLI: --json and the summary lines, with a store that works and one that is down
        env = {"GREENLM_SERVER": srv.url, "GREENLM_TOKEN": token}
        live = with_password(pg.url)
        p = _cli(
            "track",
            "--json",
            "--store",
            live,
            "--",
            sys.executable,
            "-c",
            "pass",
            f"--db={live}",
            env=env,
            home=home,
        )
        assert p.returncode == 0, p.stderr
        d = json.loads(p.stdout)
        assert "stored in postgresql+psycopg://greenlm:***@" in p.stderr
        assert d["metadata"]["command"][-1] == f"--db={pg.url.replace('greenlm@', 'greenlm:***@')}"
        p2 = _cli("track", "--json", "--store", dead, "--", sys.executable, "-c", "pass", env=env, home=home)
        assert p2.returncode == 0
        assert "greenlm:***@" in p2.stderr + p2.stdout
        for out in (p.stdout, p.stderr, p2.stdout, p2.stderr):
            assert PASSWORD not in out
        # what the team server received and stored (its database file, byte for byte)
        got = team.state.store.get_run(r.run_id).to_dict()
        assert got["energy_j"] == pytest.approx(r.energy_j)
        assert team.state.store.get_run(d["run_id"]).result.metadata["command"] == d["metadata"]["command"]
    db_bytes = (tmp_path / "team.db").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("team.db-*") if p.is_file()
    )
    assert PASSWORD.encode() not in db_bytes
    assert b"greenlm:***@" in db_bytes  # the masked URL in the recorded command line
    # nor on disk on the way: the outbox (to the server) and the spool (to the down store)
    assert (home / "spool").is_dir()
    assert PASSWORD not in _files_text(home)
