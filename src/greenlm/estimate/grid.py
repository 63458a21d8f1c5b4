"""Carbon and cost factors for an estimate: grid intensity with its range, PUE, price.

Intensity comes from :func:`greenlm.carbon.resolve_location` (or the user's value in
kgCO2e/kWh). Its low/high bounds are the alternative values the shipped data hold for the
same place: for a country, the Our World in Data, Green Algorithms and (when shipped)
Electricity Maps figures; for a cloud region, the Ember country, eGRID subregion and
Electricity Maps figures; for a sub-national region, the non-preferred rows of that region.

PUE: the user's value, else the cloud provider's fleet PUE for a cloud-region location, else
a data-centre default (an estimate is for data-centre work; ``pue=1.0`` for a workstation).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from greenlm._validate import finite
from greenlm.carbon import CarbonConfig, GridIntensity
from greenlm.data import read_csv
from greenlm.estimate import defaults
from greenlm.estimate.uncertainty import Range


@dataclass(frozen=True)
class Factors:
    """Resolved carbon factors with ranges and sources."""

    location: GridIntensity
    intensity_g_per_kwh: Range
    intensity_source: str
    pue: Range
    pue_source: str
    price_per_kwh: float
    currency: str
    price_source: str
    warnings: tuple[str, ...]


def _f(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


@functools.cache
def alternate_intensities(code: str, region_type: str) -> tuple[float, ...]:
    """Other published intensities for the same place (g/kWh), from the shipped tables."""
    vals: list[float | None] = []
    key = code.upper()
    if region_type in ("country", "aggregate"):
        for r in read_csv("grid_intensity_country.csv"):
            if r["iso3"].upper() == key:
                vals += [
                    _f(r.get("alt_owid_gco2e_per_kwh")),
                    _f(r.get("alt_green_algorithms_gco2e_per_kwh")),
                ]
        for r in read_csv("grid_intensity_country_alt_odbl.csv", optional=True):
            if r["iso3"].upper() == key:
                vals += [
                    _f(r.get("alt_electricitymaps_2024_gco2e_per_kwh")),
                    _f(r.get("alt_electricitymaps_2025_gco2e_per_kwh")),
                ]
    elif region_type == "cloud_region":
        provider, _, region = code.partition(":")
        rows = read_csv("cloud_regions.csv") + read_csv("cloud_regions_odbl.csv", optional=True)
        for r in rows:
            if r["provider"].lower() == provider.lower() and r["region_id"].lower() == region.lower():
                vals += [
                    _f(r.get("alt_electricitymaps_2024_gco2e_per_kwh")),
                    _f(r.get("alt_ember_country_gco2e_per_kwh")),
                    _f(r.get("alt_egrid2022_subregion_gco2e_per_kwh")),
                ]
    else:
        rows = read_csv("grid_intensity_subnational.csv") + read_csv(
            "grid_intensity_subnational_odbl.csv", optional=True
        )
        vals += [_f(r["carbon_intensity_gco2e_per_kwh"]) for r in rows if r["region_code"].upper() == key]
    return tuple(v for v in vals if v is not None and v >= 0)


def resolve_factors(
    *,
    location: str | None = None,
    intensity_kg_per_kwh: float | None = None,
    pue: float | None = None,
    price_per_kwh: float | None = None,
    currency: str | None = None,
) -> Factors:
    """Intensity, PUE and price with ranges; raises ConfigError / LocationNotFoundError."""
    intensity_g = None
    if intensity_kg_per_kwh is not None:
        intensity_g = 1000.0 * finite(
            "intensity (kgCO2e/kWh)",
            intensity_kg_per_kwh,
            minimum=0.0,
            hint=" Give kgCO2e per kWh, e.g. 0.4.",
        )
    cfg = CarbonConfig.build(
        location=location,
        pue=pue,
        price_per_kwh=price_per_kwh,
        currency=currency,
        intensity_g_per_kwh=intensity_g,
    )
    loc = cfg.location
    warnings = list(cfg.warnings())
    value = loc.intensity_g_per_kwh
    if intensity_g is not None:
        ci = Range.exact(value)
        ci_src = "user value"
    else:
        alts = [a for a in alternate_intensities(loc.code, loc.region_type) if a > 0]
        lo, hi = min([value, *alts]), max([value, *alts])
        ci = Range(value, lo, hi)
        ci_src = f"{loc.name} ({loc.code}): {loc.source}, {loc.year}"
        if alts:
            ci_src += f"; range over {len(alts)} alternative published values for the same place"
    if pue is not None:
        pue_r, pue_src = Range.exact(cfg.pue.value), "user value"
    elif loc.cloud_provider:
        pue_r, pue_src = Range.exact(cfg.pue.value), cfg.pue.source
    else:
        d = defaults.pue_datacentre()
        pue_r, pue_src = d.range, d.source
    price_src = cfg.price.source
    if cfg.price.defaulted:
        where = loc.name if not loc.defaulted else "no location"
        in_us = (loc.country_iso3 or "").upper() == "USA" or loc.code.upper() in ("USA", "US")
        price_src = f"{cfg.price.source} ({cfg.price.per_kwh:g} {cfg.price.currency}/kWh): greenlm's one default" + (
            "; pass --price for your tariff" if in_us else f", not a price for {where}; pass --price and --currency"
        )
        if not in_us:
            warnings.append(
                f"The cost uses greenlm's default electricity price, {cfg.price.per_kwh:g} "
                f"{cfg.price.currency}/kWh (a US commercial average), not a price for {where}: pass "
                "--price/--currency (price_per_kwh=, currency=) for a real cost."
            )
    return Factors(
        location=loc,
        intensity_g_per_kwh=ci,
        intensity_source=ci_src,
        pue=pue_r,
        pue_source=pue_src,
        price_per_kwh=cfg.price.per_kwh,
        currency=cfg.price.currency,
        price_source=price_src,
        warnings=tuple(warnings),
    )
