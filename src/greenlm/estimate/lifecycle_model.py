"""Lifecycle: training + fine-tuning + inference + storage + data transfer + embodied.

Each part is reported in physical units (MWh, tCO2e, chip-hours, money); the composite
impact score is computed from them and shown beside them, never instead of them:

``score = sum_k w_k * quantity_k / reference_k`` for k in compute (chip-hours), energy
(facility MWh) and carbon (operational + embodied tCO2e), with weights normalised to sum to 1
and references from :data:`greenlm.estimate.defaults.SCORE_REFERENCES` (one accelerator-year,
a person's yearly electricity use, a person's yearly CO2). It is a relative yardstick for
comparing plans, not an absolute impact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from greenlm.errors import ConfigError
from greenlm.estimate import defaults
from greenlm.estimate.grid import Factors, resolve_factors
from greenlm.estimate.plan import Plan
from greenlm.estimate.result import G_PER_T, J_PER_MWH, Estimate, Input, ranged
from greenlm.estimate.serving import inference
from greenlm.estimate.training import finetune, train
from greenlm.estimate.uncertainty import Range, add, combine

HOURS_PER_MONTH = 730.0  # 8,760 h / 12


@dataclass(frozen=True)
class Part:
    """One part of the lifecycle in physical units (energy in J, CO2e in g)."""

    name: str
    kind: str  # train | finetune | inference | storage | transfer
    chip_hours: Range
    it_energy_j: Range
    energy_j: Range
    co2e_g: Range
    embodied_co2e_g: Range
    cost: Range
    flops: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)
    accelerator_energy_j: Range = field(default_factory=lambda: Range.exact(0.0))  # none: storage, transfer

    @classmethod
    def from_estimate(cls, name: str, e: Estimate) -> Part:
        return cls(
            name,
            e.kind,
            e.chip_hours,
            e.it_energy_j,
            e.energy_j,
            e.co2e_g,
            e.embodied_co2e_g,
            e.cost,
            e.flops or 0.0,
            e.to_dict(),
            e.accelerator_energy,
        )

    def summary(self) -> dict[str, Any]:
        def side(pick: str) -> dict[str, float]:
            def g(r: Range) -> float:
                return r.low if pick == "low" else r.high

            return {
                "accelerator_energy_mwh": g(self.accelerator_energy_j) / J_PER_MWH,
                "it_energy_mwh": g(self.it_energy_j) / J_PER_MWH,
                "energy_mwh": g(self.energy_j) / J_PER_MWH,
                "co2e_t": g(self.co2e_g) / G_PER_T,
                "embodied_co2e_t": g(self.embodied_co2e_g) / G_PER_T,
            }

        return {
            "name": self.name,
            "kind": self.kind,
            "flops": self.flops,
            "chip_hours": self.chip_hours.value,
            "accelerator_energy_mwh": self.accelerator_energy_j.value / J_PER_MWH,
            "it_energy_mwh": self.it_energy_j.value / J_PER_MWH,
            "energy_mwh": self.energy_j.value / J_PER_MWH,
            "co2e_t": self.co2e_g.value / G_PER_T,
            "embodied_co2e_t": self.embodied_co2e_g.value / G_PER_T,
            "cost": self.cost.value,
            "low": side("low"),
            "high": side("high"),
            "detail": self.detail,
        }


def parse_weights(text: str | Mapping[str, float] | None) -> dict[str, float]:
    """Score weights from ``"compute=1,carbon=2"`` or a mapping; normalised to sum to 1.

    Missing keys get weight 0 when any weight is given; none given means the defaults.
    """
    if text is None or text == "" or text == {}:
        return dict(defaults.SCORE_WEIGHTS)
    raw: dict[str, Any]
    if isinstance(text, str):
        raw = {}
        for item in text.split(","):
            key, sep, val = item.partition("=")
            if not sep:
                raise ConfigError(f"Bad weight {item!r}: write key=value, e.g. compute=0.2,energy=0.3,carbon=0.5.")
            raw[key.strip().lower()] = val.strip()
    else:
        raw = {str(k).lower(): v for k, v in text.items()}
    unknown = sorted(set(raw) - set(defaults.SCORE_WEIGHTS))
    if unknown:
        raise ConfigError(f"Unknown score weight(s) {', '.join(unknown)}; use {', '.join(defaults.SCORE_WEIGHTS)}.")
    from greenlm._validate import finite

    vals = {k: finite(f"weight {k}", v, minimum=0.0) for k, v in raw.items()}
    total = sum(vals.values())
    if total <= 0:
        raise ConfigError("Score weights must not all be zero.")
    return {k: vals.get(k, 0.0) / total for k in defaults.SCORE_WEIGHTS}


@dataclass(frozen=True)
class LifecycleEstimate:
    """All parts of a plan, their total, and the composite score."""

    name: str
    parts: tuple[Part, ...]
    weights: dict[str, float]
    currency: str
    location: dict[str, Any]
    warnings: tuple[str, ...] = ()
    inputs: dict[str, Input] = field(default_factory=dict)

    @property
    def total(self) -> Part:
        ps = self.parts
        return Part(
            "total",
            "total",
            add(*(p.chip_hours for p in ps)),
            add(*(p.it_energy_j for p in ps)),
            add(*(p.energy_j for p in ps)),
            add(*(p.co2e_g for p in ps)),
            add(*(p.embodied_co2e_g for p in ps)),
            add(*(p.cost for p in ps)),
            sum(p.flops for p in ps),
            accelerator_energy_j=add(*(p.accelerator_energy_j for p in ps)),
        )

    @property
    def energy_mwh(self) -> float:
        return self.total.energy_j.value / J_PER_MWH

    @property
    def co2e_t(self) -> float:
        return self.total.co2e_g.value / G_PER_T

    @property
    def embodied_co2e_t(self) -> float:
        return self.total.embodied_co2e_g.value / G_PER_T

    @property
    def total_co2e_t(self) -> float:
        return self.co2e_t + self.embodied_co2e_t

    def score(self) -> dict[str, Any]:
        t = self.total
        quantities = {
            "chip_hours": t.chip_hours.value,
            "energy_mwh": t.energy_j.value / J_PER_MWH,
            "total_co2e_t": (t.co2e_g.value + t.embodied_co2e_g.value) / G_PER_T,
        }
        comps = {}
        value = 0.0
        for key, (ref, qty, src) in defaults.SCORE_REFERENCES.items():
            norm = quantities[qty] / ref
            comps[key] = {
                "quantity": qty,
                "amount": quantities[qty],
                "reference": ref,
                "reference_source": src,
                "normalised": norm,
                "weight": self.weights[key],
            }
            value += self.weights[key] * norm
        return {
            "value": value,
            "weights": dict(self.weights),
            "components": comps,
            "note": "relative yardstick for comparing plans; the physical units are the result",
        }

    def to_dict(self) -> dict[str, Any]:
        t = self.total.summary()
        return {
            "kind": "lifecycle",
            "name": self.name,
            "flops": t["flops"],
            "chip_hours": t["chip_hours"],
            "accelerator_energy_mwh": t["accelerator_energy_mwh"],
            "it_energy_mwh": t["it_energy_mwh"],
            "energy_mwh": t["energy_mwh"],
            "co2e_t": t["co2e_t"],
            "embodied_co2e_t": t["embodied_co2e_t"],
            "total_co2e_t": t["co2e_t"] + t["embodied_co2e_t"],
            "cost": t["cost"],
            "currency": self.currency,
            "low": t["low"],
            "high": t["high"],
            "parts": [p.summary() for p in self.parts],
            "score": self.score(),
            "location": self.location,
            "inputs": {k: v.to_dict() for k, v in self.inputs.items()},
            "warnings": list(self.warnings),
        }


def _common(plan: Plan, phase: Any, hardware: str | None, location: str | None) -> dict[str, Any]:
    loc_override = location is not None
    return {
        "hardware": hardware or phase.hardware or plan.hardware,
        "location": location if loc_override else (phase.location or plan.location),
        "intensity_kg_per_kwh": None
        if loc_override
        else (phase.intensity_kg_per_kwh if phase.intensity_kg_per_kwh is not None else plan.intensity_kg_per_kwh),
        "pue": phase.pue if phase.pue is not None else plan.pue,
        "price_per_kwh": plan.price_per_kwh,
        "currency": plan.currency,
        "power_w": phase.power_w,
        "power_basis": phase.power_basis,
        "chips": phase.chips,
        "precision": phase.precision,
    }


def _storage_part(plan: Plan, f: Factors) -> tuple[Part, dict[str, Input]]:
    s = plan.storage
    assert s is not None
    model_gb = s.model_gb if s.model_gb is not None else plan.model.params * 2 / 1e9
    tb = (model_gb + s.data_gb) / 1000.0
    w = Range.exact(s.w_per_tb) if s.w_per_tb else defaults.STORAGE_W_PER_TB.range
    reps = Range.exact(s.replicas) if s.replicas else defaults.STORAGE_REPLICAS.range
    it_j = combine([(w, 1), (reps, 1)]).scaled(tb * s.months * HOURS_PER_MONTH * 3600.0)
    fac = combine([(it_j, 1), (f.pue, 1)])
    co2 = combine([(fac, 1), (f.intensity_g_per_kwh, 1)]).scaled(1 / 3.6e6)
    inputs = {
        "storage_tb": Input(
            tb,
            "model_gb + data_gb" + ("" if s.model_gb is not None else "; model_gb = params x 2 bytes"),
        ),
        "storage_w_per_tb": ranged(w, "user value" if s.w_per_tb else defaults.STORAGE_W_PER_TB.source),
        "storage_replicas": ranged(reps, "user value" if s.replicas else defaults.STORAGE_REPLICAS.source),
    }
    zero = Range.exact(0.0)
    return Part(
        "storage",
        "storage",
        zero,
        it_j,
        fac,
        co2,
        zero,
        fac.scaled(f.price_per_kwh / 3.6e6),
        detail={"tb": tb, "months": s.months},
    ), inputs


def _transfer_part(plan: Plan, f: Factors) -> tuple[Part, dict[str, Input]]:
    t = plan.transfer
    assert t is not None
    k = Range.exact(t.kwh_per_gb) if t.kwh_per_gb else defaults.NETWORK_KWH_PER_GB.range
    e_j = k.scaled(t.gb * 3.6e6)  # network energy is end-to-end: no PUE applied
    co2 = combine([(e_j, 1), (f.intensity_g_per_kwh, 1)]).scaled(1 / 3.6e6)
    zero = Range.exact(0.0)
    inputs = {"network_kwh_per_gb": ranged(k, "user value" if t.kwh_per_gb else defaults.NETWORK_KWH_PER_GB.source)}
    return Part(
        "transfer",
        "transfer",
        zero,
        e_j,
        e_j,
        co2,
        zero,
        e_j.scaled(f.price_per_kwh / 3.6e6),
        detail={"gb": t.gb},
    ), inputs


def lifecycle(
    plan: Plan,
    weights: str | Mapping[str, float] | None = None,
    *,
    location: str | None = None,
    hardware: str | None = None,
) -> LifecycleEstimate:
    """Estimate every phase of ``plan``; ``location``/``hardware`` override the whole plan."""
    w = parse_weights(weights if weights is not None else plan.weights)
    m = plan.model
    parts: list[Part] = []
    e: Estimate
    warnings: list[str] = []
    if plan.training is not None:
        tp = plan.training
        e = train(
            params=m.params,
            active_params=m.active_params,
            tokens=tp.tokens,
            layers=m.layers,
            hidden_size=m.hidden_size,
            seq_len=m.seq_len,
            chip_hours=tp.chip_hours,
            hours=tp.hours,
            mfu=tp.mfu,
            **_common(plan, tp, hardware, location),
        )
        parts.append(Part.from_estimate("training", e))
        warnings.extend(e.warnings)
    for ft in plan.finetuning:
        e = finetune(
            params=m.params,
            active_params=m.active_params,
            tokens=ft.tokens,
            method=ft.method,
            lora_rank=ft.lora_rank,
            target_modules=ft.target_modules,
            trainable_params=ft.trainable_params,
            layers=m.layers,
            hidden_size=m.hidden_size,
            chip_hours=ft.chip_hours,
            hours=ft.hours,
            mfu=ft.mfu,
            **_common(plan, ft, hardware, location),
        )
        parts.append(Part.from_estimate(f"finetuning:{ft.name}", e))
        warnings.extend(e.warnings)
    if plan.inference is not None:
        ip = plan.inference
        e = inference(
            params=m.params,
            active_params=m.active_params,
            queries_per_day=ip.queries_per_day,
            days=ip.days,
            input_tokens=ip.input_tokens,
            output_tokens=ip.output_tokens,
            batch_size=ip.batch_size,
            weights_bits=ip.weights_bits,
            weight_precision=ip.weight_precision,
            tensor_parallel=ip.tensor_parallel,
            expert_parallel=ip.expert_parallel,
            layers=m.layers,
            hidden_size=m.hidden_size,
            kv_bytes_per_token=ip.kv_bytes_per_token,
            hours_per_day=ip.hours_per_day,
            idle_power_w=ip.idle_power_w,
            mfu=ip.mfu,
            **_common(plan, ip, hardware, location),
        )
        parts.append(Part.from_estimate("inference", e))
        warnings.extend(e.warnings)
    f = resolve_factors(
        location=location or plan.location,
        intensity_kg_per_kwh=None if location else plan.intensity_kg_per_kwh,
        pue=plan.pue,
        price_per_kwh=plan.price_per_kwh,
        currency=plan.currency,
    )
    warnings.extend(f.warnings)
    inputs: dict[str, Input] = {
        "weights": Input(w, "user value" if (weights or plan.weights) else defaults.SCORE_WEIGHTS_SOURCE),
    }
    if plan.storage is not None:
        part, extra = _storage_part(plan, f)
        parts.append(part)
        inputs.update(extra)
    if plan.transfer is not None:
        part, extra = _transfer_part(plan, f)
        parts.append(part)
        inputs.update(extra)
    inputs["intensity_g_per_kwh"] = ranged(f.intensity_g_per_kwh, f.intensity_source)
    inputs["pue"] = ranged(f.pue, f.pue_source)
    seen: list[str] = []
    for x in warnings:
        if x not in seen:
            seen.append(x)
    return LifecycleEstimate(plan.name, tuple(parts), w, f.currency, f.location.to_dict(), tuple(seen), inputs)
