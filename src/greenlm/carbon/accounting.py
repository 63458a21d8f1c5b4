"""From IT energy to facility energy, CO2e and cost, with the provenance of each factor."""

from __future__ import annotations

from dataclasses import dataclass

from greenlm.carbon.intensity import GridIntensity, resolve_location
from greenlm.carbon.price import Price, resolve_price
from greenlm.carbon.pue import Pue, resolve_pue

J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class CarbonConfig:
    """Resolved carbon settings: built once (validated), shared by tracker, CLI and estimator."""

    location: GridIntensity
    pue: Pue
    price: Price

    @classmethod
    def build(
        cls,
        location: str | None = None,
        pue: float | None = None,
        pue_setting: str = "auto",
        price_per_kwh: float | None = None,
        currency: str | None = None,
        intensity_g_per_kwh: float | None = None,
    ) -> CarbonConfig:
        """Resolve and validate every factor; raises ConfigError / LocationNotFoundError."""
        loc = resolve_location(location)
        if intensity_g_per_kwh is not None:
            from greenlm._validate import finite

            v = finite("carbon intensity (g/kWh)", intensity_g_per_kwh, minimum=0.0)
            loc = GridIntensity(
                code=loc.code if location else "CUSTOM",
                name=loc.name if location else "user-supplied intensity",
                intensity_g_per_kwh=v,
                source="user value",
                year=None,
                basis="user value",
                license="",
                region_type="custom",
                defaulted=False,
                cloud_provider=loc.cloud_provider,
            )
        return cls(
            location=loc,
            pue=resolve_pue(pue, pue_setting, loc.cloud_provider),
            price=resolve_price(price_per_kwh, currency),
        )

    def warnings(self) -> list[str]:
        """Fallbacks this configuration took, to be recorded in each result."""
        out = []
        if self.location.defaulted:
            out.append(
                f"No location given: used the world average grid intensity "
                f"({self.location.intensity_g_per_kwh:g} g/kWh, {self.location.year}). "
                "Pass location= / --location or set GREENLM_LOCATION for a real figure."
            )
        return out


@dataclass(frozen=True)
class Footprint:
    """IT energy turned into facility energy, CO2e and cost."""

    energy_j: float
    facility_energy_j: float
    energy_kwh: float
    co2e_g: float
    cost: float
    currency: str


def account(energy_j: float, cfg: CarbonConfig) -> Footprint:
    """Facility energy = IT x PUE; CO2e = facility kWh x intensity; cost = kWh x price."""
    facility_j = energy_j * cfg.pue.value
    kwh = facility_j / J_PER_KWH
    return Footprint(
        energy_j=energy_j,
        facility_energy_j=facility_j,
        energy_kwh=kwh,
        co2e_g=kwh * cfg.location.intensity_g_per_kwh,
        cost=kwh * cfg.price.per_kwh,
        currency=cfg.price.currency,
    )
