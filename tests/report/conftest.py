"""Fixtures for the report tests: a store with real tracked runs."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("jinja2")

from tests.server.helpers import seed_store


@pytest.fixture(scope="session")
def report_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("report-store")
    url = f"sqlite:///{d / 'runs.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GREENLM_HOME", str(d / "home"))
        results = seed_store(url)
    return {"url": url, "results": results}
