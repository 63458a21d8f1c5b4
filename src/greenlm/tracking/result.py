"""Frozen results of a tracking window, and their stable JSON form.

The JSON keys (``to_dict``) are a public contract used by ``--json``, ``runs show --json``,
exports, the dashboard and the team server: add keys, never rename or remove them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from greenlm.carbon.accounting import CarbonConfig

SCHEMA_VERSION = 1
STATUSES = ("running", "completed", "failed", "interrupted")


@dataclass(frozen=True)
class ComponentEnergy:
    """Energy of one measured component (a GPU, a CPU package, RAM)."""

    name: str
    kind: str  # gpu | cpu | ram
    energy_j: float
    provenance: str  # counter | sampled | modeled
    low_j: float
    high_j: float
    scope: str = "device"  # device: whole device; process: the tracked processes' share; instance: a MIG instance's
    detail: str = ""
    node: str | None = None
    rank: int | None = None
    #: The whole device's energy when ``energy_j`` is only part of it (scope process/instance).
    device_energy_j: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "energy_j": self.energy_j,
            "provenance": self.provenance,
            "low_j": self.low_j,
            "high_j": self.high_j,
            "scope": self.scope,
            "detail": self.detail,
            "node": self.node,
            "rank": self.rank,
            "device_energy_j": self.device_energy_j,
        }


@dataclass(frozen=True)
class PhaseEnergy:
    """Energy of a named phase; nested phases name their parent's path."""

    name: str
    parent: str | None
    energy_j: float
    duration_s: float
    steps: int
    entries: int = 1
    co2e_g: float = 0.0

    @property
    def path(self) -> str:
        return f"{self.parent}/{self.name}" if self.parent else self.name

    @property
    def energy_per_step_j(self) -> float | None:
        return self.energy_j / self.steps if self.steps else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "parent": self.parent,
            "path": self.path,
            "energy_j": self.energy_j,
            "duration_s": self.duration_s,
            "steps": self.steps,
            "entries": self.entries,
            "energy_per_step_j": self.energy_per_step_j,
            "co2e_g": self.co2e_g,
        }


@dataclass(frozen=True)
class TimelinePoint:
    """Average power of each component over the interval ending at ``t_s``."""

    t_s: float
    power_w: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"t_s": self.t_s, "power_w": dict(self.power_w)}


