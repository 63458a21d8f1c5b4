"""Compare one plan across locations and hardware: the carbon-aware choice.

Every (location, hardware) combination re-runs the whole lifecycle of the plan with that
location for all phases and that hardware for all compute phases, then ranks the options by
total CO2e (operational + embodied), then cost. Bands are shown so that options whose
ranges overlap are not over-read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from greenlm.errors import ConfigError
from greenlm.estimate.hardware import find_hardware
from greenlm.estimate.lifecycle_model import LifecycleEstimate, lifecycle
from greenlm.estimate.plan import Plan


@dataclass(frozen=True)
class Option:
    """One compared option and its lifecycle estimate."""

    location: str | None
    hardware: str | None
    estimate: LifecycleEstimate

    def to_dict(self, rank: int) -> dict[str, Any]:
        d = self.estimate.to_dict()
        label = " / ".join(x for x in (self.location, self.hardware) if x) or "(plan)"
        return {
            "rank": rank,
            "label": label,
            "location": self.location,
            "hardware": self.hardware,
            "location_name": d["location"].get("name"),
            "intensity_g_per_kwh": d["location"].get("intensity_g_per_kwh"),
            **{
                k: d[k]
                for k in (
                    "accelerator_energy_mwh",
                    "it_energy_mwh",
                    "energy_mwh",
                    "co2e_t",
                    "embodied_co2e_t",
                    "total_co2e_t",
                    "cost",
                    "currency",
                    "chip_hours",
                    "low",
                    "high",
                )
            },
            "score": d["score"]["value"],
            "warnings": d["warnings"],
        }


@dataclass(frozen=True)
class Comparison:
    """Options ranked best first (lowest total CO2e, then lowest cost)."""

    options: tuple[Option, ...]

    @property
    def best(self) -> Option:
        return self.options[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "compare",
            "ranked_by": ["total_co2e_t", "cost"],
            "options": [o.to_dict(i + 1) for i, o in enumerate(self.options)],
        }


def _split(items: Sequence[str] | str | None) -> list[str | None]:
    if items is None:
        return [None]
    if isinstance(items, str):
        items = items.split(",")
    out = [i.strip() for i in items if i and i.strip()]
    return list(dict.fromkeys(out)) or [None]


def compare(
    plan: Plan,
    locations: Sequence[str] | str | None = None,
    hardware: Sequence[str] | str | None = None,
) -> Comparison:
    """Rank ``locations`` x ``hardware`` for ``plan`` (None keeps the plan's own)."""
    locs = _split(locations)
    hws = _split(hardware)
    if locs == [None] and hws == [None]:
        raise ConfigError(
            "Nothing to compare: give --locations (e.g. FRA,USA,aws:us-east-1) and/or --hardware (e.g. A100,H100)."
        )
    for h in hws:  # fail fast with close matches before running anything
        if h is not None:
            find_hardware(h)
    opts = [Option(loc, hw, lifecycle(plan, location=loc, hardware=hw)) for loc in locs for hw in hws]
    opts.sort(key=lambda o: (o.estimate.total_co2e_t, o.estimate.total.cost.value))
    return Comparison(tuple(opts))
