"""Fixtures of the security suite: a real uvicorn server on loopback with tokens of several owners.

Every test here plays an attacker against that server over HTTP (httpx), or a real headless
Chromium, and asserts what the attacker gets: the status code, the body, and what the store
holds afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from tests.server.helpers import LiveServer  # noqa: E402


@dataclass
class Team:
    """A live team server and its tokens: two owners, an admin, a read-only and an ingest-only one."""

    server: LiveServer
    app: Any
    alice: str
    bob: str
    admin: str
    reader: str
    ingester: str

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def store(self) -> Any:
        return self.app.state.store

    def client(self, token: str | None = None, headers: dict[str, str] | None = None, **kw: Any) -> Any:
        h = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers={**h, **(headers or {})}, timeout=30, **kw)


def make_team(tmp_path: Path, **settings: Any) -> Team:
    from greenlm.server.app import ServerSettings, create_app

    app = create_app(
        ServerSettings(store_url=settings.pop("store_url", f"sqlite:///{tmp_path / 'team.db'}"), **settings)
    )
    t = app.state.tokens
    tokens = {
        "alice": t.create("alice", ("ingest", "read"))[1],
        "bob": t.create("bob", ("ingest", "read"))[1],
        "admin": t.create("ops", ("admin",))[1],
        "reader": t.create("viewer", ("read",))[1],
        "ingester": t.create("ci-runner", ("ingest",))[1],
    }
    return Team(LiveServer(app).start(), app, **tokens)


@pytest.fixture
def team(tmp_path: Path) -> Iterator[Team]:
    """A team server whose reads need a token (as when it is not on loopback)."""
    tm = make_team(tmp_path, read_auth=True)
    try:
        yield tm
    finally:
        tm.server.stop()


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[Team]:
    """A loopback dashboard with open reads (the default of `greenlm dashboard`)."""
    tm = make_team(tmp_path)
    try:
        yield tm
    finally:
        tm.server.stop()
