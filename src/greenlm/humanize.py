"""Numbers for people: a unit chosen by magnitude, three significant figures, no exponent.

Every figure greenlm shows to a person (terminal tables, summaries, the dashboard, HTML
reports, optimize tables) goes through these functions; JSON keeps full precision. The
units: energy J / Wh / kWh / MWh / GWh (below 1 J: mJ, µJ), mass mg / g / kg / t, power
mW / W / kW / MW, duration ms / s / min / h / d, distance m / km, counts with thousand,
million, billion, trillion. A value with no unit of its own (a ratio, a price) keeps three
significant figures in plain decimal notation.

For one page that lists several figures of one quantity, :func:`energy_unit` picks the unit
of the largest and ``energy(x, unit=...)`` writes all of them in it ("the same unit for the
same quantity on one page").
"""

from __future__ import annotations

import math

__all__ = [
    "co2e",
    "count",
    "distance",
    "duration",
    "energy",
    "energy_unit",
    "mass",
    "mass_unit",
    "money",
    "percent",
    "power",
    "sig",
]

#: (unit, size in joules), largest first.
ENERGY_UNITS: tuple[tuple[str, float], ...] = (
    ("GWh", 3.6e12),
    ("MWh", 3.6e9),
    ("kWh", 3.6e6),
    ("Wh", 3.6e3),
    ("J", 1.0),
    ("mJ", 1e-3),
    ("µJ", 1e-6),
)
#: (unit, size in grams), largest first.
MASS_UNITS: tuple[tuple[str, float], ...] = (("t", 1e6), ("kg", 1e3), ("g", 1.0), ("mg", 1e-3), ("µg", 1e-6))
POWER_UNITS: tuple[tuple[str, float], ...] = (("MW", 1e6), ("kW", 1e3), ("W", 1.0), ("mW", 1e-3))
DISTANCE_UNITS: tuple[tuple[str, float], ...] = (("km", 1e3), ("m", 1.0), ("mm", 1e-3))


def sig(x: float | int | None, digits: int = 3) -> str:
    """``x`` to ``digits`` significant figures in plain decimal notation (never ``1e-05``).

    Integers of more digits keep them (``12345`` -> ``12,345``), with thousands separators.
    ``None`` and non-finite values read ``-`` (not measured) or ``inf``/``nan`` spelled out.
    """
    if x is None:
        return "-"
    v = float(x)
    if math.isnan(v):
        return "not a number"
    if math.isinf(v):
        return "infinite" if v > 0 else "-infinite"
    if v == 0:
        return "0"
    mag = math.floor(math.log10(abs(v)))
    decimals = max(0, digits - 1 - mag)
    rounded = round(v, decimals)
    if decimals == 0:
        return f"{round(rounded):,}"
    # round() can carry into the next magnitude (9.996 -> 10.0): recompute the decimals
    mag2 = math.floor(math.log10(abs(rounded))) if rounded else mag
    decimals = max(0, digits - 1 - mag2)
    text = f"{rounded:,.{decimals}f}"
    return text


def _scaled(x: float | None, units: tuple[tuple[str, float], ...], unit: str | None, digits: int) -> str:
    if x is None:
        return "-"
    v = float(x)
    if not math.isfinite(v):
        return sig(v)
    if unit is None:
        unit = _pick(abs(v), units)
    size = dict(units)[unit]
    return f"{sig(v / size, digits)} {unit}"


def _pick(v: float, units: tuple[tuple[str, float], ...]) -> str:
    if v == 0:
        # zero reads in the base unit (the one of size 1)
        return next(u for u, s in units if s == 1.0)
    for u, s in units:
        if v >= s * 0.9995:  # 999.6 J rounds to 1,000 J: show 1.00 kJ-like units instead
            return u
    return units[-1][0]


def energy_unit(values_j: list[float | None] | tuple[float | None, ...]) -> str:
    """The unit that suits the largest of ``values_j`` (for a table or page of energies)."""
    finite = [abs(float(v)) for v in values_j if v is not None and math.isfinite(float(v))]
    return _pick(max(finite) if finite else 0.0, ENERGY_UNITS)


def mass_unit(values_g: list[float | None] | tuple[float | None, ...]) -> str:
    """The unit that suits the largest of ``values_g``."""
    finite = [abs(float(v)) for v in values_g if v is not None and math.isfinite(float(v))]
    return _pick(max(finite) if finite else 0.0, MASS_UNITS)


def energy(joules: float | None, unit: str | None = None, digits: int = 3) -> str:
    """``83.7 J``, ``42.2 Wh``, ``1.52 kWh``, ``3.1 MWh`` (or in the given ``unit``)."""
    return _scaled(joules, ENERGY_UNITS, unit, digits)


def mass(grams: float | None, unit: str | None = None, digits: int = 3, suffix: str = "") -> str:
    """``12.3 mg``, ``4.56 g``, ``7.89 kg``, ``1.2 t`` (``suffix``: e.g. `` CO2e``)."""
    return _scaled(grams, MASS_UNITS, unit, digits) + suffix


def co2e(grams: float | None, unit: str | None = None) -> str:
    """A mass of CO2-equivalent: ``12.3 g CO2e``."""
    return mass(grams, unit, suffix=" CO2e")


def power(watts: float | None, unit: str | None = None, digits: int = 3) -> str:
    """``350 mW``, ``42.1 W``, ``3.2 kW``."""
    return _scaled(watts, POWER_UNITS, unit, digits)


def distance(meters: float | None, digits: int = 3) -> str:
    """``195 mm``, ``42 m``, ``1.5 km``."""
    return _scaled(meters, DISTANCE_UNITS, None, digits)


def duration(seconds: float | None) -> str:
    """``0.46 s``, ``12.3 s``, ``4 min 05 s``, ``2 h 07 min``, ``3 d 4 h``."""
    if seconds is None:
        return "-"
    s = float(seconds)
    if not math.isfinite(s):
        return sig(s)
    if s < 0:
        return "-" + duration(-s)
    if s < 1e-3:
        return f"{sig(s * 1e6)} µs"
    if s < 1.0:
        return f"{sig(s * 1e3)} ms" if s < 0.1 else f"{sig(s)} s"
    if s < 60:
        return f"{sig(s)} s"
    m, sec = divmod(round(s), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h} h {m:02d} min"
    d, h = divmod(h, 24)
    return f"{d} d {h} h"


def count(n: float | int | None) -> str:
    """``950``, ``12,345``, ``125 million``, ``7 billion``, ``2 trillion`` (model sizes, tokens)."""
    if n is None:
        return "-"
    v = float(n)
    if not math.isfinite(v):
        return sig(v)
    for word, size in (("quadrillion", 1e15), ("trillion", 1e12), ("billion", 1e9), ("million", 1e6)):
        if abs(v) >= size:
            return f"{sig(v / size)} {word}"
    if v == int(v):
        return f"{int(v):,}"
    return sig(v)


def money(amount: float | None, currency: str | None = None) -> str:
    """``12.76 USD``, ``0.0312 EUR``; amounts of a cent or more keep two decimals."""
    if amount is None:
        return "-"
    v = float(amount)
    cur = f" {currency}" if currency else ""
    if not math.isfinite(v):
        return sig(v) + cur
    if abs(v) >= 0.01 or v == 0:
        return f"{v:,.2f}{cur}"
    return f"{sig(v)}{cur}"


def percent(fraction: float | None, digits: int = 3) -> str:
    """A fraction as a percentage: ``0.0481`` -> ``4.81 %``."""
    if fraction is None:
        return "-"
    return f"{sig(float(fraction) * 100, digits)} %"
