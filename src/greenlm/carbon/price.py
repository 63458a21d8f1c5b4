"""Electricity price used to turn facility kWh into money.

The default, 0.13 USD/kWh, is close to the US average retail price of electricity for the
commercial sector in 2024 (US EIA, Electric Power Monthly, table 5.3). Prices vary by a
factor of three or more between countries and contracts: pass your own with ``price_per_kwh``
(``--price``) and ``currency``. A defaulted price is flagged in the result.
"""

from __future__ import annotations

from dataclasses import dataclass

from greenlm._validate import finite

DEFAULT_PRICE_PER_KWH = 0.13
DEFAULT_CURRENCY = "USD"
DEFAULT_SOURCE = "default: approx. US EIA 2024 average commercial retail price"


@dataclass(frozen=True)
class Price:
    """Price per kWh, its currency and where it comes from."""

    per_kwh: float
    currency: str
    source: str
    defaulted: bool


def resolve_price(per_kwh: float | None, currency: str | None = None) -> Price:
    """A validated price; the documented default when ``per_kwh`` is None."""
    if per_kwh is None:
        return Price(DEFAULT_PRICE_PER_KWH, currency or DEFAULT_CURRENCY, DEFAULT_SOURCE, True)
    v = finite("price per kWh", per_kwh, minimum=0.0, hint=" Give the price in currency units per kWh, e.g. 0.25.")
    return Price(v, (currency or DEFAULT_CURRENCY).upper(), "user value", False)
