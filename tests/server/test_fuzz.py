"""Fuzz the API of a real uvicorn server on loopback against its own OpenAPI spec (schemathesis).

Every operation gets ``FUZZ_EXAMPLES`` generated requests (100 by default; the environment
variable ``GREENLM_FUZZ_EXAMPLES`` asks for more, as for the reliability record), valid and
invalid ones, sent over HTTP with a token that may ingest and read, so that bodies get past
authentication and reach validation and the store. Each response is checked: no 5xx, a status
code the spec documents, the documented content type, and a body that matches the documented
schema.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.server.helpers import LiveServer  # noqa: E402

FUZZ_EXAMPLES = int(os.environ.get("GREENLM_FUZZ_EXAMPLES") or 100)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
_STATE: dict[str, Any] = {}


@pytest.fixture(scope="module")
def live_api() -> Iterator[dict[str, Any]]:
    from greenlm.server.app import ServerSettings, create_app

    d = Path(tempfile.mkdtemp(prefix="greenlm-fuzz-"))
    app = create_app(ServerSettings(store_url=f"sqlite:///{d / 'fuzz.db'}", max_body_bytes=2 * 1024 * 1024))
    _tid, token = app.state.tokens.create("fuzz", ("ingest", "read"))
    with LiveServer(app) as server:
        _STATE.update(url=server.url, token=token, app=app)
        yield _STATE


def _spec() -> dict[str, Any]:
    from greenlm.server.cli import openapi_spec

    return openapi_spec()  # what the live server serves at /api/v1/openapi.json (test_openapi_matches_docs)


schema = schemathesis.openapi.from_dict(_spec())


@schema.parametrize()
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_api_answers_every_request_as_documented(case: Any, live_api: dict[str, Any]) -> None:
    case.call_and_validate(
        base_url=_STATE["url"], headers={"Authorization": f"Bearer {_STATE['token']}"}, checks=CHECKS
    )


def test_without_token_is_401_not_500(live_api: dict[str, Any]) -> None:
    import httpx

    r = httpx.post(live_api["url"] + "/api/v1/runs", json={})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


def test_huge_numbers_and_bad_unicode_are_4xx(live_api: dict[str, Any]) -> None:
    import httpx

    h = {"Authorization": f"Bearer {live_api['token']}", "Content-Type": "application/json"}
    url = live_api["url"] + "/api/v1/runs"
    before = len(live_api["app"].state.store.list_runs())
    r = httpx.post(url, content=b'{"run_id": ' + b"9" * 5000 + b"}", headers=h)
    assert r.status_code in (400, 422), r.text[:200]
    r = httpx.post(url, content=b'{"metadata": {"x": 1e400}}', headers=h)
    assert r.status_code in (400, 422), r.text[:200]
    r = httpx.post(url, content=b'{"project": "\\ud800"}', headers=h)
    assert r.status_code in (400, 422), r.text[:200]
    assert len(live_api["app"].state.store.list_runs()) == before  # nothing half-stored
