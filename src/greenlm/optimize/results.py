"""Frozen results of an optimize run, and their stable JSON form.

Units are in the names: ``energy_j_per_1k`` (joules per 1,000 inferences, an inference
being one input for encoders and one generation call of ``max_new_tokens`` tokens for
causal LMs), ``energy_j_per_token`` (joules per generated token), ``latency_p50_ms``,
``size_mb`` and ``peak_memory_mb`` (10^6 bytes). ``quality_drop`` is a fraction: an absolute
drop for accuracy and cosine similarity (0.01 = one point), a relative rise for perplexity
(0.05 = 5 % higher).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from greenlm.optimize.tasks import Score


@dataclass(frozen=True)
class VariantResult:
    """The baseline or one variant: what it cost to run and what it lost."""

    name: str
    technique: str
    params: dict[str, float]
    description: str = ""
    energy_j_per_1k: float | None = None
    energy_j_per_token: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    throughput_per_s: float | None = None
    peak_memory_mb: float | None = None
    size_mb: float | None = None
    parameter_count: int | None = None
    quality: Score | None = None
    fidelity: Score | None = None
    quality_drop: float | None = None
    provenance: str | None = None
    repeats: int = 0
    spread: dict[str, float] = field(default_factory=dict)
    skipped_reason: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def skipped(self) -> bool:
        return self.skipped_reason is not None

    def energy(self, per_token: bool) -> float | None:
        return self.energy_j_per_token if per_token else self.energy_j_per_1k

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["quality"] = dataclasses.asdict(self.quality) if self.quality else None
        d["fidelity"] = dataclasses.asdict(self.fidelity) if self.fidelity else None
        return d


@dataclass(frozen=True)
class Recommendation:
    """The lowest-energy variant within the quality budget, and what it saves."""

    variant: str
    energy_ratio: float
    quality_drop: float
    kwh_saved_per_million: float
    co2e_g_saved_per_million: float
    energy_metric: str
    location: str
    intensity_g_per_kwh: float
    pue: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class OptimizeReport:
    """Everything ``greenlm optimize`` found; :meth:`to_dict` is the ``--json`` object."""

    model: str
    task: str
    baseline: str
    variants: tuple[VariantResult, ...]
    recommendation: Recommendation | None
    max_quality_drop: float
    device: str
    settings: dict[str, Any]
    provenance_notes: dict[str, str]
    warnings: tuple[str, ...] = ()

    def variant(self, name: str) -> VariantResult:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "task": self.task,
            "baseline": self.baseline,
            "variants": [v.to_dict() for v in self.variants],
            "recommendation": self.recommendation.to_dict() if self.recommendation else None,
            "max_quality_drop": self.max_quality_drop,
            "device": self.device,
            "settings": self.settings,
            "provenance_notes": self.provenance_notes,
            "warnings": list(self.warnings),
        }
