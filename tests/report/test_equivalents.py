from __future__ import annotations

import pytest

from greenlm.report.equivalents import (
    CAR_CO2_G_PER_KM,
    KETTLE_BOIL_KWH,
    PHONE_CHARGE_KWH,
    equivalent_text,
    equivalents,
    fmt_count,
)


def test_constants_follow_their_documented_derivations() -> None:
    assert pytest.approx(248.5, abs=0.1) == CAR_CO2_G_PER_KM  # 400 g/mile
    assert pytest.approx(0.01925, rel=1e-3) == PHONE_CHARGE_KWH  # 4,000 mAh x 3.85 V / 0.8
    assert pytest.approx(0.1098, rel=1e-3) == KETTLE_BOIL_KWH  # 4.186 kJ/(kg K) x 85 K / 0.9


def test_equivalents_scale_with_energy_and_carbon() -> None:
    eq = {e.key: e for e in equivalents(facility_energy_j=3.6e6, co2e_g=248.5)}
    assert eq["car_km"].value == pytest.approx(1.0, rel=1e-3)
    assert eq["car_km"].basis == "co2e"
    assert eq["phone_charges"].value == pytest.approx(1 / PHONE_CHARGE_KWH)
    assert eq["kettle_boils"].value == pytest.approx(1 / KETTLE_BOIL_KWH)
    assert all(e.source for e in eq.values())


def test_missing_or_negative_inputs_give_zero() -> None:
    assert all(e.value == 0 for e in equivalents(None, None))
    assert all(e.value == 0 for e in equivalents(-5, -1))


def test_fmt_count() -> None:
    assert fmt_count(0) == "0"
    assert fmt_count(12345.6) == "12,346"
    assert fmt_count(3.14159) == "3.14"
    assert fmt_count(0.000123) == "0.000123", "no exponent for people"


def test_equivalent_text_reads_as_a_sentence() -> None:
    small = {e.key: equivalent_text(e) for e in equivalents(facility_energy_j=300.0, co2e_g=0.05)}
    assert small["car_km"] == ("201 mm", "driven by an average gasoline car")  # 0.05 g / 248.5 g/km
    assert small["phone_charges"] == ("0.433 %", "of a smartphone charge")  # 300 J / 0.01925 kWh
    big = {e.key: equivalent_text(e) for e in equivalents(facility_energy_j=3.6e9, co2e_g=4e5)}
    assert big["car_km"] == ("1,609 km", "driven by an average gasoline car")
    assert big["kettle_boils"] == ("9,106", "kettle boils (1 litre)")  # 1,000 kWh / 0.1098 kWh
