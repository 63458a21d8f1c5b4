"""The PostgreSQL store path against a real server started here (initdb in a temp dir).

Skips when the PostgreSQL binaries are absent, unless GREENLM_REQUIRE_POSTGRES is set (CI),
in which case it fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.postgres_server import PostgresServer
from tests.server.helpers import XSS, login, track_run

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server on a free loopback port; yields its SQLAlchemy URL."""
    server = PostgresServer().start()
    try:
        yield server.url
    finally:
        from greenlm.store import clear_store_cache

        clear_store_cache()
        server.close()


def test_tracked_runs_in_postgres(postgres_url: str) -> None:
    from greenlm.store import open_store

    r1 = track_run(postgres_url, "pg-alpha", "FRA")
    r2 = track_run(postgres_url, XSS, "DEU", fail=True)
    st = open_store(postgres_url)
    assert st.schema_version >= 1
    got = st.get_run(r1.run_id)
    assert got.result.energy_j == pytest.approx(r1.energy_j)
    assert got.status == "completed" and st.get_run(r2.run_id).status == "failed"
    assert st.get_samples(r1.run_id)
    assert [r.run_id for r in st.list_runs(project="pg-alpha")] == [r1.run_id]
    assert {r.run_id for r in st.list_runs(search="pg-")} == {r1.run_id}


def test_team_server_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from greenlm.server.app import ServerSettings, create_app

    app = create_app(ServerSettings(store_url=postgres_url, read_auth=True))
    tid, token = app.state.tokens.create("pg")
    h = {"Authorization": f"Bearer {token}"}
    c = TestClient(app, base_url="http://127.0.0.1")
    r = track_run(f"sqlite:///{tmp_path / 'local.db'}", "pg-remote", "USA")
    body: dict[str, Any] = r.to_dict(timeline=True)
    assert c.post("/api/v1/runs", json=body, headers=h).status_code == 201
    assert c.post("/api/v1/runs", json=body, headers=h).status_code == 200
    start = {
        "run_id": "pgstream1",
        "project": "pg-stream",
        "started_at": "2025-01-01T00:00:00+00:00",
        "location": {"code": "FRA", "intensity_g_per_kwh": 44.0},
    }
    assert c.post("/api/v1/runs/pgstream1/start", json=start, headers=h).status_code == 201
    batch = {
        "seq": 1,
        "samples": [{"t_s": 0.5, "component": "cpu", "energy_j": 2.0, "power_w": 4.0}],
        "progress": {
            "duration_s": 0.5,
            "energy_j": 2.0,
            "facility_energy_j": 2.0,
            "co2e_g": 0.1,
            "components": {"cpu": 2.0},
        },
    }
    assert c.post("/api/v1/runs/pgstream1/samples", json=batch, headers=h).status_code == 201
    assert c.post("/api/v1/runs/pgstream1/samples", json=batch, headers=h).json()["result"] == "duplicate"
    # PostgreSQL cannot store NUL characters: refused as invalid input, not a server error
    assert c.post("/api/v1/runs", json={**body, "project": "a\x00b"}, headers=h).status_code == 422
    assert c.get("/api/v1/runs").status_code == 401
    listed = c.get("/api/v1/runs", headers=h).json()
    assert {x["run_id"] for x in listed["runs"]} >= {r.run_id, "pgstream1"}
    assert c.get("/api/v1/runs/pgstream1", headers=h).json()["status"] == "running"
    login(c, token)
    page = c.get("/")
    assert page.status_code == 200 and r.run_id in page.text
    assert c.get(f"/runs/{r.run_id}").status_code == 200
    app.state.tokens.revoke(tid)
    assert c.get("/api/v1/runs", headers=h).status_code == 401


def test_concurrent_creation_of_one_run_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    import dataclasses
    import threading

    from greenlm.store import open_store
    from greenlm.tracking.sink import RunStart

    st = open_store(postgres_url)
    r = track_run(f"sqlite:///{tmp_path / 'local.db'}", "pg-race", "FRA")
    start = RunStart("pg-race-start", "pg-race", r.started_at, 0, "h", 0.0, dict(r.location), 1.0)
    results: dict[str, list[object]] = {"start": [], "save": []}
    barrier = threading.Barrier(8)

    def go(kind: str, i: int) -> None:
        barrier.wait()
        try:
            if kind == "start":
                results[kind].append(st.begin_run(start))
            else:
                results[kind].append(st.save_result(dataclasses.replace(r, run_id="pg-race-result", energy_j=float(i))))
        except Exception as e:  # the point: no UniqueViolation reaches the caller
            results[kind].append(e)

    for kind in ("start", "save"):
        threads = [threading.Thread(target=go, args=(kind, i)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(map(str, results["start"])) == ["False"] * 7 + ["True"], results["start"]
    assert sorted(map(str, results["save"])) == ["False"] * 7 + ["True"], results["save"]
    ids = [x.run_id for x in open_store(postgres_url, read_only=True).list_runs(project="pg-race")]
    assert sorted(ids) == ["pg-race-result", "pg-race-start"]


def test_reading_postgres_never_writes(postgres_url: str) -> None:
    import sqlalchemy as sa

    from greenlm.errors import StoreError
    from greenlm.store import open_store

    r = track_run(postgres_url, "pg-ro", "FRA")
    ro = open_store(postgres_url, read_only=True)
    assert ro.get_run(r.run_id).result.energy_j == pytest.approx(r.energy_j)
    with pytest.raises(StoreError, match="open for reading only"):
        ro.save_result(r)
    with ro.engine.connect() as conn, pytest.raises(sa.exc.InternalError, match="read-only transaction"):
        conn.execute(sa.text("CREATE TABLE should_not_exist (a int)"))
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("DROP DATABASE IF EXISTS not_greenlm"))
        conn.execute(sa.text("CREATE DATABASE not_greenlm"))
    admin.dispose()
    other = postgres_url.rsplit("/", 1)[0] + "/not_greenlm"
    with pytest.raises(StoreError, match="not a greenlm run store"):
        open_store(other, read_only=True)
    check = sa.create_engine(other)
    with check.connect() as conn:  # the reader created nothing there
        assert sa.inspect(conn).get_table_names() == []
    check.dispose()


def test_concurrent_posts_of_one_new_run_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    import threading

    from fastapi.testclient import TestClient

    from greenlm.server.app import ServerSettings, create_app

    app = create_app(ServerSettings(store_url=postgres_url))
    _tid, token = app.state.tokens.create("pg-race")
    body: dict[str, Any] = track_run(f"sqlite:///{tmp_path / 'local.db'}", "pg-http-race", "USA").to_dict(timeline=True)
    barrier = threading.Barrier(8)
    codes: list[int] = []

    def post() -> None:
        c = TestClient(app, base_url="http://127.0.0.1")
        barrier.wait()
        codes.append(c.post("/api/v1/runs", json=body, headers={"Authorization": f"Bearer {token}"}).status_code)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200] * 7 + [201]
