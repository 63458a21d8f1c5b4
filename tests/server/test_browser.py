"""End to end in a real headless Chromium (Debian's, driven by Playwright).

Seeds a store with real tracked runs, serves the dashboard, and checks in the browser that
the charts render (pixels on the canvas), that the numbers on the page are the store's, that
filtering, comparing, the estimator, the lifecycle and optimize views work, that a hostile run
name stays text, and that the HTML report renders offline. Every page is also loaded at a
laptop's 1280x800 and a phone's 390x844: no horizontal overflow, figures for people (no
exponent), one unit per quantity on a page. Screenshots of the main pages (``NAME.png`` at
1280 px, ``NAME-phone.png`` at 390 px) go to a temporary folder, or to
$GREENLM_SCREENSHOT_DIR (``GREENLM_SCREENSHOT_DIR=docs/screenshots`` refreshes the ones in the
docs), so a test run leaves the checkout clean.

Skips when Chromium or Playwright is missing, unless GREENLM_REQUIRE_BROWSER is set (CI).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from greenlm import humanize
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


@contextlib.contextmanager
def chromium_context(profile: Path, **options: Any) -> Iterator[Any]:
    """A real headless Chromium (Playwright's persistent context) for the tests; closed after.

    ``options`` go to ``launch_persistent_context`` (``args`` are added to CHROMIUM_ARGS).
    """
    exe = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright Python package is not installed")
    pw = sync_playwright().start()
    extra = options.pop("args", [])
    try:
        ctx = pw.chromium.launch_persistent_context(
            str(profile), executable_path=exe, headless=True, args=[*CHROMIUM_ARGS, *extra], **options
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
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium_context(tmp_path_factory.mktemp("chromium-profile"), viewport={"width": 1280, "height": 800}) as ctx:
        yield ctx


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
    unit = humanize.energy_unit([sum(r["energy_j"] for r in runs.values())])  # the total's, for the page
    for i in range(rows.count()):
        row = rows.nth(i)
        rid = row.get_attribute("data-run-id")
        cell = row.locator("td[data-energy-j]")
        assert float(cell.get_attribute("data-energy-j")) == pytest.approx(runs[rid]["energy_j"], rel=1e-12)
        assert cell.inner_text().strip() == humanize.energy(runs[rid]["energy_j"], unit)
        assert float(row.locator("td[data-co2e-g]").get_attribute("data-co2e-g")) == pytest.approx(
            runs[rid]["co2e_g"], rel=1e-12
        )
    total = float(page.locator('[data-total="energy_j"]').get_attribute("data-raw"))
    assert total == pytest.approx(sum(r["energy_j"] for r in runs.values()))
    assert page.locator('[data-total="energy_j"] .value').inner_text() == humanize.energy(total, unit)
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
    from greenlm.report.summary import run_units
    from greenlm.tracking.result import RunResult

    unit = run_units(RunResult.from_dict(stored))[0]
    assert page.locator('[data-figure="energy"] .value').inner_text() == humanize.energy(stored["energy_j"], unit)
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


# --------------------------------------------------------------------------- laptop and phone
VIEWPORTS = {"laptop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}

#: What a page does after loading (fill and submit a form), so its result is what is checked.
ENERGY_UNITS = ("µJ", "mJ", "J", "Wh", "kWh", "MWh", "GWh")
MASS_UNITS = ("µg", "mg", "g", "kg", "t")
EXPONENT = r"(?<![0-9A-Za-z.])\d+(?:\.\d+)?[eE][-+]?\d+(?![0-9A-Za-z])"  # 1.97e-05, 7e9; not inside an id

PAGE_FIGURES_JS = """() => {
  const out = [];
  const pick = 'td.num, td, .card .value, .card .band, td .band';
  document.querySelectorAll(pick).forEach(e => {
    if (e.closest('details:not([open])') || e.closest('.source')) return;
    out.push(e.innerText);
  });
  return out;
}"""


def _pages(live: LiveServer, seeded: dict[str, Any]) -> dict[str, str]:
    a, b = seeded["results"][0].run_id, seeded["results"][2].run_id
    return {
        "runs": "/",
        "run": f"/runs/{a}",
        "compare": f"/compare?ids={a}&ids={b}",
        "estimate-form": "/estimate",
        "estimate": "/estimate?kind=train&params=7e9&tokens=1e11&hardware=A100&chips=64&location=DEU"
        "&compare=FRA,DEU,USA,IND",
        "estimate-inference": "/estimate?kind=inference&params=7e9&hardware=A100&queries_per_day=1e6&days=365",
        "lifecycle-form": "/lifecycle",
        "optimize": "/optimize",
    }


def _units_in(texts: list[str], units: tuple[str, ...], after: str = "") -> set[str]:
    """Units of the figures in ``texts`` (``after``: what must follow, e.g. `` CO2e``; a rate
    such as ``g CO2e/kWh`` or ``J/token`` is another quantity).
    """
    import re

    alt = "|".join(sorted(map(re.escape, units), key=len, reverse=True))
    found: set[str] = set()
    for t in texts:
        found |= set(re.findall(rf"\d\s({alt}){re.escape(after)}(?![A-Za-z/])", t))
    return found


def _check_page(page: Any, name: str) -> None:
    """No horizontal overflow, no exponent anywhere a person reads, one unit per quantity."""
    import re

    page.wait_for_load_state("load")
    width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"{name}: the page is {width[0]} px wide in a {width[1]} px window"
    # what a person reads: the page's text, less code samples and what they type (``7e9`` in a form)
    text = page.evaluate(
        "() => { const b = document.body.cloneNode(true);"
        " b.querySelectorAll('code, pre, script, style, textarea').forEach(e => e.remove()); return b.innerText; }"
    )
    hit = re.search(EXPONENT, text)
    assert hit is None, (
        f"{name}: a number in scientific notation for people: ...{text[max(0, hit.start() - 40) : hit.end() + 20]}..."
    )
    assert "CO2E" not in text, f"{name}: CO2e shouted"
    figures = page.evaluate(PAGE_FIGURES_JS)
    energy = _units_in(figures, ENERGY_UNITS)
    assert len(energy) <= 1, f"{name}: energies in several units on one page: {sorted(energy)}"
    mass = _units_in(figures, MASS_UNITS, after=" CO2e")
    assert len(mass) <= 1, f"{name}: CO2e in several units on one page: {sorted(mass)}"


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_every_page_fits_the_screen_and_reads_for_people(
    browser_context: Any, live: LiveServer, seeded: dict[str, Any], shots: Path, viewport: str
) -> None:
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_viewport_size(VIEWPORTS[viewport])
    try:
        for name, path in _pages(live, seeded).items():
            page.goto(live.url + path)
            _check_page(page, f"{name} at {viewport}")
            if viewport == "phone" and name in ("runs", "run", "estimate", "optimize"):
                page.screenshot(path=str(shots / f"{name}-phone.png"), full_page=True)
        # the lifecycle result (a POST of the example plan)
        page.goto(live.url + "/lifecycle")
        page.fill("input[name=compare]", "FRA,USA")
        page.click("#lifecycle-form button[type=submit]")
        page.wait_for_load_state()
        _check_page(page, f"lifecycle at {viewport}")
        if viewport == "phone":
            page.screenshot(path=str(shots / "lifecycle-phone.png"), full_page=True)
    finally:
        page.close()
    assert not errors, errors


def test_lifecycle_chart_shows_every_part(page: Any, live: LiveServer) -> None:
    """Training dwarfs the other parts by orders of magnitude: on the log axis each part with a
    figure above zero has a bar of visible length, and the parts table lists them all.
    """
    page.goto(live.url + "/lifecycle")
    if page.locator("#lifecycle-unavailable").count():
        pytest.skip("the lifecycle estimator is not available in this tree")
    page.click("#lifecycle-form button[type=submit]")
    page.wait_for_load_state()
    _assert_charts(page, ["lc-co2e", "lc-energy"])
    bars = page.evaluate(
        """() => {
      const ch = Chart.getChart(document.querySelector('canvas[data-chart="lc-energy"]'));
      const meta = ch.getDatasetMeta(0);
      return {type: ch.options.scales.x.type, labels: ch.data.labels, values: ch.data.datasets[0].data,
              widths: meta.data.map(b => b.width), area: ch.chartArea.right - ch.chartArea.left};
    }"""
    )
    assert bars["type"] == "logarithmic"
    table = page.locator("table.lifecycle tbody tr").count()
    assert len(bars["labels"]) == table >= 4
    for label, v, w in zip(bars["labels"], bars["values"], bars["widths"]):
        if v:
            assert w >= 0.05 * bars["area"], f"{label}: {v} drawn {w:.1f} px long of {bars['area']:.0f}"


def test_band_overlay_is_what_its_caption_says(page: Any, live: LiveServer, seeded: dict[str, Any]) -> None:
    """The caption says a thin dark bar spans the band: the band is drawn at most 6 px wide,
    far narrower than the value's bar, in a dark colour, from the low to the high value.
    """
    r = seeded["results"][0]
    page.goto(f"{live.url}/runs/{r.run_id}")
    _assert_charts(page, ["components"])
    caption = page.locator("#fig-components figcaption").inner_text()
    assert "thin dark bar" in caption
    info = page.evaluate(
        """() => {
      const ch = Chart.getChart(document.querySelector('canvas[data-chart="components"]'));
      const value = ch.getDatasetMeta(ch.data.datasets.findIndex(d => !d.label.startsWith('band')));
      const band = ch.getDatasetMeta(ch.data.datasets.findIndex(d => d.label.startsWith('band')));
      return {value: value.data.map(b => b.width), band: band.data.map(b => b.width),
              colour: ch.data.datasets[band.index].backgroundColor,
              lows: ch.data.datasets[band.index].data};
    }"""
    )
    import re

    for vw, bw in zip(info["value"], info["band"]):
        assert bw <= 6.5 and bw < vw / 3, info
    rgba = [float(x) for x in re.findall(r"[\d.]+", info["colour"])]
    assert max(rgba[:3]) <= 60 and rgba[3] >= 0.8, f"not dark: {info['colour']}"
    comps = {c.name: c for c in r.components}
    assert len(info["lows"]) == len(comps)


def test_estimate_page_explains_itself_before_the_form_is_filled(page: Any, live: LiveServer) -> None:
    page.goto(live.url + "/estimate")
    if page.locator("#estimate-unavailable").count():
        pytest.skip("greenlm.estimate is not available in this tree")
    explain = page.locator("#estimate-explain")
    assert explain.is_visible()
    text = explain.inner_text()
    assert "before you run it" in text and "grid" in text and "band" in text
    hints = page.locator("#estimate-form .hint").all_inner_texts()
    assert len(hints) == page.locator("#estimate-form input[name]:not([type=hidden])").count() - 1  # but compare
    assert all(h.strip() for h in hints), hints
    assert page.locator("[data-figure]").count() == 0, "no result until the form is submitted"
