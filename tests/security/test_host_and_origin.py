"""DNS rebinding and cross-site requests against a loopback dashboard, and read auth on loopback.

A rebinding page makes the victim's browser talk to 127.0.0.1 under the attacker's own host
name: the requests then carry ``Host: attacker.example``, which is what these tests send. A
cross-site form or fetch carries the attacker's ``Origin``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.security.conftest import Team, make_team
from tests.server.helpers import track_run

SECRET_ARG = "--api-key=sk-live-7f3a9c"


@pytest.fixture
def seeded(dashboard: Team, tmp_path: Path) -> Any:
    """A run whose recorded command line holds something private, in the dashboard's store."""
    import dataclasses

    r = track_run(f"sqlite:///{tmp_path / 'local.db'}", "private-project", "FRA")
    r = dataclasses.replace(r, metadata={**r.metadata, "command": ["python", "train.py", SECRET_ARG]})
    dashboard.store.save_result(r)
    return r


def _get(team: Team, path: str, host: str) -> httpx.Response:
    return httpx.get(team.url + path, headers={"Host": host}, timeout=30, follow_redirects=False)


def test_a_rebinding_page_reads_nothing(dashboard: Team, seeded: Any) -> None:
    port = dashboard.server.port
    rid = seeded.run_id
    paths = ["/api/v1/runs", f"/api/v1/runs/{rid}", f"/api/v1/runs/{rid}/samples", "/", f"/runs/{rid}"]
    # the real thing: the loopback names answer, and the command line is there to be stolen
    ok = _get(dashboard, "/api/v1/runs", f"127.0.0.1:{port}")
    assert ok.status_code == 200 and SECRET_ARG in ok.text
    for host in (f"localhost:{port}", f"[::1]:{port}", f"dashboard.localhost:{port}"):
        assert _get(dashboard, "/api/v1/runs", host).status_code == 200, host
    hostile = [
        f"attacker.example:{port}",
        "attacker.example",
        f"127.0.0.1.attacker.example:{port}",
        f"localhost.attacker.example:{port}",
        f"7f000001.rbndr.us:{port}",
        f"127.0.0.1:{port}@attacker.example",
        "",
    ]
    attempts = 0
    for host in hostile:
        for path in paths:
            r = _get(dashboard, path, host)
            attempts += 1
            assert r.status_code == 400, (host, path, r.status_code)
            assert SECRET_ARG not in r.text and rid not in r.text, (host, path)
            assert "does not answer to the host name" in r.json()["detail"]
    assert attempts == len(hostile) * len(paths)


def test_allowed_hosts_from_the_option_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import uvicorn

    from greenlm.cli import main
    from tests.server.helpers import LiveServer

    got: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: got.append(app))
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    track_run(url, "p", "FRA")
    assert main(["dashboard", "--store", url, "--allowed-host", "greenlm.example.org"]) == 0
    monkeypatch.setenv("GREENLM_ALLOWED_HOSTS", "*.corp.example, metrics.example")
    assert main(["dashboard", "--store", url]) == 0
    assert "answering to the host names" in capsys.readouterr().err
    assert main(["dashboard", "--store", url, "--allowed-host", "not a host!"]) == 2
    assert "is not a host name" in capsys.readouterr().err
    flag_app, env_app = got
    for app, good, bad in (
        (flag_app, ["greenlm.example.org", "127.0.0.1"], ["evil.example", "greenlm.example.org.evil.example"]),
        (env_app, ["a.corp.example", "metrics.example", "localhost"], ["corp.example.evil", "greenlm.example.org"]),
    ):
        with LiveServer(app) as srv:
            for h in good:
                assert httpx.get(srv.url + "/api/v1/runs", headers={"Host": h}).status_code == 200, h
            for h in bad:
                assert httpx.get(srv.url + "/api/v1/runs", headers={"Host": h}).status_code == 400, h


def _csrf(c: httpx.Client) -> str:
    c.get("/lifecycle")
    return str(c.cookies["greenlm_csrf"])


def test_cross_site_form_posts_are_refused(dashboard: Team) -> None:
    port = dashboard.server.port
    own = f"http://127.0.0.1:{port}"
    bad_plan = {"plan": "name: [unclosed", "compare": ""}
    attacks = [
        {"Origin": "http://attacker.example"},
        {"Origin": f"http://attacker.example:{port}"},
        {"Origin": f"http://localhost:{port + 1}"},  # another local site is another origin
        {"Origin": "null"},  # sandboxed iframes, data: pages
        {"Referer": "http://attacker.example/page.html"},
        {"Origin": f"{own}.attacker.example"},
    ]
    with dashboard.client() as c:
        token = _csrf(c)
        for headers in attacks:
            for path, data in (
                ("/lifecycle", {**bad_plan, "csrf_token": token}),
                ("/login", {"token": dashboard.reader, "csrf_token": token}),
                ("/logout", {"csrf_token": token}),
            ):
                r = c.post(path, data=data, headers=headers)
                assert r.status_code == 403, (path, headers, r.status_code)
                assert "cross-site request refused" in r.text
        # no Origin and no Referer (not a browser, or one that hides them): the CSRF token decides
        r = c.post("/lifecycle", data=bad_plan)
        assert r.status_code == 403 and "could not be verified" in r.text
        r = c.post("/lifecycle", data={**bad_plan, "csrf_token": "x" * 32})
        assert r.status_code == 403
        # this dashboard's own form: posted with its token, or from its own origin
        r = c.post("/lifecycle", data={**bad_plan, "csrf_token": token})
        assert r.status_code == 422 and "the plan" in r.text
        r = httpx.post(own + "/lifecycle", data=bad_plan, headers={"Origin": own})
        assert r.status_code == 422


def test_cross_site_api_posts_are_refused_even_with_a_token(dashboard: Team, tmp_path: Path) -> None:
    r = track_run(f"sqlite:///{tmp_path / 'local.db'}", "xsite", "FRA")
    with dashboard.client(dashboard.alice) as c:
        resp = c.post("/api/v1/runs", json=r.to_dict(timeline=True), headers={"Origin": "http://attacker.example"})
        assert resp.status_code == 403
        assert dashboard.store.find_run(r.run_id) is None
        assert c.post("/api/v1/runs", json=r.to_dict(timeline=True)).status_code == 201  # a tracker sends no Origin


def test_reads_can_need_a_token_on_loopback(tmp_path: Path) -> None:
    """Behind a reverse proxy every request comes from 127.0.0.1: --read-auth closes reads."""
    from greenlm.server.app import ServerSettings

    assert ServerSettings.for_host("127.0.0.1", read_auth=True).read_auth
    tm = make_team(tmp_path, read_auth=True, allowed_hosts=("loopback", "greenlm.example.org"))
    try:
        r0 = track_run(f"sqlite:///{tmp_path / 'local.db'}", "behind-proxy", "FRA")
        tm.store.save_result(r0)
        proxied = {"Host": "greenlm.example.org"}
        with tm.client(headers=proxied) as anonymous:
            assert anonymous.get("/api/v1/health").json()["read_auth"] is True
            for path in ("/api/v1/runs", f"/api/v1/runs/{r0.run_id}"):
                r = anonymous.get(path)
                assert r.status_code == 401 and r0.run_id not in r.text
            r = anonymous.get("/", follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"].startswith("/login")
        with tm.client(tm.reader, headers=proxied) as viewer:
            assert r0.run_id in viewer.get("/api/v1/runs").text
    finally:
        tm.server.stop()
