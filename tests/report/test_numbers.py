"""Numbers for people in every text a person reads: summaries, tables, reports, estimates.

Runs from a milliwatt to ten megawatts go through ``greenlm runs show`` / ``runs list``'s
formatters, the HTML report and the estimator's text output: no figure in scientific
notation, and on one page (or summary) every energy in one unit and every CO2e in one unit.
JSON keeps full precision.
"""

from __future__ import annotations

import io
import json
import re
import time
from contextlib import redirect_stdout
from html.parser import HTMLParser
from pathlib import Path

import pytest

from greenlm.meters.fake import ReplayMeter
from greenlm.report.summary import run_summary, runs_table
from greenlm.store import open_store
from greenlm.tracking.tracker import EnergyTracker

EXPONENT = re.compile(r"(?<![0-9A-Za-z.])\d+(?:\.\d+)?[eE][-+]?\d+(?![0-9A-Za-z])")
ENERGY = re.compile(r"\d\s(µJ|mJ|J|Wh|kWh|MWh|GWh)(?![A-Za-z/])")
MASS = re.compile(r"\d\s(µg|mg|g|kg|t) CO2e(?![A-Za-z/])")


def _run(store: str, watts: float, project: str, location: str = "DEU"):
    t = EnergyTracker(
        meters=[ReplayMeter("gpu:0", "gpu", watts), ReplayMeter("ram", "ram", watts / 1000, provenance="modeled")],
        interval_s=0.05,
        store=store,
        project=project,
        location=location,
        total_steps=40,
    )
    with t:
        with t.phase("train"):
            for _ in range(8):
                time.sleep(0.02)
                t.step()
        with t.phase("eval"):
            time.sleep(0.03)
    return t.result


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("numbers")
    url = f"sqlite:///{d / 'runs.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GREENLM_HOME", str(d / "home"))
        results = [_run(url, 1e-3, "tiny"), _run(url, 250.0, "gpu", "FRA"), _run(url, 1e7, "huge", "USA")]
    return url, results


def _assert_for_people(text: str, what: str, one_unit: bool = True) -> None:
    hit = EXPONENT.search(text)
    assert hit is None, f"{what}: scientific notation: ...{text[max(0, hit.start() - 60) : hit.end() + 20]}"
    assert "CO2E" not in text
    if one_unit:
        assert len(set(ENERGY.findall(text))) <= 1, f"{what}: energies in {sorted(set(ENERGY.findall(text)))}"
        assert len(set(MASS.findall(text))) <= 1, f"{what}: CO2e in {sorted(set(MASS.findall(text)))}"


def test_run_summaries_and_the_runs_table(runs) -> None:
    url, results = runs
    store = open_store(url, read_only=True)
    for r in results:
        text = run_summary(store.get_run(r.run_id))
        _assert_for_people(text, f"runs show ({r.project})")
        assert ENERGY.search(text), "figures carry their unit"
    listed = store.list_runs()
    table = runs_table(listed)
    # one unit per column; the totals line is its own figure
    body, _, totals = table.rstrip().rpartition("\n")
    _assert_for_people(body, "runs list")
    _assert_for_people(totals, "runs list totals")
    # the tiny run reads in the table's unit, not as 0 and not as an exponent
    tiny = next(line for line in body.splitlines() if "tiny" in line)
    assert re.search(r"0\.0+[1-9]\d* (Wh|kWh|MWh)", tiny), tiny


def test_json_keeps_full_precision(runs) -> None:
    url, results = runs
    tiny = open_store(url, read_only=True).get_run(results[0].run_id).to_dict()
    assert tiny["energy_j"] == pytest.approx(results[0].energy_j, rel=1e-12)
    assert tiny["energy_j"] < 1e-3


class _Text(HTMLParser):
    """The text of an HTML page a person reads (not scripts, styles, code samples or forms)."""

    SKIP = {"script", "style", "code", "pre", "textarea"}

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in self.SKIP:
            self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self.depth:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if not self.depth:
            self.parts.append(data)


def _visible(html: str) -> str:
    p = _Text()
    p.feed(html)
    return " ".join(p.parts)


def test_html_report_of_every_magnitude(runs) -> None:
    pytest.importorskip("jinja2")
    from greenlm.report.html import render_report

    url, results = runs
    store = open_store(url, read_only=True)
    for r in results:
        stored = store.get_run(r.run_id)
        text = _visible(render_report([stored], {r.run_id: store.power_trace(r.run_id)}))
        # one run's report: the figures, tables and cards in one unit per quantity; the
        # equivalents' sources quote their own constants (0.019 kWh per charge)
        figures = text.split("Equivalents")[0]
        _assert_for_people(text, f"report ({r.project})", one_unit=False)
        _assert_for_people(figures, f"report figures ({r.project})")
    # one report of all three, a milliwatt beside ten megawatts: still one unit per quantity
    every = [store.get_run(r.run_id) for r in results]
    text = _visible(render_report(every, {r.run_id: store.power_trace(r.run_id) for r in results}))
    figures = re.sub(r"Equivalents.*?(?=Run [0-9a-f]{32}|Metadata)", " ", text, flags=re.S)
    _assert_for_people(figures, "report of three runs")


def test_estimate_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    from greenlm.cli import main

    plan = Path(__file__).resolve().parents[2] / "src/greenlm/estimate/examples/plan.yaml"
    for argv in (
        ["estimate", "train", "--params", "7e9", "--tokens", "2e12", "--hardware", "H100", "--chips", "256"],
        ["estimate", "finetune", "--params", "125e6", "--tokens", "1e7", "--hardware", "T4", "--explain"],
        ["estimate", "lifecycle", "--config", str(plan)],
        ["estimate", "compare", "--config", str(plan), "--locations", "FRA,USA,aws:us-east-1"],
    ):
        buf = io.StringIO()
        with redirect_stdout(buf):
            assert main(argv) == 0
        out = buf.getvalue()
        _assert_for_people(out.split("  inputs:")[0], " ".join(argv[:2]))
        _assert_for_people(out, " ".join(argv[:2]), one_unit=False)
    # the inputs read as counts: 7e9 parameters is "7.00 billion"
    buf = io.StringIO()
    with redirect_stdout(buf):
        main(["estimate", "train", "--params", "7e9", "--tokens", "2e12", "--hardware", "A100", "--explain"])
    assert "params = 7.00 billion" in buf.getvalue() and "tokens = 2.00 trillion" in buf.getvalue()
    j = io.StringIO()
    with redirect_stdout(j):
        main(["estimate", "train", "--params", "7e9", "--tokens", "2e12", "--hardware", "A100", "--json"])
    assert json.loads(j.getvalue())["inputs"]["params"]["value"] == 7e9, "JSON keeps the number"
