"""In a real headless Chromium: the API docs render from vendored assets; rebinding and CSRF fail.

Chromium resolves ``rebind.test`` and ``evil.test`` to 127.0.0.1 (``--host-resolver-rules``),
which is what DNS rebinding does to a victim's browser: the dashboard is then reached under
the attacker's name (``Host: rebind.test``), and an attacker's page (on ``evil.test``, served
by a second local HTTP server) posts forms and fetches at the dashboard.

Skips when Chromium or Playwright is missing, unless GREENLM_REQUIRE_BROWSER is set (CI).
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.security.conftest import Team
from tests.server.helpers import free_port, track_run
from tests.server.test_browser import CHROMIUM_ARGS, _chromium, _missing

pytestmark = pytest.mark.browser
SECRET = "--hf-token=hf_sEcReT42"


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    exe = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright Python package is not installed")
    pw = sync_playwright().start()
    try:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-security")),
            executable_path=exe,
            headless=True,
            args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP rebind.test 127.0.0.1, MAP evil.test 127.0.0.1"],
        )
    except Exception as e:
        pw.stop()
        pytest.fail(f"Chromium at {exe} did not start: {e}")
    try:
        yield ctx
    finally:
        ctx.close()
        pw.stop()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    p = chromium.new_page()
    p.greenlm_console = []
    p.greenlm_requests = []
    p.on("console", lambda m: p.greenlm_console.append((m.type, m.text)))
    p.on("pageerror", lambda e: p.greenlm_console.append(("pageerror", str(e))))
    p.on("request", lambda r: p.greenlm_requests.append(r.url))
    yield p
    p.close()


@pytest.fixture
def seeded(dashboard: Team, tmp_path: Path) -> Any:
    import dataclasses

    r = track_run(f"sqlite:///{tmp_path / 'local.db'}", "browser-secret", "FRA")
    r = dataclasses.replace(r, metadata={**r.metadata, "command": ["python", "train.py", SECRET]})
    dashboard.store.save_result(r)
    return r


def test_api_docs_render_from_vendored_assets(page: Any, dashboard: Team) -> None:
    from greenlm.server.cli import openapi_spec

    operations = sum(len(ops) for ops in openapi_spec()["paths"].values())
    page.goto(dashboard.url + "/api/docs")
    page.wait_for_selector("#swagger-ui[data-rendered=true]", timeout=20_000)
    page.wait_for_selector(".opblock", timeout=20_000)
    assert page.locator(".opblock").count() == operations
    assert "greenlm team server" in page.locator(".info .title").inner_text()
    errors = [t for kind, t in page.greenlm_console if kind in ("error", "pageerror")]
    assert errors == []  # a CSP violation would be a console error
    assert all(u.startswith(dashboard.url) or u.startswith("data:") for u in page.greenlm_requests), (
        page.greenlm_requests
    )
    # the page's own CSP is what allowed it: still script-src 'self'
    resp = page.request.get(dashboard.url + "/api/docs")
    assert "script-src 'self'" in resp.headers["content-security-policy"]


def test_a_rebound_name_reads_nothing(page: Any, dashboard: Team, seeded: Any) -> None:
    port = dashboard.server.port
    page.goto(f"http://127.0.0.1:{port}/api/v1/runs")
    assert SECRET in page.content()  # what there is to steal
    for path in ("/api/v1/runs", f"/runs/{seeded.run_id}", "/"):
        resp = page.goto(f"http://rebind.test:{port}{path}")
        assert resp is not None and resp.status == 400, path
        assert SECRET not in page.content() and seeded.run_id not in page.content()


class _EvilSite(http.server.BaseHTTPRequestHandler):
    target = ""

    def do_GET(self) -> None:
        t = self.target
        if self.path == "/form":
            body = (
                f'<form id="f" method="post" action="{t}/lifecycle">'
                '<input name="plan" value="name: [broken"><input name="csrf_token" value="guessed"></form>'
                "<script>document.getElementById('f').submit()</script>"
            )
        else:
            body = (
                "<script>window.stolen = 'pending';"
                f"fetch('{t}/api/v1/runs').then(r => r.text()).then(t => window.stolen = t)"
                ".catch(e => window.stolen = 'blocked: ' + e);</script>"
            )
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def evil_site(dashboard: Team) -> Iterator[str]:
    port = free_port()
    handler = type("Handler", (_EvilSite,), {"target": f"http://127.0.0.1:{dashboard.server.port}"})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://evil.test:{port}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_an_attackers_page_can_neither_post_nor_read(page: Any, dashboard: Team, seeded: Any, evil_site: str) -> None:
    with page.expect_response(lambda r: r.url.endswith("/lifecycle")) as posted:
        page.goto(evil_site + "/form")
    assert posted.value.status == 403
    page.wait_for_load_state()
    assert "cross-site request refused" in page.content()
    page.goto(evil_site + "/read")
    page.wait_for_function("window.stolen !== 'pending'", timeout=15_000)
    stolen = page.evaluate("window.stolen")
    assert stolen.startswith("blocked"), stolen[:200]  # no CORS grant: the browser keeps the answer from the page
    assert SECRET not in stolen
