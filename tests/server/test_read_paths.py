"""The dashboard reads without writing; ingest creates a run once, however many posts race."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.server.helpers import track_run

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient

from greenlm.server.app import ServerSettings, create_app


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_dashboard_reads_and_never_writes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    r = track_run(url, "dash", "FRA")
    writer = create_app(ServerSettings(store_url=url))
    _tid, token = writer.state.tokens.create("ci")
    from greenlm.store import clear_store_cache

    clear_store_cache()
    before = hashlib.sha256((tmp_path / "runs.db").read_bytes()).hexdigest()
    c = TestClient(create_app(ServerSettings(store_url=url, read_only=True)), base_url="http://127.0.0.1")
    for page in ("/", f"/runs/{r.run_id}", f"/compare?ids={r.run_id}", f"/report?ids={r.run_id}", "/api/v1/runs"):
        assert c.get(page).status_code == 200, page
    assert c.get("/api/v1/health").json()["schema_version"] >= 2
    body = r.to_dict(timeline=True)
    got = c.post("/api/v1/runs", json={**body, "run_id": "new-one"}, headers=_auth(token))
    assert got.status_code == 503 and "open for reading only" in got.json()["detail"]
    assert "greenlm server serve" in got.json()["detail"]
    assert hashlib.sha256((tmp_path / "runs.db").read_bytes()).hexdigest() == before


def test_concurrent_posts_of_one_new_run_create_it_once(tmp_path: Path) -> None:
    app = create_app(ServerSettings(store_url=f"sqlite:///{tmp_path / 'server.db'}"))
    _tid, token = app.state.tokens.create("race")
    r = track_run(f"sqlite:///{tmp_path / 'local.db'}", "race", "DEU")
    start = {
        "run_id": "race-start",
        "project": "race",
        "started_at": r.started_at,
        "location": {"code": "DEU", "intensity_g_per_kwh": 300.0},
    }
    body = r.to_dict(timeline=True)
    barrier = threading.Barrier(8)
    answers: dict[str, list[Any]] = {"start": [], "result": []}

    def post(kind: str) -> None:
        c = TestClient(app, base_url="http://127.0.0.1")
        barrier.wait()
        if kind == "start":
            resp = c.post("/api/v1/runs/race-start/start", json=start, headers=_auth(token))
        else:
            resp = c.post("/api/v1/runs", json=body, headers=_auth(token))
        answers[kind].append((resp.status_code, resp.json().get("result")))

    for kind in ("start", "result"):
        threads = [threading.Thread(target=post, args=(kind,)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(answers["start"]) == [(200, "exists")] * 7 + [(201, "created")]
    assert sorted(answers["result"]) == [(200, "updated")] * 7 + [(201, "created")]
    listed = TestClient(app, base_url="http://127.0.0.1").get("/api/v1/runs").json()
    assert sorted(x["run_id"] for x in listed["runs"]) == sorted(["race-start", r.run_id])
