from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "src" / "greenlm"


def test_dashboard_and_report_assets_are_package_data() -> None:
    """Every template and static file matches a package-data glob, so it ships in the wheel."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["greenlm"]
    files = [
        p
        for d in ("server/static", "server/templates", "report/templates")
        for p in (PKG / d).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]
    assert any(p.name == "chart.umd.min.js" for p in files)
    for f in files:
        rel = f.relative_to(PKG)
        assert any(rel.match(g) or PKG.joinpath(rel) in set(PKG.glob(g)) for g in globs), rel


def test_vendored_chart_js_is_pinned_and_licensed() -> None:
    vendor = PKG / "server" / "static" / "vendor"
    head = (vendor / "chart.umd.min.js").read_text(encoding="utf-8")[:200]
    assert "Chart.js v4" in head and "MIT" in head
    assert "MIT" in (vendor / "chart.js.LICENSE.md").read_text(encoding="utf-8")
    pinned = (ROOT / "package.json").read_text()
    assert '"chart.js": "' in pinned and head.split("Chart.js v")[1].split()[0] in pinned
