"""A run belongs to the owner of the token that created it; tokens have scopes; sessions only read.

Each test is an attack over HTTP on a live team server, with what the attacker gets and what
the store holds afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.security.conftest import Team
from tests.server.helpers import track_run


@pytest.fixture
def run(tmp_path: Path) -> Any:
    """A real tracked run (in a local store), not yet sent anywhere."""
    return track_run(f"sqlite:///{tmp_path / 'local.db'}", "alice-project", "FRA")


def _start(run_id: str, project: str = "alice-project") -> dict[str, Any]:
    return {
        "run_id": run_id,
        "project": project,
        "started_at": "2025-01-01T00:00:00+00:00",
        "location": {"code": "FRA", "intensity_g_per_kwh": 44.0},
    }


def _batch(seq: int, t_s: float, energy_j: float) -> dict[str, Any]:
    return {
        "seq": seq,
        "samples": [{"t_s": t_s, "component": "cpu", "energy_j": energy_j, "power_w": 1.0}],
        "progress": {
            "duration_s": t_s,
            "energy_j": energy_j,
            "facility_energy_j": energy_j,
            "co2e_g": 0.0,
            "components": {"cpu": energy_j},
        },
    }


def test_another_token_cannot_overwrite_a_run(team: Team, run: Any) -> None:
    body = run.to_dict(timeline=True)
    with team.client(team.alice) as alice, team.client(team.bob) as bob:
        assert alice.post("/api/v1/runs", json=body).status_code == 201
        forged = {**body, "project": "bob-was-here", "energy_j": 0.0, "facility_energy_j": 0.0, "co2e_g": 0.0}
        r = bob.post("/api/v1/runs", json=forged)
        assert r.status_code == 403, r.text
        assert "belongs to another owner" in r.json()["detail"]
        # the start of an existing run cannot be claimed either
        assert bob.post(f"/api/v1/runs/{run.run_id}/start", json=_start(run.run_id)).status_code == 403
        # the owner still may re-post (idempotent), and reads show the owner's figures
        assert alice.post("/api/v1/runs", json=body).json()["result"] == "updated"
        got = alice.get(f"/api/v1/runs/{run.run_id}").json()
    stored = team.store.get_run(run.run_id).result
    assert got["project"] == stored.project == "alice-project"
    assert stored.energy_j == pytest.approx(run.energy_j) and stored.energy_j > 0


def test_another_token_cannot_append_samples_or_steal_batch_numbers(team: Team) -> None:
    rid = "alice-stream-1"
    with team.client(team.alice) as alice, team.client(team.bob) as bob:
        assert alice.post(f"/api/v1/runs/{rid}/start", json=_start(rid)).status_code == 201
        r = bob.post(f"/api/v1/runs/{rid}/samples", json=_batch(1, 1.0, 5.0))
        assert r.status_code == 403, r.text
        assert team.store.get_samples(rid) == []
        # bob's refused batch claimed nothing: alice's batch 1 is stored, not taken for a duplicate
        r = alice.post(f"/api/v1/runs/{rid}/samples", json=_batch(1, 1.0, 2.0))
        assert r.status_code == 201 and r.json()["samples_stored"] == 1
    assert [s.energy_j for s in team.store.get_samples(rid)] == [2.0]
    assert team.store.get_run(rid).result.energy_j == pytest.approx(2.0)


def test_absurd_sample_batches_are_refused_by_the_limits(team: Team) -> None:
    from greenlm import limits

    rid = "alice-stream-2"
    with team.client(team.alice) as alice:
        assert alice.post(f"/api/v1/runs/{rid}/start", json=_start(rid)).status_code == 201
        for bad in (_batch(1, 1.0, 1e29), _batch(2, 1.0, limits.ENERGY_J_MAX * 1.01)):
            r = alice.post(f"/api/v1/runs/{rid}/samples", json=bad)
            assert r.status_code == 422, r.text
            assert len(r.text) < 4000  # a bounded message, not the input echoed
        huge_power = _batch(3, 1.0, 1.0)
        huge_power["samples"][0]["power_w"] = limits.POWER_W_MAX * 10
        assert alice.post(f"/api/v1/runs/{rid}/samples", json=huge_power).status_code == 422
    assert team.store.get_samples(rid) == []
    assert team.store.get_run(rid).result.energy_j == 0.0


def test_tokens_of_one_owner_share_runs_and_admin_may_change_any(team: Team, run: Any) -> None:
    body = run.to_dict(timeline=True)
    _tid, alice2 = team.app.state.tokens.create("alice-laptop", ("ingest",), owner="alice")
    with team.client(team.alice) as alice, team.client(alice2) as laptop, team.client(team.admin) as admin:
        assert alice.post("/api/v1/runs", json=body).status_code == 201
        assert laptop.post("/api/v1/runs", json={**body, "project": "renamed"}).status_code == 200
        assert team.store.get_run(run.run_id).project == "renamed"
        assert admin.post("/api/v1/runs", json={**body, "project": "fixed-by-ops"}).status_code == 200
    assert team.store.get_run(run.run_id).project == "fixed-by-ops"
    assert team.store.run_owner(run.run_id) == "alice"  # an admin's edit does not take the run


def test_runs_written_directly_to_the_store_are_changed_only_by_admin(team: Team, run: Any) -> None:
    team.store.save_result(run)  # as a tracker writing this store itself would
    with team.client(team.alice) as alice, team.client(team.admin) as admin:
        assert alice.post("/api/v1/runs", json=run.to_dict(timeline=True)).status_code == 403
        assert admin.post("/api/v1/runs", json=run.to_dict(timeline=True)).status_code == 200


def test_scopes(team: Team, run: Any) -> None:
    body = run.to_dict(timeline=True)
    with team.client(team.reader) as reader, team.client(team.ingester) as ingester:
        r = reader.post("/api/v1/runs", json=body)
        assert r.status_code == 403 and "ingest" in r.json()["detail"]
        assert team.store.find_run(run.run_id) is None
        assert ingester.post("/api/v1/runs", json=body).status_code == 201
        r = ingester.get("/api/v1/runs")
        assert r.status_code == 403 and "read" in r.json()["detail"]
        assert run.run_id not in r.text
        assert reader.get("/api/v1/runs").json()["count"] == 1
        assert reader.get(f"/api/v1/runs/{run.run_id}").json()["energy_j"] == pytest.approx(run.energy_j)
    with team.client() as anonymous:
        assert anonymous.get("/api/v1/runs").status_code == 401
        assert anonymous.get(f"/api/v1/runs/{run.run_id}").status_code == 401


def test_revoked_token_is_refused(team: Team, run: Any) -> None:
    tid, tok = team.app.state.tokens.create("temp", ("ingest", "read"))
    team.app.state.tokens.revoke(tid)
    with team.client(tok) as c:
        assert c.post("/api/v1/runs", json=run.to_dict(timeline=True)).status_code == 401
        assert c.get("/api/v1/runs").status_code == 401
    assert team.store.find_run(run.run_id) is None


def _login(c: Any, token: str) -> Any:
    c.get("/login")
    return c.post("/login", data={"token": token, "next": "/", "csrf_token": c.cookies["greenlm_csrf"]})


def test_the_login_cookie_holds_a_read_only_session_never_the_token(team: Team, run: Any) -> None:
    with team.client() as browser:
        r = _login(browser, team.alice)
        assert r.status_code == 303
        cookie = browser.cookies["greenlm_session"]
        assert team.alice not in cookie and team.alice[4:] not in cookie and not cookie.startswith("glm_")
        assert browser.get("/").status_code == 200
        assert browser.get("/api/v1/runs").status_code == 200
        # the session reads only: it cannot be used to send runs, as a cookie or as a bearer token
        assert browser.post("/api/v1/runs", json=run.to_dict(timeline=True)).status_code == 401
        with team.client(cookie) as as_bearer:
            assert as_bearer.post("/api/v1/runs", json=run.to_dict(timeline=True)).status_code == 401
            assert as_bearer.get("/api/v1/runs").status_code == 401
    assert team.store.find_run(run.run_id) is None
    # a forged or altered session is nobody's
    v, tid, exp, mac = cookie.split(".")
    for forged in (f"{v}.{tid}.{int(exp) + 10**6}.{mac}", f"{v}.{tid}.{exp}.{'0' * len(mac)}", f"{v}.x.{exp}.{mac}"):
        with team.client(cookies={"greenlm_session": forged}) as c:
            assert c.get("/api/v1/runs").status_code == 401
            assert c.get("/", follow_redirects=False).status_code == 303
    # revoking the token ends its sessions
    tid_alice = next(t["id"] for t in team.app.state.tokens.list() if t["name"] == "alice")
    team.app.state.tokens.revoke(tid_alice)
    with team.client(cookies={"greenlm_session": cookie}) as c:
        assert c.get("/api/v1/runs").status_code == 401


def test_an_expired_session_is_refused(team: Team) -> None:
    rec = team.app.state.tokens.verify(team.reader)
    old = team.app.state.tokens.session_for(rec, now=0.0, lifetime_s=60)
    with team.client(cookies={"greenlm_session": old}) as c:
        assert c.get("/api/v1/runs").status_code == 401


def test_a_token_that_cannot_read_cannot_sign_in(team: Team) -> None:
    with team.client() as browser:
        r = _login(browser, team.ingester)
        assert r.status_code == 403 and "cannot read" in r.text
        assert "greenlm_session" not in browser.cookies


def test_token_create_scopes_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from greenlm.cli import main
    from greenlm.store import open_store

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["server", "token", "create", "viewer", "--scope", "read", "--store", url, "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["scopes"] == ["read"] and made["owner"] == "viewer"
    assert (
        main(["server", "token", "create", "ci", "--scope", "ingest,admin", "--owner", "team-a", "--store", url]) == 0
    )
    assert main(["server", "token", "create", "x", "--scope", "root", "--store", url]) == 2
    assert "Unknown scope 'root'" in capsys.readouterr().err
    recs = {t.name: t for t in open_store(url).tokens()}
    assert set(recs) == {"viewer", "ci"}
    assert recs["ci"].scopes == ("ingest", "admin") and recs["ci"].owner == "team-a"
    assert main(["server", "token", "list", "--store", url]) == 0
    out = capsys.readouterr().out
    assert "ingest,admin" in out and "owner team-a" in out and made["token"] not in out


def test_tokens_made_before_scopes_keep_what_they_could_do(tmp_path: Path) -> None:
    """A v2 store's tokens (no scopes column) keep ingest and read after the v3 migration."""
    import sqlalchemy as sa

    from greenlm.server.tokens import TokenStore, hash_token
    from greenlm.store import clear_store_cache, open_store
    from greenlm.store import schema as S

    url = f"sqlite:///{tmp_path / 'old.db'}"
    st = open_store(url)
    with st.begin() as conn:  # back to version 2: no owner/scope columns
        conn.exec_driver_sql("ALTER TABLE runs DROP COLUMN owner")
        conn.exec_driver_sql(f"ALTER TABLE {S.tokens.name} DROP COLUMN scopes")
        conn.exec_driver_sql(f"ALTER TABLE {S.tokens.name} DROP COLUMN owner")
        conn.execute(
            sa.text(f"INSERT INTO {S.tokens.name} (id, name, token_hash, created_at) VALUES ('old1', 'legacy', :h, 1)"),
            {"h": hash_token("glm_legacy-token")},
        )
        conn.execute(S.meta.update().values(value="2"))
    clear_store_cache()
    ro = TokenStore(open_store(url, read_only=True))  # a reader of the v2 store as it is
    assert ro.verify("glm_legacy-token").scopes == ("ingest", "read")
    rec = TokenStore(open_store(url)).verify("glm_legacy-token")  # a writer migrates it to v3
    assert rec is not None and rec.scopes == ("ingest", "read") and rec.owner == "legacy"
    assert open_store(url).schema_version == S.SCHEMA_VERSION


