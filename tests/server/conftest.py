"""Fixtures for the dashboard and team-server tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")

from tests.server.helpers import seed_store


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A store with real tracked runs (shared by the read-only tests of the session)."""
    d = tmp_path_factory.mktemp("seeded")
    url = f"sqlite:///{d / 'runs.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GREENLM_HOME", str(d / "home"))
        results = seed_store(url)
    return {"url": url, "results": results, "dir": d}


@pytest.fixture
def app_factory(tmp_path: Path) -> Any:
    """Build an app over a fresh store (or ``store_url``) with given settings."""
    from greenlm.server.app import ServerSettings, create_app

    def make(store_url: str | None = None, **settings: Any) -> Any:
        url = store_url or f"sqlite:///{tmp_path / 'server.db'}"
        return create_app(ServerSettings(store_url=url, **settings))

    return make


@pytest.fixture
def client_factory(app_factory: Any) -> Any:
    from fastapi.testclient import TestClient

    def make(store_url: str | None = None, **settings: Any) -> tuple[Any, Any, str]:
        app = app_factory(store_url, **settings)
        _tid, token = app.state.tokens.create("tests")
        return TestClient(app, base_url="http://127.0.0.1"), app, token

    return make
