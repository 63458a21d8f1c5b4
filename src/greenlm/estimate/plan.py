"""The lifecycle plan: a YAML file describing a model's whole life, validated with pydantic.

Top-level keys (all phases optional, at least one needed)::

    name: assistant-7b            # free text
    hardware: A100                # default for every compute phase
    location: FRA                 # or intensity_kg_per_kwh: 0.05
    pue: 1.2                      # optional; price_per_kwh, currency too
    model: {params: 7.0e9, active_params:, layers:, hidden_size:, seq_len:}
    training: {tokens: 2.0e12, chips: 256, mfu: | chip_hours: | hours:, hardware:, ...}
    finetuning: [{name: chat, tokens: 5.0e8, method: lora, lora_rank: 16, ...}]
    inference: {queries_per_day: 5.0e4, days: 365, input_tokens: 400, output_tokens: 250,
                batch_size: 8, weights_bits: 8 | weight_precision: fp8, hardware: L4,
                tensor_parallel:, expert_parallel:, hours_per_day: 24, idle_power_w:}
    storage: {model_gb: (default: params x 2 bytes), data_gb: 5000, months: 24}
    transfer: {gb: 2000}
    weights: {compute: 0.2, energy: 0.3, carbon: 0.5}

A phase may override ``hardware``, ``location``, ``intensity_kg_per_kwh``, ``pue``,
``power_w`` and ``power_basis``. Unknown keys are errors (a typo must not be ignored).
Errors name the field: ``training.tokens: must be > 0``. ``greenlm estimate lifecycle
--example > plan.yaml`` writes a complete example (:func:`example_plan_text`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from greenlm.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Overrides(_Strict):
    """Settings a phase may override."""

    hardware: str | None = None
    location: str | None = None
    intensity_kg_per_kwh: float | None = Field(default=None, ge=0)
    pue: float | None = Field(default=None, ge=1)
    power_w: float | None = Field(default=None, gt=0)
    power_basis: Literal["model", "tdp"] = "model"
    chips: int | None = Field(default=None, gt=0)
    precision: str = "bf16"


class ModelSpec(_Strict):
    params: float = Field(gt=0)
    active_params: float | None = Field(default=None, gt=0)
    layers: int | None = Field(default=None, gt=0)
    hidden_size: int | None = Field(default=None, gt=0)
    seq_len: int | None = Field(default=None, gt=0)


class _Timed(Overrides):
    chip_hours: float | None = Field(default=None, gt=0)
    hours: float | None = Field(default=None, gt=0)
    mfu: float | None = Field(default=None, gt=0, le=1)

    @model_validator(mode="after")
    def _one_time_input(self) -> _Timed:
        given = [k for k in ("chip_hours", "hours", "mfu") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give only one of chip_hours, hours, mfu (got {', '.join(given)})")
        return self


class TrainingPhase(_Timed):
    tokens: float = Field(gt=0)


class FinetunePhase(_Timed):
    name: str = "finetune"
    tokens: float = Field(gt=0)
    method: Literal["full", "lora"] = "lora"
    lora_rank: int | None = Field(default=None, gt=0)
    target_modules: list[str] | None = None
    trainable_params: float | None = Field(default=None, ge=0)


class InferencePhase(Overrides):
    queries_per_day: float = Field(gt=0)
    days: float = Field(gt=0)
    input_tokens: float = Field(ge=0)
    output_tokens: float = Field(ge=0)
    batch_size: int = Field(default=1, ge=1)
    weights_bits: Literal[4, 8, 16, 32] = 16
    weight_precision: str | None = None
    tensor_parallel: int | None = Field(default=None, gt=0)
    expert_parallel: int | None = Field(default=None, gt=0)
    kv_bytes_per_token: float | None = Field(default=None, ge=0)
    hours_per_day: float | None = Field(default=24.0, gt=0, le=24)
    idle_power_w: float | None = Field(default=None, ge=0)
    mfu: float | None = Field(default=None, gt=0, le=1)


class StoragePhase(_Strict):
    model_gb: float | None = Field(default=None, ge=0)
    data_gb: float = Field(default=0.0, ge=0)
    months: float = Field(gt=0)
    w_per_tb: float | None = Field(default=None, gt=0)
    replicas: float | None = Field(default=None, ge=1)


class TransferPhase(_Strict):
    gb: float = Field(ge=0)
    kwh_per_gb: float | None = Field(default=None, gt=0)


class Plan(_Strict):
    """A validated lifecycle plan."""

    name: str = "plan"
    hardware: str | None = None
    location: str | None = None
    intensity_kg_per_kwh: float | None = Field(default=None, ge=0)
    pue: float | None = Field(default=None, ge=1)
    price_per_kwh: float | None = Field(default=None, ge=0)
    currency: str | None = None
    model: ModelSpec
    training: TrainingPhase | None = None
    finetuning: list[FinetunePhase] = Field(default_factory=list)
    inference: InferencePhase | None = None
    storage: StoragePhase | None = None
    transfer: TransferPhase | None = None
    weights: dict[str, float] | None = None

    @model_validator(mode="after")
    def _check(self) -> Plan:
        if not (self.training or self.finetuning or self.inference or self.storage or self.transfer):
            raise ValueError("the plan has no phase: add training, finetuning, inference, storage or transfer")
        for label, phase in (
            ("training", self.training),
            ("inference", self.inference),
            *((f"finetuning[{i}]", p) for i, p in enumerate(self.finetuning)),
        ):
            if phase is not None and not (phase.hardware or self.hardware):
                raise ValueError(f"{label} has no hardware: set 'hardware' at the top level or in the phase")
        return self


def _describe(e: ValidationError, where: str) -> str:
    lines = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; `greenlm estimate lifecycle --example` prints every field)"
        got = err.get("input")
        suffix = (
            f" (got {got!r})"
            if err["type"] != "extra_forbidden" and not isinstance(got, dict) and got is not None
            else ""
        )
        lines.append(f"{loc}: {msg}{suffix}")
    return f"Invalid plan {where}:\n  " + "\n  ".join(lines)


def parse_plan(data: Any, where: str = "(inline)") -> Plan:
    """Validate a plan given as a mapping; raises ConfigError naming each bad field."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"Invalid plan {where}: expected a mapping of keys (name, model, training, ...), got {type(data).__name__}."
        )
    try:
        return Plan.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_describe(e, where)) from None


def load_plan(path: str | Path) -> Plan:
    """Read and validate a YAML plan file."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(
            f"Cannot read plan {p}: {e.strerror or e}. Give the path of a YAML plan "
            "(`greenlm estimate lifecycle --example > plan.yaml` writes one to start from)."
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"Plan {p} is not valid YAML: {e}") from None
    return parse_plan(data, str(p))


def example_plan_text() -> str:
    """The complete example plan shipped with greenlm (YAML, with comments)."""
    from importlib import resources

    return (resources.files("greenlm.estimate") / "examples" / "plan.yaml").read_text(encoding="utf-8")
