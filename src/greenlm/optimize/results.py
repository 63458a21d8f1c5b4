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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from greenlm.optimize.stats import paired_ratio, per_variant_confidence
from greenlm.optimize.tasks import Score


@dataclass(frozen=True)
class Comparison:
    """A variant's energy against the baseline's, paired round by round.

    ``ratio`` is variant energy / baseline energy (0.25 = a quarter of the baseline's), the
    geometric mean of the per-round ratios; ``low`` / ``high`` its confidence interval (None
    with fewer than two rounds). ``saving`` = 1 - ratio, ``saving_low`` / ``saving_high`` its
    interval. ``verdict``: ``saves`` (interval wholly below 1), ``costs more`` (wholly above),
    ``no significant difference``, or ``not enough rounds``. A saving counts only when the
    whole interval lies above ``min_saving`` (0.02: savings under 2 % are not told apart from
    what identical copies of a model show); a cost only when it lies wholly above 1.
    """

    ratio: float
    low: float | None
    high: float | None
    saving: float
    saving_low: float | None
    saving_high: float | None
    verdict: str
    rounds: int
    confidence: float
    family_confidence: float
    metric: str
    method: str
    min_saving: float = 0.0

    @property
    def significant_saving(self) -> bool:
        return self.verdict == SAVES

    @classmethod
    def paired(
        cls,
        variant: Sequence[float],
        baseline: Sequence[float],
        *,
        comparisons: int,
        confidence: float,
        metric: str,
        min_saving: float = 0.0,
    ) -> Comparison:
        """Compare per-round energies paired by round; ``comparisons`` variants share the
        family-wise ``confidence`` (see :mod:`greenlm.optimize.stats`).
        """
        est = paired_ratio(variant, baseline, per_variant_confidence(confidence, comparisons))
        if est.low is None:
            verdict = TOO_FEW_ROUNDS
        elif est.saving_low is not None and est.saving_low > min_saving:
            verdict = SAVES
        elif est.significant_cost:
            verdict = COSTS_MORE
        else:
            verdict = NO_DIFFERENCE
        return cls(
            ratio=est.ratio,
            low=est.low,
            high=est.high,
            saving=est.saving,
            saving_low=est.saving_low,
            saving_high=est.saving_high,
            verdict=verdict,
            rounds=est.rounds,
            confidence=est.confidence,
            family_confidence=confidence,
            metric=metric,
            method=est.method,
            min_saving=min_saving,
        )


SAVES = "saves"
COSTS_MORE = "costs more"
NO_DIFFERENCE = "no significant difference"
TOO_FEW_ROUNDS = "not enough rounds"


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
    #: the energy ratio to the baseline, paired by round, with its interval (see Comparison)
    vs_baseline: Comparison | None = None
    #: the energy of each round's window in ``energy_metric`` units (J/1k or J/token)
    energy_by_round: tuple[float, ...] = ()

    @property
    def skipped(self) -> bool:
        return self.skipped_reason is not None

    def energy(self, per_token: bool) -> float | None:
        return self.energy_j_per_token if per_token else self.energy_j_per_1k

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["quality"] = dataclasses.asdict(self.quality) if self.quality else None
        d["fidelity"] = dataclasses.asdict(self.fidelity) if self.fidelity else None
        d["energy_by_round"] = list(self.energy_by_round)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VariantResult:
        """The inverse of :meth:`to_dict` (keys it does not know are ignored; missing ones default)."""
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        for key in ("quality", "fidelity"):
            if isinstance(kw.get(key), dict):
                kw[key] = Score(**kw[key])
        if isinstance(kw.get("vs_baseline"), dict):
            fields = {f.name for f in dataclasses.fields(Comparison)}
            kw["vs_baseline"] = Comparison(**{k: v for k, v in kw["vs_baseline"].items() if k in fields})
        kw["energy_by_round"] = tuple(kw.get("energy_by_round") or ())
        return cls(**kw)


@dataclass(frozen=True)
class Recommendation:
    """The variant to use: the largest significant saving within the quality budget, or the
    baseline when no variant saves beyond noise; what it saves, as an estimate and an interval.

    ``energy_ratio`` is baseline energy / variant energy (2.0 = half the energy),
    ``energy_ratio_low`` / ``_high`` its interval; ``saving`` = 1 - 1 / energy_ratio with
    ``saving_low`` / ``_high``. ``significant`` is False when the baseline is kept.
    ``alternatives`` are the variants that save as much within noise (overlapping intervals).
    """

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
    energy_ratio_low: float | None = None
    energy_ratio_high: float | None = None
    saving: float = 0.0
    saving_low: float | None = None
    saving_high: float | None = None
    kwh_saved_per_million_low: float | None = None
    kwh_saved_per_million_high: float | None = None
    co2e_g_saved_per_million_low: float | None = None
    co2e_g_saved_per_million_high: float | None = None
    significant: bool = False
    confidence: float | None = None
    rounds: int = 0
    alternatives: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["alternatives"] = list(self.alternatives)
        return d


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
