"""Shipped data is inside the built wheel, with its sources and licence notice."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (whl,) = out.glob("greenlm-*.whl")
    return zipfile.ZipFile(whl)


def test_reference_data_and_licences_ship_in_the_wheel(wheel):
    names = set(wheel.namelist())
    for f in (
        "grid_intensity_country.csv",
        "grid_intensity_subnational.csv",
        "cloud_regions.csv",
        "pue.csv",
        "cpus.csv",
        "accelerators.csv",
        "grid_intensity_subnational_odbl.csv",
        "DATA_LICENSES.md",
    ):
        assert f"greenlm/data/{f}" in names, f
    assert "greenlm/py.typed" in names
    assert "greenlm/estimate/examples/plan.yaml" in names
    assert "greenlm/server/static/vendor/chart.umd.min.js" in names  # dashboard works offline
    assert "greenlm/report/templates/report.html" in names
    notice = wheel.read("greenlm/data/DATA_LICENSES.md").decode()
    assert "ODbL" in notice and "CC BY 4.0" in notice


def test_every_shipped_row_names_its_source():
    import csv

    data = ROOT / "src" / "greenlm" / "data"
    for f, col in [
        ("grid_intensity_country.csv", "source"),
        ("grid_intensity_subnational.csv", "source"),
        ("cloud_regions.csv", "intensity_source"),
        ("pue.csv", "source"),
        ("cpus.csv", "source"),
        ("accelerators.csv", "spec_source"),
    ]:
        rows = list(csv.DictReader((data / f).open(encoding="utf-8")))
        assert rows and all(r[col].strip() for r in rows), f


def test_greenlm_works_without_the_odbl_files(tmp_path, monkeypatch):
    import greenlm.data
    from greenlm.carbon import intensity

    real = greenlm.data._read.__wrapped__

    def no_odbl(name, optional):
        if "odbl" in name:
            return ()
        return real(name, optional)

    monkeypatch.setattr(greenlm.data, "_read", no_odbl)
    intensity._index.cache_clear()
    try:
        assert intensity.resolve_location("DEU").intensity_g_per_kwh > 0
        assert intensity.resolve_location("gcp:europe-west4").cloud_provider == "gcp"
    finally:
        intensity._index.cache_clear()
