"""Fault injection on the way to a team server: poison events, 5xx, a server that is down.

The team server here is greenlm's real server app behind a real uvicorn on loopback, with
one route wrapped so that it answers 500 for one chosen run (an event the server keeps
failing on, like the 200-character phase paths that once overflowed PostgreSQL).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from greenlm.tracking.outbox import Outbox, outbox_root, push, server_key
from greenlm.tracking.spool import MAX_TRIES
from tests.server.helpers import LiveServer, track_run

pytest.importorskip("fastapi")


def _server(tmp_path: Path, fail_run: str | None = None) -> tuple[Any, str, list[str]]:
    from greenlm.server.app import ServerSettings, create_app

    app = create_app(ServerSettings(store_url=f"sqlite:///{tmp_path / 'server.db'}"))
    _tid, token = app.state.tokens.create("tracker")
    seen: list[str] = []
    inner = app

    async def failing(scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if fail_run and fail_run in path and scope.get("method") == "POST":
            seen.append(path)
            await send({"type": "http.response.start", "status": 500, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"Internal Server Error (injected)"})
            return
        await inner(scope, receive, send)

    failing.state = app.state  # type: ignore[attr-defined]
    return failing, token, seen


def _events(url: str) -> list[Path]:
    d = outbox_root() / server_key(url)
    return sorted(f for f in d.glob("*/*.json") if f.parent.name != "rejected") if d.is_dir() else []


def test_an_event_the_server_keeps_failing_on_is_moved_aside_and_blocks_no_one(tmp_path):
    poison = "a" * 32
    app, token, seen = _server(tmp_path, fail_run=poison)
    with LiveServer(app) as live:
        box = Outbox(live.url)
        start = {
            "run_id": poison,
            "project": "p",
            "started_at": "2026-01-01T00:00:00+00:00",
            "pid": 1,
            "host": "h",
            "process_start_time": 0.0,
            "location": {"code": "FRA", "intensity_g_per_kwh": 56.0},
            "pue": 1.0,
        }
        box.put(poison, "start", start)
        good = track_run(f"sqlite:///{tmp_path / 'local.db'}", "good", server=live.url, token=token)
        reports = [push(live.url, token)[live.url] for _ in range(MAX_TRIES + 1)]
        assert app.state.store.get_run(good.run_id).status == "completed", "the good run went out"
    assert len(seen) == MAX_TRIES, "the poison event was tried a bounded number of times"
    assert sum(r.rejected for r in reports) == 1
    rejected = list((box.dir / "rejected").glob("*.json"))
    assert len(rejected) == 1
    reason = (box.dir / "rejected" / (rejected[0].stem + ".reason.txt")).read_text()
    assert f"failed {MAX_TRIES} times" in reason and "HTTP 500" in reason
    assert not _events(live.url), "nothing is left waiting"


def test_a_server_that_is_down_is_reported_during_the_run_and_by_push(tmp_path, caplog):
    url = "http://127.0.0.1:9"  # nothing listens there
    with caplog.at_level(logging.WARNING, logger="greenlm"):
        r = track_run(f"sqlite:///{tmp_path / 'local.db'}", "offline", server=url, token="glm_x", seconds=0.6)
    down = [m for m in caplog.messages if "is not taking the run" in m]
    assert len(down) == 1, "one warning during the run, not one per flush"
    assert any("team server" in w and "not yet stored" in w for w in r.warnings), r.warnings
    assert _events(url)
    p = subprocess.run(
        [sys.executable, "-m", "greenlm", "server", "push", "--server", url, "--timeout", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 1
    assert "still waiting" in p.stdout and "unreachable" in p.stdout, p.stdout


def test_push_without_a_server_never_sends_a_token_to_another_server(tmp_path):
    app_a, token_a, _ = _server(tmp_path / "a")
    app_b, _token_b, _ = _server(tmp_path / "b")
    got: dict[str, list[str]] = {"a": [], "b": []}

    def spy(app: Any, name: str) -> Any:
        async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                auth = dict(scope.get("headers") or []).get(b"authorization", b"").decode()
                got[name].append(auth)
            await app(scope, receive, send)

        return wrapped

    (tmp_path / "a").mkdir(exist_ok=True)
    with LiveServer(spy(app_a, "a")) as a, LiveServer(spy(app_b, "b")) as b:
        url_a, url_b = a.url, b.url
    # both servers down while two runs are tracked, each for its own server
    track_run(f"sqlite:///{tmp_path / 'l.db'}", "for-a", server=url_a, token=token_a)
    track_run(f"sqlite:///{tmp_path / 'l.db'}", "for-b", server=url_b, token="glm_token_of_b")
    with LiveServer(spy(app_a, "a"), a.port), LiveServer(spy(app_b, "b"), b.port):
        p = subprocess.run(
            [sys.executable, "-m", "greenlm", "server", "push", "--token", "glm_intruder", "--timeout", "5"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert "glm_intruder" not in " ".join(got["a"] + got["b"]), "a --token without --server is not sent anywhere"
    assert all(h == f"Bearer {token_a}" for h in got["a"] if h), got["a"]
    assert all(h == "Bearer glm_token_of_b" for h in got["b"] if h), got["b"]
    assert p.returncode in (0, 1)
