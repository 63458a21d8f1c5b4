"""Grid carbon intensity by location: countries, sub-national regions, cloud regions.

Codes accepted (case-insensitive):

* ISO 3166 country, alpha-2 or alpha-3 (``DE``, ``DEU``), and Ember aggregates (``WORLD``,
  ``EU27``);
* sub-national regions (``US-CA``, ``EGRID-CAMX``, ``CA-QC``, ``AU-NSW``, ``US-CAL-CISO``,
  ``JP-TK``...), the row marked preferred in the data;
* cloud regions as ``provider:region`` (``aws:us-east-1``, ``gcp:europe-west4``,
  ``azure:westeurope``).

Every answer is a :class:`GridIntensity` that names the row used: its source, year, basis and
licence. No location means the world average, with ``defaulted=True``.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass

from greenlm.data import read_csv
from greenlm.errors import LocationNotFoundError

WORLD_CODE = "WORLD"


@dataclass(frozen=True)
class GridIntensity:
    """The carbon intensity used for a location, and where it comes from."""

    code: str
    name: str
    intensity_g_per_kwh: float
    source: str
    year: int | None
    basis: str
    license: str
    region_type: str
    defaulted: bool = False
    cloud_provider: str | None = None
    country_iso3: str | None = None

    def to_dict(self) -> dict[str, object]:
        """The ``location`` object of the result JSON."""
        return {
            "code": self.code,
            "name": self.name,
            "intensity_g_per_kwh": self.intensity_g_per_kwh,
            "source": self.source,
            "year": self.year,
            "basis": self.basis,
            "license": self.license,
            "region_type": self.region_type,
            "defaulted": self.defaulted,
            "cloud_provider": self.cloud_provider,
        }


def _year(text: str) -> int | None:
    try:
        return int(float(text))
    except ValueError:
        return None


@functools.lru_cache(maxsize=1)
def _index() -> dict[str, GridIntensity]:
    idx: dict[str, GridIntensity] = {}
    countries = read_csv("grid_intensity_country.csv") + read_csv("grid_intensity_country_odbl.csv", optional=True)
    for r in countries:
        g = GridIntensity(
            code=r["iso3"],
            name=r["country_name"],
            intensity_g_per_kwh=float(r["carbon_intensity_gco2e_per_kwh"]),
            source=r["source"],
            year=_year(r["year"]),
            basis=r["basis"],
            license=r["license"],
            region_type=r["region_type"],
            country_iso3=r["iso3"] if r["region_type"] == "country" else None,
        )
        idx[r["iso3"].upper()] = g
        if r["iso2"]:
            idx.setdefault(r["iso2"].upper(), g)
    sub = read_csv("grid_intensity_subnational.csv") + read_csv("grid_intensity_subnational_odbl.csv", optional=True)
    # One preferred row per region; if the preferred row was stripped (ODbL), take the newest.
    best: dict[str, dict[str, str]] = {}
    for r in sub:
        code = r["region_code"].upper()
        cur = best.get(code)
        if (
            cur is None
            or (r["is_preferred"] == "1" and cur["is_preferred"] != "1")
            or (r["is_preferred"] == cur["is_preferred"] and (_year(r["year"]) or 0) > (_year(cur["year"]) or 0))
        ):
            best[code] = r
    for code, r in best.items():
        if r["region_type"] == "country_reference" and code in idx:
            continue
        idx[code] = GridIntensity(
            code=r["region_code"],
            name=r["region_name"],
            intensity_g_per_kwh=float(r["carbon_intensity_gco2e_per_kwh"]),
            source=r["source"],
            year=_year(r["year"]),
            basis=r["basis"],
            license=r["license"],
            region_type=r["region_type"],
            country_iso3=r["country_iso3"] or None,
        )
    cloud = read_csv("cloud_regions.csv") + read_csv("cloud_regions_odbl.csv", optional=True)
    for r in cloud:
        code = f"{r['provider']}:{r['region_id']}"
        lic = (
            "ODbL-1.0 (Electricity Maps)"
            if "Electricity Maps" in r["intensity_source"]
            else ("Apache-2.0 (GoogleCloudPlatform/region-carbon-info)")
        )
        idx[code.upper()] = GridIntensity(
            code=code,
            name=f"{r['region_name']} ({r['location']})",
            intensity_g_per_kwh=float(r["carbon_intensity_gco2e_per_kwh"]),
            source=r["intensity_source"],
            year=_year(r["intensity_year"]),
            basis=r["intensity_basis"],
            license=lic,
            region_type="cloud_region",
            cloud_provider=r["provider"],
            country_iso3=r["country_iso3"] or None,
        )
    return idx


def _normalise(code: str) -> str:
    c = code.strip().upper().replace("_", "-")
    if ":" in c:
        provider, _, region = c.partition(":")
        provider = {"GOOGLE": "GCP", "AMAZON": "AWS", "MICROSOFT": "AZURE"}.get(provider, provider)
        c = f"{provider.lower()}:{region.lower()}".upper()
    return c


def known_locations() -> list[GridIntensity]:
    """Every distinct location greenlm knows, sorted by code."""
    seen: dict[str, GridIntensity] = {}
    for g in _index().values():
        seen.setdefault(g.code, g)
    return sorted(seen.values(), key=lambda g: g.code)


def resolve_location(code: str | None) -> GridIntensity:
    """The grid intensity for ``code``; the world average (``defaulted``) when ``None``.

    Raises :class:`LocationNotFoundError` with close matches for an unknown code.
    """
    idx = _index()
    if code is None or not str(code).strip():
        world = idx[WORLD_CODE]
        return GridIntensity(**{**world.__dict__, "defaulted": True})
    key = _normalise(str(code))
    hit = idx.get(key)
    if hit is not None:
        return hit
    raise LocationNotFoundError(str(code), suggest_locations(str(code)))


def suggest_locations(code: str, n: int = 5) -> list[str]:
    """Close matches for a mistyped location, by code and by name."""
    idx = _index()
    key = _normalise(code)
    by_code = difflib.get_close_matches(key, list(idx), n=n, cutoff=0.6)
    names = {g.name.upper(): g.code for g in idx.values()}
    by_name = [names[m] for m in difflib.get_close_matches(code.upper(), list(names), n=n, cutoff=0.6)]
    # Substring matches on the name help for "germany" / "virginia".
    sub = [g.code for g in idx.values() if len(code) >= 4 and code.upper() in g.name.upper()]
    out: list[str] = []
    for c in [*(idx[k].code for k in by_code), *by_name, *sub]:
        if c not in out:
            out.append(c)
    return out[:n]
