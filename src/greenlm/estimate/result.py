"""Frozen, typed estimate results and their stable JSON form (``--json``).

Energy is held in joules and CO2e in grams (greenlm's base units); ``to_dict`` converts at
the edge to the units the issue's interface promises. Three energy scopes, so an estimate can
be set beside GPU-only benchmarks (ML.ENERGY, Zeus) and whole-facility footprints alike:

* ``accelerator_energy_mwh``: the accelerators only (no host, no PUE);
* ``it_energy_mwh``: with the host (CPUs, memory, network, fans) ;
* ``energy_mwh``: the facility, IT x PUE.

Keys are a public contract: add, never rename.
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
    it_energy_j: Range  # accelerators + host
    energy_j: Range  # facility energy = IT x PUE
    co2e_g: Range  # operational
    embodied_co2e_g: Range
    cost: Range
    currency: str
    location: dict[str, Any]
    inputs: dict[str, Input] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    accelerator_energy_j: Range | None = None  # accelerators only; None: not separable (= IT)

    @property
    def accelerator_energy(self) -> Range:
        """Accelerator-only energy (J); equals the IT energy when the power given was not split."""
        return self.accelerator_energy_j if self.accelerator_energy_j is not None else self.it_energy_j

    @property
    def accelerator_energy_mwh(self) -> float:
        return self.accelerator_energy.value / J_PER_MWH

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
            "accelerator_energy_mwh": pick(self.accelerator_energy) / J_PER_MWH,
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
            "accelerator_energy_mwh": self.accelerator_energy_mwh,
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
    output_tokens: float = 0.0  # over the deployment
    busy_accelerator_energy_j: Range | None = None  # accelerators while serving (no idle)
    idle_energy_j: Range | None = None  # accelerators up but not busy
    output_tokens_per_s: float | None = None  # whole deployment, while busy
    step_time_s: float | None = None  # one decode step of a replica
    crossover_batch: float | None = None  # batch above which decoding is compute-bound
    prefill_fraction: float | None = None  # share of serving time spent on prompts
    busy_fraction: float | None = None  # of the hours the deployment is up
    max_queries_per_day: float | None = None  # capacity of the chips at this batch
    replicas: int = 1
    tensor_parallel: int = 1
    expert_parallel: int = 1

    @property
    def energy_wh_per_query(self) -> float:
        """Facility energy per query in Wh."""
        return self.energy_j.value / 3600.0 / self.queries

    @property
    def j_per_output_token(self) -> float | None:
        """Accelerator energy per output token while serving (J), as ML.ENERGY reports it."""
        busy = self.busy_accelerator_energy_j
        if busy is None or not self.output_tokens:
            return None
        return busy.value / self.output_tokens

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        busy = self.busy_accelerator_energy_j
        per_tok = self.j_per_output_token
        out.update(
            {
                "queries": self.queries,
                "energy_wh_per_query": self.energy_wh_per_query,
                "co2e_g_per_query": self.co2e_g.value / self.queries if self.queries else 0.0,
                "decode_bound": self.decode_bound,
                "output_tokens": self.output_tokens,
                "j_per_output_token": per_tok,
                "j_per_output_token_facility": (
                    self.energy_j.value / self.output_tokens if self.output_tokens else None
                ),
                "busy_accelerator_energy_mwh": busy.value / J_PER_MWH if busy else None,
                "idle_energy_mwh": self.idle_energy_j.value / J_PER_MWH if self.idle_energy_j else 0.0,
                "output_tokens_per_s": self.output_tokens_per_s,
                "step_time_s": self.step_time_s,
                "crossover_batch": self.crossover_batch,
                "prefill_fraction": self.prefill_fraction,
                "busy_fraction": self.busy_fraction,
                "max_queries_per_day": self.max_queries_per_day,
                "replicas": self.replicas,
                "tensor_parallel": self.tensor_parallel,
                "expert_parallel": self.expert_parallel,
            }
        )
        if busy is not None and self.output_tokens:
            for side, pick in (("low", busy.low), ("high", busy.high)):
                out[side]["j_per_output_token"] = pick / self.output_tokens
        return out
