from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from greenlm.cli import main
from greenlm.report.html import render_report, script_json
from greenlm.store import open_store
from tests.server.helpers import XSS

OPTIMIZE = {
    "model": "minilm <b>bold</b>",
    "task": "embedding",
    "baseline": "fp32",
    "variants": [
        {
            "name": "fp32",
            "technique": "baseline",
            "params": {},
            "energy_j_per_1k": 100.0,
            "energy_j_per_token": None,
            "latency_p50_ms": 5.0,
            "latency_p95_ms": 6.0,
            "throughput_per_s": 200.0,
            "peak_memory_mb": 300.0,
            "size_mb": 90.0,
            "quality": {"metric": "cosine", "value": 1.0},
            "fidelity": {"metric": "cosine", "value": 1.0},
            "quality_drop": 0.0,
            "provenance": "modeled",
            "repeats": 5,
            "spread": {},
            "skipped_reason": None,
        },
        {
            "name": "int8",
            "technique": "quantize",
            "params": {"bits": 8},
            "energy_j_per_1k": 40.0,
            "energy_j_per_token": None,
            "latency_p50_ms": 2.0,
            "latency_p95_ms": 3.0,
            "throughput_per_s": 500.0,
            "peak_memory_mb": 150.0,
            "size_mb": 25.0,
            "quality": {"metric": "cosine", "value": 0.995},
            "fidelity": {"metric": "cosine", "value": 0.995},
            "quality_drop": 0.005,
            "provenance": "modeled",
            "repeats": 5,
            "spread": {},
            "skipped_reason": None,
        },
        {
            "name": "prune:0.9",
            "technique": "prune",
            "params": {"sparsity": 0.9},
            "energy_j_per_1k": None,
            "quality": None,
            "fidelity": None,
            "provenance": None,
            "repeats": 0,
            "spread": {},
            "skipped_reason": "<img src=x onerror=alert(2)> not applicable",
        },
    ],
    "recommendation": {
        "variant": "int8",
        "energy_ratio": 2.5,
        "quality_drop": 0.005,
        "kwh_saved_per_million": 0.0167,
        "co2e_g_saved_per_million": 0.74,
        "energy_metric": "energy_j_per_1k",
        "location": "FRA",
        "intensity_g_per_kwh": 44.2,
        "pue": 1.0,
        "reason": "lowest energy within budget",
    },
    "max_quality_drop": 0.01,
    "device": "cpu",
    "settings": {},
    "provenance_notes": {},
    "warnings": [],
}


def _all(store: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    st = open_store(store["url"], read_only=True)
    runs = st.list_runs()
    return runs, {r.run_id: st.power_trace(r.run_id) for r in runs}


def _assert_self_contained(html: str) -> None:
    assert not re.search(r"<script[^>]+src=", html), "scripts must be inline"
    assert not re.search(r"<link[^>]+href=[\"']https?:", html), "no external styles"
    assert "cdn" not in html.lower().replace("cdn.js", "")
    assert "Chart.js v4" in html  # the vendored library is inlined


def test_report_of_runs_is_self_contained_and_escapes_user_input(report_store: dict[str, Any]) -> None:
    runs, samples = _all(report_store)
    html = render_report(runs, samples)
    _assert_self_contained(html)
    for r in runs:
        assert r.run_id in html
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # chart data sits in a JSON script element and cannot close it
    m = re.search(r'<script type="application/json" id="greenlm-charts">(.*?)</script>', html, re.S)
    assert m is not None
    specs = json.loads(m.group(1))
    assert {"compare-energy", "compare-co2e", "r0-power"} <= set(specs)
    # every figure carries its provenance and the intensity source
    assert "Ember" in html and "modeled" in html


def test_script_json_cannot_break_out() -> None:
    s = script_json({"x": "</script><script>alert(1)</script>", "n": float("nan")})
    assert "</script>" not in s and "<" not in s
    assert json.loads(s) == {"x": "</script><script>alert(1)</script>", "n": None}


def test_report_cli_runs(report_store: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = report_store["results"][0]
    out = tmp_path / "r.html"
    assert main(["report", first.run_id[:8], "--store", report_store["url"], "-o", str(out)]) == 0
    html = out.read_text()
    _assert_self_contained(html)
    assert first.run_id in html
    assert "wrote" in capsys.readouterr().out


def test_report_cli_project(report_store: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "p.html"
    assert main(["report", "--project", "alpha", "--store", report_store["url"], "-o", str(out)]) == 0
    html = out.read_text()
    alpha = [r.run_id for r in report_store["results"] if r.project == "alpha"]
    assert all(rid in html for rid in alpha)
    assert 'id="compare"' in html


def test_report_cli_optimize(tmp_path: Path) -> None:
    d = tmp_path / "opt"
    d.mkdir()
    (d / "optimize.json").write_text(json.dumps(OPTIMIZE))
    out = tmp_path / "o.html"
    assert main(["report", "--optimize", str(d), "-o", str(out)]) == 0
    html = out.read_text()
    _assert_self_contained(html)
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "<img src=x" not in html
    assert "2.50x" in html  # baseline / int8 energy
    assert '"pareto"' in html


def test_report_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "-o", str(tmp_path / "x.html")]) == 2
    assert "Nothing to report" in capsys.readouterr().err
    assert main(["report", "--optimize", str(tmp_path), "-o", str(tmp_path / "x.html")]) == 2
    assert "No optimize results" in capsys.readouterr().err
    assert (
        main(["report", "nosuchrun", "--store", f"sqlite:///{tmp_path / 'e.db'}", "-o", str(tmp_path / "x.html")]) == 2
    )


def test_report_cli_estimate(tmp_path: Path) -> None:
    est = pytest.importorskip("greenlm.estimate")
    if not hasattr(est, "load_plan"):
        pytest.skip("greenlm.estimate has no plans yet")
    from importlib import resources

    plan = resources.files("greenlm.estimate").joinpath("examples").joinpath("plan.yaml")
    if not plan.is_file():
        pytest.skip("no example plan shipped")
    out = tmp_path / "e.html"
    assert main(["report", "--estimate", str(plan), "--locations", "FRA,USA", "-o", str(out)]) == 0
    html = out.read_text()
    _assert_self_contained(html)
    assert "Composite score" in html and "lc-co2e" in html
    assert "United States" in html