@dataclass(frozen=True)
class RunResult:
    """What a closed tracking window measured, with the provenance of every figure."""

    run_id: str
    project: str
    status: str
    started_at: str  # ISO 8601, UTC
    ended_at: str | None
    duration_s: float
    energy_j: float  # IT energy (sum of components)
    energy_low_j: float
    energy_high_j: float
    facility_energy_j: float  # x PUE
    energy_kwh: float  # facility
    co2e_g: float
    co2e_low_g: float
    co2e_high_g: float
    cost: float
    currency: str
    price_per_kwh: float
    price_source: str
    pue: float
    pue_source: str
    location: dict[str, Any]
    components: tuple[ComponentEnergy, ...]
    phases: tuple[PhaseEnergy, ...]
    steps: int
    provenance: str  # the weakest among components
    warnings: tuple[str, ...] = ()
    timeline: tuple[TimelinePoint, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    host: str = ""
    error: str | None = None
    forecast: dict[str, Any] | None = None
    meters: tuple[dict[str, Any], ...] = ()

    @property
    def intensity_g_per_kwh(self) -> float:
        return float(self.location["intensity_g_per_kwh"])

    def component(self, name: str) -> ComponentEnergy:
        """The component called ``name``; KeyError listing the names otherwise."""
        for c in self.components:
            if c.name == name:
                return c
        raise KeyError(f"no component {name!r}; have {[c.name for c in self.components]}")

    def phase(self, path: str) -> PhaseEnergy:
        """The phase at ``path`` (``train`` or ``train/forward``)."""
        for p in self.phases:
            if p.path == path:
                return p
        raise KeyError(f"no phase {path!r}; have {[p.path for p in self.phases]}")

    def to_dict(self, *, timeline: bool = False) -> dict[str, Any]:
        """The stable JSON object (``timeline=True`` adds the power timeline)."""
        d: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "run_id": self.run_id,
            "project": self.project,
            "status": self.status,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_s": self.duration_s,
            "energy_j": self.energy_j,
            "energy_low_j": self.energy_low_j,
            "energy_high_j": self.energy_high_j,
            "facility_energy_j": self.facility_energy_j,
            "energy_kwh": self.energy_kwh,
            "co2e_g": self.co2e_g,
            "co2e_low_g": self.co2e_low_g,
            "co2e_high_g": self.co2e_high_g,
            "cost": self.cost,
            "currency": self.currency,
            "price_per_kwh": self.price_per_kwh,
            "price_source": self.price_source,
            "pue": self.pue,
            "pue_source": self.pue_source,
            "location": dict(self.location),
            "components": [c.to_dict() for c in self.components],
            "phases": [p.to_dict() for p in self.phases],
            "steps": self.steps,
            "provenance": self.provenance,
            "warnings": list(self.warnings),
            "metadata": dict(self.metadata),
            "host": self.host,
            "error": self.error,
            "forecast": self.forecast,
            "meters": [dict(m) for m in self.meters],
        }
        if timeline:
            d["timeline"] = [p.to_dict() for p in self.timeline]
        return d

    def to_json(self, *, timeline: bool = False, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(timeline=timeline), indent=indent, default=str)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunResult:
        """Rebuild a result from its JSON object (store, team server)."""
        comps = tuple(
            ComponentEnergy(
                name=c["name"],
                kind=c["kind"],
                energy_j=float(c["energy_j"]),
                provenance=c["provenance"],
                low_j=float(c["low_j"]),
                high_j=float(c["high_j"]),
                scope=c.get("scope", "device"),
                detail=c.get("detail", ""),
                node=c.get("node"),
                rank=c.get("rank"),
                device_energy_j=None if c.get("device_energy_j") is None else float(c["device_energy_j"]),
            )
            for c in d.get("components", [])
        )
        phases = tuple(
            PhaseEnergy(
                name=p["name"],
                parent=p.get("parent"),
                energy_j=float(p["energy_j"]),
                duration_s=float(p["duration_s"]),
                steps=int(p.get("steps", 0)),
                entries=int(p.get("entries", 1)),
                co2e_g=float(p.get("co2e_g", 0.0)),
            )
            for p in d.get("phases", [])
        )
        timeline = tuple(
            TimelinePoint(float(t["t_s"]), {k: float(v) for k, v in t["power_w"].items()})
            for t in d.get("timeline", [])
        )
        return cls(
            run_id=d["run_id"],
            project=d["project"],
            status=d["status"],
            started_at=d["started_at"],
            ended_at=d.get("ended_at"),
            duration_s=float(d["duration_s"]),
            energy_j=float(d["energy_j"]),
            energy_low_j=float(d.get("energy_low_j", d["energy_j"])),
            energy_high_j=float(d.get("energy_high_j", d["energy_j"])),
            facility_energy_j=float(d["facility_energy_j"]),
            energy_kwh=float(d["energy_kwh"]),
            co2e_g=float(d["co2e_g"]),
            co2e_low_g=float(d.get("co2e_low_g", d["co2e_g"])),
            co2e_high_g=float(d.get("co2e_high_g", d["co2e_g"])),
            cost=float(d["cost"]),
            currency=d["currency"],
            price_per_kwh=float(d.get("price_per_kwh", 0.0)),
            price_source=d.get("price_source", ""),
            pue=float(d["pue"]),
            pue_source=d.get("pue_source", ""),
            location=dict(d["location"]),
            components=comps,
            phases=phases,
            steps=int(d.get("steps", 0)),
            provenance=d.get("provenance", "modeled"),
            warnings=tuple(d.get("warnings", [])),
            timeline=timeline,
            metadata=dict(d.get("metadata") or {}),
            host=d.get("host", ""),
            error=d.get("error"),
            forecast=d.get("forecast"),
            meters=tuple(d.get("meters") or ()),
        )


#: The keys of ``RunResult.to_dict()`` (the stable JSON contract), in order.
JSON_KEYS: tuple[str, ...] = ("schema_version", *(f.name for f in fields(RunResult) if f.name != "timeline"))


def totals_from_components(components: Sequence[ComponentEnergy], carbon: CarbonConfig) -> tuple[dict[str, Any], float]:
    """The energy, band, carbon and cost fields of a :class:`RunResult`, from its components.

    One place for what a tracker window and a merged distributed run both derive: IT energy
    and its band (sums over components), facility energy, kWh, CO2e and its band, cost, and
    the PUE, price and location they rest on. Also returns g CO2e per IT joule, for phases.
    """
    from greenlm.carbon.accounting import account
    from greenlm.meters.base import weakest

    energy = sum(c.energy_j for c in components)
    low = sum(c.low_j for c in components)
    high = sum(c.high_j for c in components)
    fp = account(energy, carbon)
    g_per_j = account(1.0, carbon).co2e_g  # accounting is linear in energy
    fields = {
        "energy_j": energy,
        "energy_low_j": low,
        "energy_high_j": high,
        "facility_energy_j": fp.facility_energy_j,
        "energy_kwh": fp.energy_kwh,
        "co2e_g": fp.co2e_g,
        "co2e_low_g": low * g_per_j,
        "co2e_high_g": high * g_per_j,
        "cost": fp.cost,
        "currency": fp.currency,
        "price_per_kwh": carbon.price.per_kwh,
        "price_source": carbon.price.source,
        "pue": carbon.pue.value,
        "pue_source": carbon.pue.source,
        "location": carbon.location.to_dict(),
        "provenance": weakest([c.provenance for c in components]),
    }
    return fields, g_per_j
