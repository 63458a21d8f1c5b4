from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from greenlm.store import open_store
from tests.server.helpers import XSS, login, track_run


@pytest.fixture
def run_result(tmp_path: Path) -> Any:
    """A real tracked run (not sent anywhere yet)."""
    return track_run(f"sqlite:///{tmp_path / 'local.db'}", "remote-project", "DEU")


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_health_needs_no_token(client_factory: Any) -> None:
    c, _app, _tok = client_factory()
    r = c.get("/api/v1/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok" and r.json()["read_auth"] is False


def test_ingest_needs_a_valid_token(client_factory: Any, run_result: Any) -> None:
    c, app, token = client_factory()
    body = run_result.to_dict(timeline=True)
    r = c.post("/api/v1/runs", json=body)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert c.post("/api/v1/runs", json=body, headers=_auth("glm_wrong")).status_code == 401
    assert c.post("/api/v1/runs", json=body, headers={"Authorization": f"Basic {token}"}).status_code == 401
    tid, other = app.state.tokens.create("laptop")
    app.state.tokens.revoke(tid)
    assert c.post("/api/v1/runs", json=body, headers=_auth(other)).status_code == 401
    assert c.post("/api/v1/runs", json=body, headers=_auth(token)).status_code == 201


def test_post_run_is_idempotent_and_round_trips(client_factory: Any, run_result: Any) -> None:
    c, app, token = client_factory()
    body = run_result.to_dict(timeline=True)
    r = c.post("/api/v1/runs", json=body, headers=_auth(token))
    assert r.status_code == 201 and r.json() == {"run_id": run_result.run_id, "result": "created", "samples_stored": 0}
    r = c.post("/api/v1/runs", json=body, headers=_auth(token))
    assert r.status_code == 200 and r.json()["result"] == "updated"
    got = c.get(f"/api/v1/runs/{run_result.run_id}").json()
    expected = run_result.to_dict()
    for k in ("run_id", "project", "status", "energy_j", "co2e_g", "facility_energy_j", "components", "phases"):
        assert got[k] == expected[k], k
    listed = c.get("/api/v1/runs").json()
    assert listed["count"] == 1
    assert listed["totals"]["energy_j"] == pytest.approx(run_result.energy_j)
    assert len(open_store(app.state.store.url).list_runs()) == 1


def test_streamed_run_start_samples_result(client_factory: Any, run_result: Any, tmp_path: Path) -> None:
    c, _app, token = client_factory()
    local = open_store(f"sqlite:///{tmp_path / 'local.db'}")
    samples = [dataclasses.asdict(s) for s in local.get_samples(run_result.run_id)]
    assert samples, "the tracker stored samples"
    rid = run_result.run_id
    start = {
        "run_id": rid,
        "project": run_result.project,
        "started_at": run_result.started_at,
        "pid": 1,
        "host": "node-7",
        "process_start_time": 0.0,
        "location": run_result.location,
        "pue": run_result.pue,
        "metadata": {"model": "m"},
        "meters": [],
    }
    # samples before the start: the server cannot attach them
    batch = {
        "seq": 1,
        "samples": samples[:3],
        "progress": {
            "duration_s": 0.1,
            "energy_j": 1.0,
            "facility_energy_j": 1.0,
            "co2e_g": 0.1,
            "components": {"cpu": 1.0},
        },
    }
    assert c.post(f"/api/v1/runs/{rid}/samples", json=batch, headers=_auth(token)).status_code == 404
    assert c.post(f"/api/v1/runs/{rid}/start", json=start, headers=_auth(token)).status_code == 201
    assert c.post(f"/api/v1/runs/{rid}/start", json=start, headers=_auth(token)).json()["result"] == "exists"
    assert c.get(f"/api/v1/runs/{rid}").json()["status"] == "running"
    for page in ("/", f"/runs/{rid}", f"/compare?ids={rid}&ids={rid}", f"/report?ids={rid}"):
        assert c.get(page).status_code == 200, page  # a partial (running) run renders too
    r = c.post(f"/api/v1/runs/{rid}/samples", json=batch, headers=_auth(token))
    assert r.status_code == 201 and r.json()["samples_stored"] == 3
    r = c.post(f"/api/v1/runs/{rid}/samples", json=batch, headers=_auth(token))
    assert r.status_code == 200 and r.json()["result"] == "duplicate"
    batch2 = {**batch, "seq": 2, "samples": samples[3:]}
    assert c.post(f"/api/v1/runs/{rid}/samples", json=batch2, headers=_auth(token)).status_code == 201
    assert c.post("/api/v1/runs", json=run_result.to_dict(timeline=True), headers=_auth(token)).status_code == 200
    got = c.get(f"/api/v1/runs/{rid}/samples").json()["samples"]
    assert len(got) == len(samples)
    assert c.get(f"/api/v1/runs/{rid}").json()["status"] == run_result.status
    # a start arriving after the result changes nothing
    assert c.post(f"/api/v1/runs/{rid}/start", json=start, headers=_auth(token)).json()["result"] == "exists"
    assert c.get(f"/api/v1/runs/{rid}").json()["energy_j"] == pytest.approx(run_result.energy_j)


def test_result_with_samples_in_one_request(client_factory: Any, run_result: Any, tmp_path: Path) -> None:
    c, _app, token = client_factory()
    samples = [
        dataclasses.asdict(s) for s in open_store(f"sqlite:///{tmp_path / 'local.db'}").get_samples(run_result.run_id)
    ]
    body = {**run_result.to_dict(timeline=True), "samples": samples}
    assert c.post("/api/v1/runs", json=body, headers=_auth(token)).json()["samples_stored"] == len(samples)
    assert c.post("/api/v1/runs", json=body, headers=_auth(token)).json()["samples_stored"] == 0
    assert len(c.get(f"/api/v1/runs/{run_result.run_id}/samples").json()["samples"]) == len(samples)


def _bad_bodies(good: dict[str, Any]) -> list[tuple[str, Any]]:
    comp = good["components"][0]
    return [
        ("not an object", [1, 2, 3]),
        ("missing run_id", {k: v for k, v in good.items() if k != "run_id"}),
        ("negative energy", {**good, "energy_j": -1.0}),
        ("string energy", {**good, "energy_j": "lots"}),
        ("unknown status", {**good, "status": "exploded"}),
        ("bad run id", {**good, "run_id": "../../etc/passwd"}),
        ("long project", {**good, "project": "p" * 300}),
        ("pue below 1", {**good, "pue": 0.5}),
        ("nul in project", {**good, "project": "a\x00b"}),
        ("nul in metadata", {**good, "metadata": {"k": ["x\x00"]}}),
        ("bad provenance", {**good, "components": [{**comp, "provenance": "guessed"}]}),
        ("too many components", {**good, "components": [comp] * 1025}),
        ("deep metadata", {**good, "metadata": {"a": json.loads("[" * 30 + "]" * 30)}}),
        ("location without intensity", {**good, "location": {"code": "FRA"}}),
    ]


def test_malformed_bodies_are_422_never_500(client_factory: Any, run_result: Any) -> None:
    c, _app, token = client_factory()
    good = run_result.to_dict(timeline=True)
    for what, body in _bad_bodies(good):
        r = c.post("/api/v1/runs", json=body, headers=_auth(token))
        assert r.status_code == 422, (what, r.status_code, r.text[:300])
    h = {**_auth(token), "Content-Type": "application/json"}
    for raw in (
        b"{",
        b"",
        b"null",
        b'{"energy_j": NaN}',
        b"\xff\xfe",
        json.dumps(good).replace(str(good["energy_j"]), "Infinity").encode(),
    ):
        r = c.post("/api/v1/runs", content=raw, headers=h)
        assert r.status_code == 422, (raw[:30], r.status_code, r.text[:200])
    r = c.post(f"/api/v1/runs/{'x' * 10}/start", json={**good, "run_id": "y" * 10}, headers=_auth(token))
    assert r.status_code == 422
    r = c.post("/api/v1/runs/abc/samples", json={"seq": -1, "samples": [], "progress": {}}, headers=_auth(token))
    assert r.status_code == 422
    assert c.get("/api/v1/runs?limit=0").status_code == 422
    assert c.get("/api/v1/runs?status=weird").status_code == 422
    assert c.get("/api/v1/runs?search=a%00b").status_code == 422
    assert not math.isnan(c.get("/api/v1/runs").json()["totals"]["energy_j"])


def test_oversized_bodies_are_refused_before_parsing(client_factory: Any, run_result: Any) -> None:
    c, _app, token = client_factory(max_body_bytes=50_000)
    big = {**run_result.to_dict(timeline=True), "warnings": ["x" * 4000] * 20}
    r = c.post("/api/v1/runs", json=big, headers=_auth(token))
    assert r.status_code == 413 and "larger than" in r.json()["detail"]

    def chunks() -> Any:  # no Content-Length: counted while streaming
        for _ in range(100):
            yield b" " * 1000

    r = c.post("/api/v1/runs", content=chunks(), headers={**_auth(token), "Content-Type": "application/json"})
    assert r.status_code == 413
    r = c.post("/api/v1/runs", content=b"{}", headers={**_auth(token), "Content-Length": "abc"})
    assert r.status_code in (400, 422)
    many = {
        "seq": 1,
        "samples": [{"t_s": 0, "component": "c", "energy_j": 0, "power_w": 0}] * 50_001,
        "progress": {"duration_s": 0, "energy_j": 0, "facility_energy_j": 0, "co2e_g": 0},
    }
    c2, _a2, tok2 = client_factory()
    r = c2.post("/api/v1/runs/abcd/samples", json=many, headers=_auth(tok2))
    assert r.status_code == 422


def test_reads_need_a_token_off_loopback(client_factory: Any, seeded: dict[str, Any]) -> None:
    c, _app, token = client_factory(seeded["url"], read_auth=True)
    rid = seeded["results"][0].run_id
    assert c.get("/api/v1/health").status_code == 200
    for path in ("/api/v1/runs", f"/api/v1/runs/{rid}", f"/api/v1/runs/{rid}/samples"):
        assert c.get(path).status_code == 401, path
        assert c.get(path, headers=_auth("glm_nope")).status_code == 401, path
        assert c.get(path, headers=_auth(token)).status_code == 200, path
    # pages redirect to sign-in, and the cookie from sign-in opens them
    r = c.get(f"/runs/{rid}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    r = login(c, "glm_bad")
    assert r.status_code == 401
    r = login(c, token, "https://evil.example/")
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()
    assert token not in r.headers["set-cookie"]  # a signed read-only session, never the token
    assert c.get(f"/runs/{rid}").status_code == 200
    assert c.get("/api/v1/runs").status_code == 200  # cookie works for reads...
    body = seeded["results"][0].to_dict()
    assert c.post("/api/v1/runs", json=body).status_code == 401  # ...never for ingest


def test_loopback_detection() -> None:
    from greenlm.server.app import ServerSettings, is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert is_loopback("127.0.0.2") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.com")
    assert ServerSettings.for_host("0.0.0.0").read_auth
    assert not ServerSettings.for_host("127.0.0.1").read_auth


def test_tokens_are_stored_hashed(app_factory: Any, tmp_path: Path) -> None:
    app = app_factory()
    tid, token = app.state.tokens.create("ci")
    assert token.startswith("glm_") and len(token) > 40
    db = Path(app.state.store.url.removeprefix("sqlite:///"))
    con = sqlite3.connect(db)
    rows = con.execute("select id, name, token_hash from greenlm_server_tokens").fetchall()
    con.close()
    assert rows and all(token not in str(r) for r in rows)
    assert app.state.tokens.verify(token).id == tid
    with pytest.raises(Exception, match="No active token"):
        app.state.tokens.revoke("nobody")
    assert app.state.tokens.revoke("ci") == 1
    assert app.state.tokens.verify(token) is None


def test_security_headers_and_escaping(client_factory: Any, seeded: dict[str, Any]) -> None:
    c, _app, _tok = client_factory(seeded["url"])
    hostile = next(r for r in seeded["results"] if r.project == XSS)
    for path in (
        "/",
        f"/runs/{hostile.run_id}",
        f"/compare?ids={hostile.run_id}&ids={seeded['results'][0].run_id}",
        f"/?q={XSS}",
    ):
        r = c.get(path)
        assert r.status_code == 200, path
        assert XSS not in r.text, path
        assert "script-src 'self'" in r.headers["content-security-policy"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in c.get(f"/runs/{hostile.run_id}").text
    r = c.get(f"/report?ids={hostile.run_id}")
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    assert XSS not in r.text


def test_pages_filter_and_404(client_factory: Any, seeded: dict[str, Any]) -> None:
    c, _app, _tok = client_factory(seeded["url"])
    alpha = {r.run_id for r in seeded["results"] if r.project == "alpha"}
    html = c.get("/?project=alpha").text
    assert all(rid in html for rid in alpha)
    assert not any(r.run_id in html for r in seeded["results"] if r.project != "alpha")
    assert seeded["results"][2].run_id in c.get("/?location=USA").text
    assert c.get("/?status=failed").text.count('data-run-id="') == 1
    assert c.get("/?since=2000-01-01&until=2000-01-02").text.count('data-run-id="') == 0
    assert c.get("/?since=yesterday").status_code == 422
    assert c.get("/runs/doesnotexist").status_code == 404
    assert c.get("/report").status_code == 422
    assert c.get("/optimize").status_code == 200


def test_openapi_matches_docs(app_factory: Any) -> None:
    from greenlm.server.cli import openapi_spec

    docs = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
    assert docs.is_file(), "docs/openapi.json is missing: greenlm server openapi -o docs/openapi.json"
    assert json.loads(docs.read_text()) == json.loads(json.dumps(openapi_spec())), (
        "docs/openapi.json is stale: regenerate with `greenlm server openapi -o docs/openapi.json`"
    )
    served = app_factory().openapi()
    assert "/api/v1/runs" in served["paths"] and "/" not in served["paths"]
