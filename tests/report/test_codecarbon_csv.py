"""greenlm's CodeCarbon CSV beside CodeCarbon's own, read by CodeCarbon's own dashboard.

For each location, a real CodeCarbon ``OfflineEmissionsTracker`` writes its ``emissions.csv``
and greenlm writes its CSV of a tracked run at the same location. The location columns must
be what CodeCarbon wrote, and CodeCarbon's carbonboard (its Dash app, ``render_app`` over
``pd.read_csv`` as ``carbonboard --filepath`` does) is served on loopback and loaded in real
headless Chromium: every callback answers greenlm's file exactly as it answers CodeCarbon's
(carbonboard 3.x itself fails two callbacks for US and Canadian rows, KeyError 'regionCode'
in its own data, and for a cloud provider missing from its table: the same for both files).
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from greenlm.meters.fake import ReplayMeter
from greenlm.report.codecarbon_csv import CODECARBON_COLUMNS, COLUMNS, append_csv, to_csv
from greenlm.tracking.tracker import EnergyTracker

LOCATION_COLUMNS = ("country_iso_code", "region", "on_cloud", "cloud_provider", "cloud_region")
# greenlm location -> how the same place is given to CodeCarbon
CASES = {
    "DEU": {"country_iso_code": "DEU"},
    "US-CA": {"country_iso_code": "USA", "region": "california"},
    "CA-QC": {"country_iso_code": "CAN", "region": "quebec"},
    "gcp:us-central1": {"country_iso_code": "USA", "cloud_provider": "gcp", "cloud_region": "us-central1"},
}


def _greenlm_csv(path: Path, location: str, project: str = "p") -> list[dict[str, str]]:
    tracker = EnergyTracker(
        meters=[ReplayMeter("gpu:0", "gpu", 300.0)], location=location, store=False, interval_s=0.05, project=project
    )
    with tracker:
        time.sleep(0.2)
    append_csv(path, [tracker.result])
    return list(csv.DictReader(path.open()))


def _codecarbon_csv(out_dir: Path, name: str, where: dict[str, str]) -> list[dict[str, str]]:
    cc = pytest.importorskip("codecarbon")
    tracker = cc.OfflineEmissionsTracker(
        project_name="p",
        output_dir=str(out_dir),
        output_file=name,
        log_level="error",
        save_to_file=True,
        measure_power_secs=1,
        **where,
    )
    tracker.start()
    time.sleep(0.2)
    tracker.stop()
    return list(csv.DictReader((out_dir / name).open()))


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Both files for every case (CodeCarbon's own tracker runs about 2 s per file)."""
    out: dict[str, dict[str, Any]] = {}
    with pytest.MonkeyPatch.context() as mp:
        d = tmp_path_factory.mktemp("csv")
        mp.setenv("GREENLM_HOME", str(d / "home"))
        for loc, where in CASES.items():
            key = loc.replace(":", "_")
            gl = d / f"greenlm_{key}.csv"
            out[loc] = {
                "greenlm": _greenlm_csv(gl, loc)[-1],
                "greenlm_path": gl,
                "codecarbon": _codecarbon_csv(d, f"codecarbon_{key}.csv", where)[-1],
                "codecarbon_path": d / f"codecarbon_{key}.csv",
            }
    return out


@pytest.mark.parametrize("location", list(CASES))
def test_location_and_machine_columns_are_what_codecarbon_writes(written, location: str) -> None:
    ours, theirs = written[location]["greenlm"], written[location]["codecarbon"]
    assert list(ours)[: len(CODECARBON_COLUMNS)] == list(theirs), "CodeCarbon's columns, in its order"
    for col in LOCATION_COLUMNS:
        assert ours[col] == theirs[col], (col, ours[col], theirs[col])
    assert ours["country_name"], "a country name for every known location"
    # CodeCarbon's timestamp format (local time to the second, no zone)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", ours["timestamp"]), ours["timestamp"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", theirs["timestamp"])
    # the machine, as CodeCarbon sees it (same machine)
    assert float(ours["ram_total_size"]) == pytest.approx(float(theirs["ram_total_size"]), rel=0.01)
    assert int(ours["cpu_count"]) == int(theirs["cpu_count"])
    assert 0.0 <= float(ours["cpu_utilization_percent"]) <= 100.0
    assert 0.0 < float(ours["ram_utilization_percent"]) <= 100.0
    assert float(ours["ram_used_gb"]) > 0
    assert ours["codecarbon_version"] == "", "greenlm is not CodeCarbon"
    assert re.fullmatch(r"\d+\.\d+.*", ours["greenlm_version"]), ours["greenlm_version"]


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        # CodeCarbon has no eGRID subregions: the country and the region's name
        ("EGRID-CAMX", {"country_iso_code": "USA", "region": "wecc california", "on_cloud": "N"}),
        # CodeCarbon 3.x ships no AWS regions: what its tracker writes for a cloud region it knows
        (
            "aws:us-east-1",
            {
                "country_iso_code": "USA",
                "region": "Virginia",
                "on_cloud": "Y",
                "cloud_provider": "aws",
                "cloud_region": "us-east-1",
            },
        ),
    ],
)
def test_regions_codecarbon_cannot_express(tmp_path: Path, location: str, expected: dict[str, str]) -> None:
    row = _greenlm_csv(tmp_path / "e.csv", location)[-1]
    assert {k: row[k] for k in expected} == expected
    assert row["country_name"] == "United States of America"


