"""The optimize HTML report (``greenlm report --optimize DIR``) in a real headless Chromium:
it fits a 1280 px viewport (a wide table scrolls inside its own box) and its numbers are
written for people."""

import re

import pytest

from greenlm.cli import main
from greenlm.optimize.runner import OptimizeConfig, optimize

pytestmark = pytest.mark.browser

TECHNIQUES = "int8,int8w,int4w,bf16,fp16,prune:0.3,heads:0.25,ffn:0.25,lowrank:0.5,heads:0.25+recover:1+bf16,bnb4"


@pytest.fixture(scope="module")
def report_html(tokenizer, tmp_path_factory):
    from tests.optimize.conftest import FakeMeter, tiny_bert

    out = tmp_path_factory.mktemp("optimize-report")
    cfg = OptimizeConfig(
        model="tiny-bert",
        task="embedding",
        techniques=TECHNIQUES,
        repeats=3,
        samples=6,
        batch_size=3,
        location="DEU",
        report_dir=out,
    )
    optimize(cfg, measure=FakeMeter(), loaded=(tokenizer, tiny_bert()))
    html = out / "report.html"
    assert main(["report", "--optimize", str(out), "-o", str(html)]) == 0
    return html


@pytest.fixture(scope="module")
def browser():
    from tests.server.test_browser import CHROMIUM_ARGS, _chromium, _missing

    exe = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright Python package is not installed")
    pw = sync_playwright().start()
    b = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
    yield b
    b.close()
    pw.stop()


def test_the_report_fits_1280_px_and_the_table_scrolls_in_its_box(report_html, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(report_html.as_uri())
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    box = page.locator("#optimize .table-scroll").bounding_box()
    assert box["x"] + box["width"] <= 1280
    rows = page.locator("table.optimize tbody tr")
    assert rows.count() == 1 + len(TECHNIQUES.split(","))
    text = page.locator("#optimize").inner_text()
    assert re.search(r"\d[eE][+-]?\d", text) is None, "scientific notation on the page"
    assert "saving [interval]" in text and "(recommended)" in text
    # a long float such as 0.031110858569197083 never reaches the page
    assert re.search(r"\d\.\d{7,}", text) is None
    page.close()


def test_on_a_phone_the_table_stays_in_its_box(report_html, browser):
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(report_html.as_uri())
    box = page.locator("#optimize .table-scroll").bounding_box()
    assert box["x"] + box["width"] <= 390
    assert page.evaluate("document.querySelector('#optimize table.optimize').scrollWidth") > 390  # it scrolls
    page.close()
