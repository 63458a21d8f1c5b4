from pathlib import Path

import pytest

from greenlm.estimate.validation import (
    MODES,
    THRESHOLDS_PCT,
    parse_tokens,
    power_basis_kind,
    read_rows,
    render_markdown,
    validate,
)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "footprints_dev.csv"


@pytest.fixture(scope="module")
def report():
    return validate(read_rows(DATA))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("quantity", ["energy", "co2"])
def test_mape_does_not_regress(report, mode, quantity):
    mape, n = report.mape(mode, quantity)
    assert n >= 3, f"mode {mode} {quantity}: only {n} rows evaluated"
    assert mape <= THRESHOLDS_PCT[(mode, quantity)], (
        f"mode {mode} {quantity} MAPE {mape:.2f}% is past the threshold "
        f"{THRESHOLDS_PCT[(mode, quantity)]}% (see docs/validation.md)"
    )


def test_mode_a_reproduces_every_published_row_closely(report):
    for o in report.outcomes:
        if o.mode == "A" and not o.skipped:
            assert abs(o.energy_error_pct or 0) < 2, o
            assert abs(o.co2_error_pct or 0) < 2, o


def test_skipped_rows_say_why(report):
    skipped = [o for o in report.outcomes if o.skipped]
    assert skipped
    assert all(len(o.skipped) > 10 for o in skipped)


def test_parsers():
    assert parse_tokens("300B") == 3e11
    assert parse_tokens("15T+") == 1.5e13
    assert parse_tokens("'6K' (table4.csv) / 7000 (database.csv), in billions") is None
    assert power_basis_kind("TDP of NVLink A100 systems") == "tdp"
    assert power_basis_kind("measured system average power") == "measured"
    assert power_basis_kind("assumed average power per GPU") == "other"


def test_docs_page_is_up_to_date(report):
    page = ROOT / "docs" / "validation.md"
    expected = render_markdown(report, THRESHOLDS_PCT, "tests/data/footprints_dev.csv")
    assert page.read_text(encoding="utf-8") == expected, (
        "docs/validation.md is stale: run python scripts/validate_estimator.py"
    )
