"""Carbon accounting: grid intensity by location, PUE, electricity price.

Turns joules into facility kWh, grams of CO2e and money. Never imports the store.
"""

from __future__ import annotations

from greenlm.carbon.accounting import CarbonConfig, Footprint, account
from greenlm.carbon.intensity import GridIntensity, known_locations, resolve_location, suggest_locations
from greenlm.carbon.price import Price, resolve_price
from greenlm.carbon.pue import Pue, resolve_pue

__all__ = [
    "CarbonConfig",
    "Footprint",
    "GridIntensity",
    "Price",
    "Pue",
    "account",
    "known_locations",
    "resolve_location",
    "resolve_price",
    "resolve_pue",
    "suggest_locations",
]
