"""What people read: units by magnitude, three significant figures, never an exponent."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenlm import humanize as H


@pytest.mark.parametrize(
    ("joules", "text"),
    [
        (83.7, "83.7 J"),
        (0.152, "152 mJ"),
        (547.2, "547 J"),
        (3600.0, "1.00 Wh"),
        (0.000152 * 3.6e6, "547 J"),
        (2.32e-05 * 3.6e6, "83.5 J"),
        (1.52 * 3.6e6, "1.52 kWh"),
        (999.0 * 3.6e9, "999 MWh"),
        (1234.5 * 3.6e9, "1.23 GWh"),
        (12.76e3 * 3.6e9, "12.8 GWh"),
        (0.0, "0 J"),
        (None, "-"),
    ],
)
def test_energy_is_scaled_to_its_magnitude(joules, text):
    assert H.energy(joules) == text


def test_one_unit_for_one_quantity_on_a_page():
    values = [83.7, 3.6e6 * 0.5, 12.0]
    unit = H.energy_unit(values)
    assert unit == "Wh"
    assert [H.energy(v, unit) for v in values] == ["0.0232 Wh", "500 Wh", "0.00333 Wh"]


@pytest.mark.parametrize(
    ("grams", "text"),
    [(1.95e-4, "195 µg"), (0.0123, "12.3 mg"), (4.56, "4.56 g"), (7890.0, "7.89 kg"), (1.2e6, "1.20 t")],
)
def test_mass(grams, text):
    assert H.mass(grams) == text
    assert H.co2e(grams) == text + " CO2e"


def test_money_duration_count_percent():
    assert H.money(1.97e-05, "USD") == "0.0000197 USD"
    assert H.money(12760.0, "USD") == "12,760.00 USD"
    assert H.duration(0.46) == "0.460 s"
    assert H.duration(0.004) == "4.00 ms"
    assert H.duration(65) == "1 min 05 s"
    assert H.duration(7500) == "2 h 05 min"
    assert H.count(7e9) == "7.00 billion"
    assert H.count(125e6) == "125 million"
    assert H.count(12345) == "12,345"
    assert H.percent(4.8160552978515625e-05) == "0.00482 %"
    assert H.distance(1.95e-4 * 1e3) == "195 mm"


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e30, max_value=1e30))
def test_no_exponent_ever_and_three_significant_figures(x):
    for text in (H.sig(x), H.energy(x), H.mass(x), H.power(x), H.count(x), H.money(x, "EUR")):
        assert "e+" not in text and "e-" not in text and "E" not in text.replace("EUR", ""), text
    s = H.sig(x)
    if x != 0 and abs(x) < 1e3:
        digits = s.replace("-", "").replace(",", "").replace(".", "").lstrip("0")
        assert len(digits) == 3, s
        assert float(s.replace(",", "")) == pytest.approx(x, rel=5e-3)


def test_non_finite_is_spelled_out():
    assert H.sig(math.inf) == "infinite"
    assert H.energy(math.nan) == "not a number"