def test_an_older_greenlm_file_keeps_its_layout(tmp_path: Path) -> None:
    """A file written before the ``greenlm_version`` column existed gets rows in its layout."""
    path = tmp_path / "old.csv"
    old = COLUMNS[:-1]
    tracker = EnergyTracker(meters=[ReplayMeter("gpu:0", "gpu", 100.0)], location="FRA", store=False, interval_s=0.05)
    with tracker:
        time.sleep(0.1)
    path.write_text(to_csv([tracker.result], old))
    append_csv(path, [tracker.result])
    rows = list(csv.reader(path.open()))
    assert rows[0] == list(old) and len(rows) == 3 and all(len(r) == len(old) for r in rows)


# --------------------------------------------------------------------------- carbonboard
@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    exe = next((c for c in (shutil.which("chromium"), "/usr/bin/chromium") if c and Path(c).exists()), None)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        exe = None
    if exe is None:
        if os.environ.get("GREENLM_REQUIRE_BROWSER"):
            pytest.fail("GREENLM_REQUIRE_BROWSER is set but Chromium or playwright is missing")
        pytest.skip("needs Debian's chromium and playwright")
    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox", "--headless", "--disable-gpu"])
    try:
        yield browser
    finally:
        browser.close()
        pw.stop()


def _carbonboard(browser: Any, csv_path: Path) -> tuple[dict[str, int], str]:
    """Serve carbonboard over ``csv_path`` on loopback; each callback's HTTP status, and the
    project location it shows.
    """
    pd = pytest.importorskip("pandas")
    board = pytest.importorskip("codecarbon.viz.carbonboard", reason="needs codecarbon[carbonboard]")
    from werkzeug.serving import make_server

    app = board.render_app(pd.read_csv(csv_path))  # what `carbonboard --filepath` does
    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    statuses: dict[str, int] = {}
    page = browser.new_page()

    def on_response(resp: Any) -> None:
        if "_dash-update-component" in resp.url:
            body = resp.request.post_data_json or {}
            statuses[str(body.get("output"))] = resp.status

    page.on("response", on_response)
    try:
        page.goto(f"http://127.0.0.1:{server.server_port}/", wait_until="networkidle", timeout=60_000)
        deadline = time.monotonic() + 30
        while len(statuses) < 9 and time.monotonic() < deadline:  # carbonboard fires 9 callbacks at load
            page.wait_for_timeout(200)
        page.wait_for_load_state("networkidle")
        where = page.locator("#project_infrastructure_location").inner_text()
    finally:
        page.close()
        server.shutdown()
        thread.join(timeout=10)
    return statuses, where


@pytest.mark.browser
@pytest.mark.parametrize("location", ["DEU", "US-CA", "gcp:us-central1"])
def test_carbonboard_reads_greenlms_file_as_it_reads_codecarbons(chromium, written, location: str) -> None:
    ours, ours_where = _carbonboard(chromium, written[location]["greenlm_path"])
    theirs, theirs_where = _carbonboard(chromium, written[location]["codecarbon_path"])
    assert len(ours) >= 9, ours
    assert ours == theirs, "every carbonboard callback answers greenlm's file as it answers CodeCarbon's"
    region = written[location]["codecarbon"]["region"]
    assert ours_where.split(",")[0].strip() == theirs_where.split(",")[0].strip() == (region or "nan")
    if location == "DEU":
        assert set(ours.values()) == {200}, "a country row renders completely"
