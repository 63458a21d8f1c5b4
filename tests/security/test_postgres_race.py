"""Concurrent ``POST /runs`` of one new id on PostgreSQL, through a live server, with ownership.

Before the store's creation became ``INSERT ... ON CONFLICT``, 8 such posts gave three 500s
(UniqueViolation). Now: one 201, the rest 200 for the owner; another owner racing for the
same id gets only 403s, and the store holds the winner's run once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.postgres_server import PostgresServer
from tests.security.conftest import Team, make_team
from tests.server.helpers import track_run

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_team(pg: PostgresServer, tmp_path: Path) -> Iterator[Team]:
    tm = make_team(tmp_path, store_url=pg.url)
    try:
        yield tm
    finally:
        tm.server.stop()


def _race(team: Team, posts: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, int]]:
    barrier = threading.Barrier(len(posts))
    out: list[tuple[str, int]] = []
    lock = threading.Lock()

    def post(token: str, body: dict[str, Any]) -> None:
        with httpx.Client(base_url=team.url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
            barrier.wait()
            code = c.post("/api/v1/runs", json=body).status_code
        with lock:
            out.append((token, code))

    threads = [threading.Thread(target=post, args=p) for p in posts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_one_owner_posting_one_new_run_eight_times_at_once(pg_team: Team, tmp_path: Path) -> None:
    body = track_run(f"sqlite:///{tmp_path / 'local.db'}", "pg-race", "FRA").to_dict(timeline=True)
    codes = sorted(code for _t, code in _race(pg_team, [(pg_team.alice, body)] * 8))
    assert codes == [200] * 7 + [201], codes
    assert [r.run_id for r in pg_team.store.list_runs(project="pg-race")] == [body["run_id"]]


def test_two_owners_racing_for_one_new_id(pg_team: Team, tmp_path: Path) -> None:
    body = track_run(f"sqlite:///{tmp_path / 'local.db'}", "pg-race-2", "FRA").to_dict(timeline=True)
    posts = [(pg_team.alice, {**body, "project": "alice-wins"})] * 4 + [
        (pg_team.bob, {**body, "project": "bob-wins"})
    ] * 4
    got = _race(pg_team, posts)
    winner = pg_team.store.run_owner(body["run_id"])
    assert winner in ("alice", "bob")
    win_tok = pg_team.alice if winner == "alice" else pg_team.bob
    assert sorted(c for t, c in got if t == win_tok) == [200, 200, 200, 201], got
    assert [c for t, c in got if t != win_tok] == [403] * 4, got
    assert pg_team.store.get_run(body["run_id"]).project == f"{winner}-wins"
    assert len(pg_team.store.list_runs(search=body["run_id"])) == 1
