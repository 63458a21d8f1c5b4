"""Everyday equivalents of a run's energy and carbon, each with its derivation and source.

Equivalents make a number graspable; they are never shown instead of the physical units,
always beside them. Two of them are electricity (facility kWh, so they do not depend on the
grid), one is carbon (g CO2e, so it does):

``car_km``
    Kilometres driven by a typical gasoline passenger car. US EPA, "Greenhouse Gas
    Emissions from a Typical Passenger Vehicle", EPA-420-F-23-014 (June 2023): burning one US gallon of gasoline
    emits 8,887 g CO2 and a typical car covers about 22 miles on it, so about 400 g CO2 per
    mile, that is 400 / 1.609344 = 248.5 g CO2 per km (tailpipe only).
``phone_charges``
    Full charges of a smartphone. A 4,000 mAh battery at a nominal 3.85 V holds 15.4 Wh; at
    about 80 % charger-plus-battery efficiency one charge from empty draws 0.019 kWh from
    the wall.
``kettle_boils``
    Boiling one litre of water in an electric kettle. Heating 1 kg of water from 15 °C to
    100 °C takes 4.186 kJ/(kg K) x 85 K = 356 kJ (specific heat of water); at about 90 %
    kettle efficiency that is 396 kJ = 0.110 kWh.
"""

from __future__ import annotations

from dataclasses import dataclass

from greenlm import humanize

J_PER_KWH = 3.6e6

#: g CO2 per km, typical gasoline passenger car (US EPA 2023: 8,887 g/gal, ~400 g/mile).
CAR_CO2_G_PER_KM = 400.0 / 1.609344
#: kWh from the wall per smartphone charge (4,000 mAh x 3.85 V / 0.8).
PHONE_CHARGE_KWH = 4.0 * 3.85 / 0.8 / 1000.0
#: kWh to boil one litre of water from 15 °C (4.186 kJ/(kg K) x 85 K / 0.9).
KETTLE_BOIL_KWH = 4.186 * 85.0 / 0.9 / 3600.0


@dataclass(frozen=True)
class Equivalent:
    """One equivalent: how many, of what, from which quantity, and how it is derived."""

    key: str
    label: str
    value: float
    basis: str  # "co2e" or "energy"
    source: str

    def to_dict(self) -> dict[str, object]:
        return {"key": self.key, "label": self.label, "value": self.value, "basis": self.basis, "source": self.source}


SOURCES = {
    "car_km": (
        "US EPA, Tailpipe Greenhouse Gas Emissions from a Typical Passenger Vehicle, EPA-420-F-23-014 (June 2023): "
        "8,887 g CO2 per gallon, ~400 g CO2 per mile = 248.5 g CO2/km, tailpipe"
    ),
    "phone_charges": ("4,000 mAh x 3.85 V = 15.4 Wh battery, ~80 % charging efficiency: 0.019 kWh per full charge"),
    "kettle_boils": (
        "1 L of water from 15 to 100 °C: 4.186 kJ/(kg K) x 85 K = 356 kJ, ~90 % kettle efficiency: 0.110 kWh per boil"
    ),
}


def equivalents(facility_energy_j: float | None, co2e_g: float | None) -> list[Equivalent]:
    """Car km (from CO2e), smartphone charges and kettle boils (from facility energy)."""
    kwh = max(float(facility_energy_j or 0.0), 0.0) / J_PER_KWH
    g = max(float(co2e_g or 0.0), 0.0)
    return [
        Equivalent("car_km", "km driven by an average gasoline car", g / CAR_CO2_G_PER_KM, "co2e", SOURCES["car_km"]),
        Equivalent("phone_charges", "smartphone charges", kwh / PHONE_CHARGE_KWH, "energy", SOURCES["phone_charges"]),
        Equivalent("kettle_boils", "kettle boils (1 litre)", kwh / KETTLE_BOIL_KWH, "energy", SOURCES["kettle_boils"]),
    ]


def fmt_count(x: float) -> str:
    """A count for people: 3 significant figures, thousands separated, never an exponent."""
    return humanize.count(x)


#: Singular and plural of what each equivalent counts (``car_km`` is a distance instead).
UNITS = {
    "phone_charges": ("of a smartphone charge", "smartphone charges"),
    "kettle_boils": ("of a kettle boil (1 litre)", "kettle boils (1 litre)"),
}


def equivalent_text(e: Equivalent) -> tuple[str, str]:
    """What a page shows of an equivalent: ``(value, label)``.

    ``("195 m", "driven by an average gasoline car")``, ``("12.3", "smartphone charges")``,
    ``("4.56 %", "of a smartphone charge")``: a distance for the car, a percentage of one
    below one, a count above.
    """
    if e.key == "car_km":
        return humanize.distance(e.value * 1000.0), "driven by an average gasoline car"
    one, many = UNITS.get(e.key, (e.label, e.label))
    if 0 < e.value < 1:
        return humanize.percent(e.value), one
    return humanize.count(e.value), many
