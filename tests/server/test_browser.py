"""End to end in a real headless Chromium (Debian's, driven by Playwright).

Seeds a store with real tracked runs, serves the dashboard, and checks in the browser that
the charts render (pixels on the canvas), that the numbers on the page are the store's, that
filtering, comparing, the estimator, the lifecycle and optimize views work, that a hostile run
name stays text, and that the HTML report renders offline. Screenshots of the main pages go to
a temporary folder, or to $GREENLM_SCREENSHOT_DIR (``GREENLM_SCREENSHOT_DIR=docs/screenshots``
refreshes the ones in the docs), so a test run leaves the checkout clean.

Skips when Chromium or Playwright is missing, unless GREENLM_REQUIRE_BROWSER is set (CI).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from greenlm.report.summary import fmt_energy_j
from greenlm.store import open_store
from tests.report.test_html import OPTIMIZE
from tests.server.helpers import XSS, LiveServer

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

PIXELS_JS = """(id) => {
  const c = document.querySelector(`canvas[data-chart="${id}"]`);
  if (!c) return {found: false};
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let painted = 0; const colours = new Set();
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] > 0) { painted++; if (colours.size < 50) colours.add(d[i] + ',' + d[i+1] + ',' + d[i+2]); }
  }
  return {found: true, rendered: c.dataset.rendered, painted, colours: colours.size, w: c.width, h: c.height};
}"""


def _missing(reason: str) -> None:
    if os.environ.get("GREENLM_REQUIRE_BROWSER"):
        pytest.fail(f"GREENLM_REQUIRE_BROWSER is set but {reason}")
    pytest.skip(f"{reason}: install Debian's chromium and playwright (Python) to run the browser tests")


def _chromium() -> str:
    for c in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium"):
        if c and Path(c).exists():
            return c
    _missing("Chromium is not installed")
    raise AssertionError  # unreachable


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = Path(os.environ.get("GREENLM_SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    exe = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright Python package is not installed")
    pw = sync_playwright().start()
    try:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=exe,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
    except Exception as e:
        pw.stop()
        pytest.fail(f"Chromium at {exe} did not start: {e}")
    try:
        yield ctx
    finally:
        ctx.close()
        pw.stop()


@pytest.fixture(scope="module")
def live(seeded: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from greenlm.server.app import ServerSettings, create_app

    opt = tmp_path_factory.mktemp("optimize")
    (opt / "optimize.json").write_text(json.dumps(OPTIMIZE))
    app = create_app(ServerSettings(store_url=seeded["url"], optimize_paths=(str(opt),)))
    with LiveServer(app) as server:
        yield server


@pytest.fixture
def page(browser_context: Any) -> Iterator[Any]:
    p = browser_context.new_page()
    errors: list[str] = []
    dialogs: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    def on_dialog(d: Any) -> None:
        dialogs.append(d.message)
        d.dismiss()

    p.on("dialog", on_dialog)
    p.greenlm_errors = errors
    p.greenlm_dialogs = dialogs
    yield p
    assert not dialogs, f"a script ran from user data: {dialogs}"
    assert not errors, f"browser errors: {errors}"
    p.close()


def _assert_charts(page: Any, ids: list[str]) -> None:
    page.wait_for_function(
        '(ids) => ids.every(id => { const c = document.querySelector(`canvas[data-chart="${id}"]`);'
        " return c && c.dataset.rendered; })",
        arg=ids,
        timeout=15_000,
    )
    for cid in ids:
        info = page.evaluate(PIXELS_JS, cid)
        assert info["found"] and info["rendered"] == "true", (cid, info)
        assert info["painted"] > 0.02 * info["w"] * info["h"], (cid, info)  # not blank
        assert info["colours"] >= 3, (cid, info)  # axes, text and data, not a flat fill


def test_runs_page_numbers_match_the_store(page: Any, live: LiveServer, seeded: dict[str, Any], shots: Path) -> None:
    page.goto(live.url + "/")
    _assert_charts(page, ["overview"])
    store = open_store(seeded["url"])
    runs = {r.run_id: r.to_dict() for r in store.list_runs()}
    rows = page.locator("#runs-table tbody tr[data-run-id]")
    assert rows.count() == len(runs)
    for i in range(rows.count()):
        row = rows.nth(i)
        rid = row.get_attribute("data-run-id")
        cell = row.locator("td[data-energy-j]")
        assert float(cell.get_attribute("data-energy-j")) == pytest.approx(runs[rid]["energy_j"], rel=1e-12)
        assert cell.inner_text().strip() == fmt_energy_j(runs[rid]["energy_j"])
        assert float(row.locator("td[data-co2e-g]").get_attribute("data-co2e-g")) == pytest.approx(
            runs[rid]["co2e_g"], rel=1e-12
        )
    total = float(page.locator('[data-total="energy_j"]').get_attribute("data-raw"))
    assert total == pytest.approx(sum(r["energy_j"] for r in runs.values()))
    assert page.locator('[data-total="energy_j"] .value').inner_text() == fmt_energy_j(total)
    # the hostile project name is shown as text, not run
    assert XSS in page.locator("#runs-table").inner_text()
    page.screenshot(path=str(shots / "runs.png"), full_page=True)


def test_filtering(page: Any, live: LiveServer, seeded: dict[str, Any]) -> None:
    page.goto(live.url + "/")
    page.select_option("select[name=project]", "alpha")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**project=alpha**")
    alpha = {r.run_id for r in seeded["results"] if r.project == "alpha"}
    ids = set(page.locator("#runs-table tbody tr[data-run-id]").evaluate_all("rows => rows.map(r => r.dataset.runId)"))
    assert ids == alpha
    assert page.locator('[data-total="count"] .value').inner_text() == str(len(alpha))
    _assert_charts(page, ["overview"])
    page.goto(live.url + "/")
    page.fill("input[name=q]", "beta")
    page.press("input[name=q]", "Enter")
    page.wait_for_url("**q=beta**")
    assert page.locator("#runs-table tbody tr[data-run-id]").count() == 1
    page.select_option("select[name=status]", "failed")
    page.fill("input[name=q]", "")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**status=failed**")
    assert page.locator("#runs-table tbody tr[data-run-id] .status-failed").count() == 1


def test_run_detail(page: Any, live: LiveServer, seeded: dict[str, Any], shots: Path) -> None:
    r = seeded["results"][0]
    page.goto(f"{live.url}/runs/{r.run_id}")
    _assert_charts(page, ["power", "components", "phases"])
    stored = open_store(seeded["url"]).get_run(r.run_id).to_dict()
    assert float(page.locator('[data-figure="energy"]').get_attribute("data-raw")) == pytest.approx(stored["energy_j"])
    assert page.locator('[data-figure="energy"] .value').inner_text() == fmt_energy_j(stored["energy_j"])
    assert float(page.locator('[data-figure="co2e"]').get_attribute("data-raw")) == pytest.approx(stored["co2e_g"])
    text = page.locator("main").inner_text()
    assert "Ember" in text and "FRA" in text  # intensity and its source
    assert "MODELED" in text.upper() or "SAMPLED" in text.upper() or "COUNTER" in text.upper()
    assert page.locator("[data-equivalent]").count() == 3
    phases = page.locator("table.phases tbody tr")
    assert phases.count() == len(stored["phases"])
    page.screenshot(path=str(shots / "run.png"), full_page=True)


def test_hostile_name_is_text(page: Any, live: LiveServer, seeded: dict[str, Any]) -> None:
    hostile = next(r for r in seeded["results"] if r.project == XSS)
    page.goto(f"{live.url}/runs/{hostile.run_id}")
    _assert_charts(page, ["power", "components"])
    assert page.locator(".project").inner_text() == XSS
    assert page.locator("main script").count() == 0


def test_compare(page: Any, live: LiveServer, seeded: dict[str, Any], shots: Path) -> None:
    page.goto(live.url + "/?sort=project&order=asc")
    a, b = seeded["results"][0].run_id, seeded["results"][2].run_id
    page.check(f'input[name=ids][value="{a}"]')
    page.check(f'input[name=ids][value="{b}"]')
    page.click("text=Compare selected")
    page.wait_for_url("**/compare?**")
    _assert_charts(page, ["compare-energy", "compare-co2e"])
    headers = page.locator("table.compare thead th").all_inner_texts()
    assert a[:12] in headers and b[:12] in headers
    page.screenshot(path=str(shots / "compare.png"), full_page=True)


def test_estimate(page: Any, live: LiveServer, shots: Path) -> None:
    page.goto(live.url + "/estimate")
    if page.locator("#estimate-unavailable").count():
        pytest.skip("greenlm.estimate is not available in this tree")
    page.fill("input[name=params]", "7e9")
    page.fill("input[name=tokens]", "1e11")
    page.fill("input[name=hardware]", "A100")
    page.fill("input[name=chips]", "64")
    page.fill("input[name=location]", "DEU")
    page.fill("input[name=compare]", "FRA,DEU,USA,IND")
    page.click("#estimate-form button[type=submit]")
    page.wait_for_url("**params=7e9**")
    assert page.locator("#estimate-error").count() == 0, page.locator("#estimate-error").inner_text()
    _assert_charts(page, ["est-locations"])
    assert page.locator('[data-figure="co2e_t"]').count() == 1
    assert page.locator("table.comparison tbody tr").count() == 4
    page.screenshot(path=str(shots / "estimate.png"), full_page=True)
    page.goto(live.url + "/estimate?kind=train&params=-1&tokens=1e9&hardware=A100")
    assert page.locator("#estimate-error").count() == 1


def test_lifecycle(page: Any, live: LiveServer, shots: Path) -> None:
    page.goto(live.url + "/lifecycle")
    if page.locator("#lifecycle-unavailable").count():
        pytest.skip("the lifecycle estimator is not available in this tree")
    page.fill("input[name=compare]", "FRA,USA")
    page.click("#lifecycle-form button[type=submit]")
    page.wait_for_load_state()
    assert page.locator("#lifecycle-error").count() == 0, page.locator("#lifecycle-error").inner_text()
    _assert_charts(page, ["lc-co2e", "lc-energy", "lc-locations"])
    assert page.locator("[data-score]").count() == 1
    assert page.locator("table.weights tbody tr").count() >= 1
    page.screenshot(path=str(shots / "lifecycle.png"), full_page=True)


def test_optimize(page: Any, live: LiveServer, shots: Path) -> None:
    page.goto(live.url + "/optimize")
    _assert_charts(page, ["pareto"])
    rows = page.locator("table.optimize tbody tr")
    assert rows.count() == 3
    assert "2.50x" in rows.nth(1).inner_text()
    assert "skipped" in rows.nth(2).inner_text()
    page.screenshot(path=str(shots / "optimize.png"), full_page=True)


def test_report_renders_offline(
    page: Any, browser_context: Any, seeded: dict[str, Any], tmp_path: Path, shots: Path
) -> None:
    from greenlm.report.html import render_report, write_report

    store = open_store(seeded["url"])
    runs = store.list_runs()[:2]
    path = write_report(
        tmp_path / "report.html", render_report(runs, {r.run_id: store.power_trace(r.run_id) for r in runs})
    )
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    browser_context.set_offline(True)
    try:
        page.goto(path.as_uri())
        _assert_charts(page, ["compare-energy", "r0-power", "r1-components"])
    finally:
        browser_context.set_offline(False)
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    page.screenshot(path=str(shots / "report.png"), full_page=False)