def test_a_second_token_cannot_take_a_new_run_in_a_race(team: Team, run: Any) -> None:
    """Alice and Bob post one new id at once (SQLite here; PostgreSQL in test_postgres_race)."""
    import threading

    body = run.to_dict(timeline=True)
    barrier = threading.Barrier(8)
    codes: dict[str, list[int]] = {"alice": [], "bob": []}

    def post(who: str, token: str, project: str) -> None:
        with team.client(token) as c:
            barrier.wait()
            codes[who].append(c.post("/api/v1/runs", json={**body, "project": project}).status_code)

    threads = [
        threading.Thread(target=post, args=(w, t, f"{w}-project"))
        for w, t in (("alice", team.alice), ("bob", team.bob))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winner = team.store.run_owner(run.run_id)
    loser = "bob" if winner == "alice" else "alice"
    assert sorted(codes[winner]) == [200, 200, 200, 201], codes
    assert codes[loser] == [403] * 4, codes
    assert team.store.get_run(run.run_id).project == f"{winner}-project"


def test_a_tracker_holding_another_owners_run_moves_it_aside_and_delivers_the_rest(
    team: Team, run: Any, tmp_path: Path
) -> None:
    """A 403 "not_owner" is final: the event is kept under rejected/ and blocks no other run."""
    from greenlm.tracking.outbox import Outbox, push

    with team.client(team.alice) as alice:
        assert alice.post("/api/v1/runs", json=run.to_dict(timeline=True)).status_code == 201
    mine = track_run(f"sqlite:///{tmp_path / 'bob.db'}", "bob-project", "DEU")
    box = Outbox(team.url)
    box.put(run.run_id, "result", {**run.to_dict(timeline=True), "project": "hijack"})
    box.put(mine.run_id, "result", mine.to_dict(timeline=True))
    reports = push(team.url, team.bob, timeout_s=10)
    rep = reports[box.url]
    assert rep.rejected == 1 and rep.pending == 0 and rep.delivered == 1, rep
    reasons = list((box.dir / "rejected").glob("*.reason.txt"))
    assert len(reasons) == 1 and "not_owner" in reasons[0].read_text()
    assert team.store.get_run(run.run_id).project == "alice-project"
    assert team.store.get_run(mine.run_id).project == "bob-project"
    assert team.store.run_owner(mine.run_id) == "bob"


def test_another_token_cannot_add_a_node_to_a_distributed_job(team: Team) -> None:
    from tests.store.test_groups import GID, part

    with team.client(team.alice) as alice, team.client(team.bob) as bob:
        assert alice.post("/api/v1/runs", json=part(0).to_dict(timeline=True)).status_code == 201
        forged = part(1).to_dict(timeline=True)
        r = bob.post("/api/v1/runs", json=forged)
        assert r.status_code == 403, r.text
        assert "belongs to another owner" in r.json()["detail"]
        assert alice.post("/api/v1/runs", json=part(1).to_dict(timeline=True)).status_code == 201
    group = team.store.get_run(GID).result
    assert group.status == "completed", "alice's own second node completed her job"
    assert group.energy_j == pytest.approx(part(0).energy_j + part(1).energy_j)
