"""Frozen, typed estimate results and their stable JSON form (``--json``).

Energy is held in joules and CO2e in grams (greenlm's base units); ``to_dict`` converts at
the edge to the units the issue's interface promises (``it_energy_mwh``, ``energy_mwh``,
``co2e_t``, ``embodied_co2e_t``). Keys are a public contract: add, never rename.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from greenlm.estimate.uncertainty import Range

J_PER_MWH = 3.6e9
G_PER_T = 1e6


@dataclass(frozen=True)
class Input:
    """One input of an estimate: its value and where it came from (user, default, data)."""

    value: Any
    source: str
    low: float | None = None
    high: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "source": self.source}
        if self.low is not None and self.high is not None and self.low != self.high:
            out["low"] = self.low
            out["high"] = self.high
        return out


def ranged(r: Range, source: str) -> Input:
    """Build an :class:`Input` for a value with a range."""
    return Input(r.value, source, r.low, r.high)


@dataclass(frozen=True, kw_only=True)
class Estimate:
    """What a job will cost: compute, time, energy, operational and embodied CO2e, money."""

    kind: str  # train | finetune | inference
    hardware: str
    chips: float | None
    flops: float | None  # None when only the time was given (no tokens)
    chip_hours: Range
    power_w: Range  # per accelerator, incl. host share when modeled
    mfu: float | None  # used or implied
    it_energy_j: Range
    energy_j: Range  # facility energy = IT x PUE
    co2e_g: Range  # operational
    embodied_co2e_g: Range
    cost: Range
    currency: str
    location: dict[str, Any]
    inputs: dict[str, Input] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def hours(self) -> float | None:
        """Wall-clock hours (chip-hours / chips), when the number of chips is known."""
        return self.chip_hours.value / self.chips if self.chips else None

    @property
    def it_energy_mwh(self) -> float:
        return self.it_energy_j.value / J_PER_MWH

    @property
    def energy_mwh(self) -> float:
        return self.energy_j.value / J_PER_MWH

    @property
    def co2e_t(self) -> float:
        return self.co2e_g.value / G_PER_T

    @property
    def embodied_co2e_t(self) -> float:
        return self.embodied_co2e_g.value / G_PER_T

    def _bound(self, side: str) -> dict[str, float]:
        def pick(r: Range) -> float:
            return r.low if side == "low" else r.high

        return {
            "chip_hours": pick(self.chip_hours),
            "it_energy_mwh": pick(self.it_energy_j) / J_PER_MWH,
            "energy_mwh": pick(self.energy_j) / J_PER_MWH,
            "co2e_t": pick(self.co2e_g) / G_PER_T,
            "embodied_co2e_t": pick(self.embodied_co2e_g) / G_PER_T,
            "cost": pick(self.cost),
        }

    def to_dict(self) -> dict[str, Any]:
        """Return the ``--json`` object."""
        return {
            "kind": self.kind,
            "hardware": self.hardware,
            "chips": self.chips,
            "flops": self.flops,
            "chip_hours": self.chip_hours.value,
            "hours": self.hours,
            "mfu": self.mfu,
            "power_w_per_chip": self.power_w.value,
            "it_energy_mwh": self.it_energy_mwh,
            "energy_mwh": self.energy_mwh,
            "co2e_t": self.co2e_t,
            "embodied_co2e_t": self.embodied_co2e_t,
            "total_co2e_t": self.co2e_t + self.embodied_co2e_t,
            "cost": self.cost.value,
            "currency": self.currency,
            "low": self._bound("low"),
            "high": self._bound("high"),
            "location": self.location,
            "inputs": {k: v.to_dict() for k, v in self.inputs.items()},
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True, kw_only=True)
class TrainEstimate(Estimate):
    """Estimate of a pre-training run or a fine-tune (``kind`` says which)."""


@dataclass(frozen=True, kw_only=True)
class InferenceEstimate(Estimate):
    """Estimate of serving a model over a deployment period."""

    queries: float
    decode_bound: str  # memory | compute

    @property
    def energy_wh_per_query(self) -> float:
        """Facility energy per query in Wh."""
        return self.energy_j.value / 3600.0 / self.queries

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.update(
            {
                "queries": self.queries,
                "energy_wh_per_query": self.energy_wh_per_query,
                "co2e_g_per_query": self.co2e_g.value / self.queries if self.queries else 0.0,
                "decode_bound": self.decode_bound,
            }
        )
        return out
