"""Pydantic models of the ingest API's bodies: validated, bounded, finite.

Every body a tracker sends is checked here before it reaches the store: numbers must be
finite (no NaN or infinity) and energies non-negative, strings have length limits and no NUL
characters (PostgreSQL rejects them), lists have item limits. Together with the byte limit
on the request body this turns any malformed or oversized input into a 4xx answer, never a
500. Unknown keys in a run result are accepted and ignored (the result JSON only ever gains
keys), so an older server accepts runs from a newer tracker.

The bodies mirror the tracker's types field for field: ``RunIn`` is ``RunResult.to_dict``,
``RunStartIn`` is ``RunStart``, and so on; ``tests/server/test_models.py`` checks every
dataclass field has its model field, so a field added to a result cannot be forgotten here.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_COMPONENTS = 1024
MAX_PHASES = 10_000
MAX_TIMELINE = 100_000
MAX_SAMPLES_PER_BATCH = 50_000
MAX_METADATA_KEYS = 200

RunId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]
Name = Annotated[str, Field(min_length=1, max_length=256)]
Text = Annotated[str, Field(max_length=4096)]
#: Physical quantities: finite and below 1e30 (sums of them stay finite, and JSON-safe).
NonNeg = Annotated[float, Field(ge=0.0, le=1e30, allow_inf_nan=False)]
Finite = Annotated[float, Field(ge=-1e30, le=1e30, allow_inf_nan=False)]
#: Integers stored in 32-bit SQL columns (PostgreSQL ``integer``).
Int32 = Annotated[int, Field(ge=0, le=2**31 - 1)]
Status = Literal["running", "completed", "failed", "interrupted"]


def _no_nul(value: Any, depth: int = 0) -> Any:
    """Reject NUL characters and absurd nesting anywhere inside a JSON value."""
    if depth > 20:
        raise ValueError("nested too deeply (more than 20 levels)")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("strings must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("strings must be valid Unicode (no lone surrogates)") from None
    elif isinstance(value, dict):
        for k, v in value.items():
            _no_nul(k, depth + 1)
            _no_nul(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _no_nul(v, depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite")
    return value


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", str_max_length=65_536)

    @field_validator("*", mode="before")
    @classmethod
    def _clean(cls, v: Any) -> Any:
        return _no_nul(v)


class ComponentIn(_Body):
    """One measured component of a finished run."""

    name: Name
    kind: Annotated[str, Field(max_length=8)]
    energy_j: NonNeg
    provenance: Literal["counter", "sampled", "modeled"]
    low_j: NonNeg
    high_j: NonNeg
    scope: Annotated[str, Field(max_length=16)] = "device"
    detail: Text = ""
    node: Annotated[str, Field(max_length=256)] | None = None
    rank: Annotated[int, Field(ge=0, le=10_000_000)] | None = None
    #: The whole device's energy when the component is a share of it (a shared GPU, MIG).
    device_energy_j: NonNeg | None = None


class PhaseIn(_Body):
    """One phase of a finished run (nested phases name their parent's path)."""

    name: Name
    parent: Annotated[str, Field(max_length=512)] | None = None
    energy_j: NonNeg
    duration_s: NonNeg
    steps: Int32 = 0
    entries: Int32 = 1
    co2e_g: NonNeg = 0.0


class TimelinePointIn(_Body):
    """Average power per component over the interval ending at ``t_s``."""

    t_s: NonNeg
    power_w: dict[Annotated[str, Field(max_length=128)], Finite] = Field(max_length=MAX_COMPONENTS)


class LocationIn(_Body):
    """The grid location and intensity a run used (extra keys kept as sent)."""

    model_config = ConfigDict(extra="allow")

    code: Annotated[str, Field(max_length=64)] | None = None
    intensity_g_per_kwh: NonNeg


class SampleIn(_Body):
    """One component's reading: cumulative energy and average power since the last sample."""

    t_s: NonNeg
    component: Annotated[str, Field(min_length=1, max_length=128)]
    energy_j: NonNeg
    power_w: Finite | None = None


class RunIn(_Body):
    """A finished run: the stable result JSON (``RunResult.to_dict(timeline=True)``).

    ``samples`` (optional) are stored only when the server holds none for this run yet, so a
    tracker that could not stream can still deliver its power trace in one request.
    """

    schema_version: Annotated[int, Field(ge=1, le=1000)] = 1
    run_id: RunId
    project: Name
    status: Status
    started_at: Annotated[str, Field(min_length=10, max_length=40)]
    ended_at: Annotated[str, Field(max_length=40)] | None = None
    duration_s: NonNeg
    energy_j: NonNeg
    energy_low_j: NonNeg | None = None
    energy_high_j: NonNeg | None = None
    facility_energy_j: NonNeg
    energy_kwh: NonNeg
    co2e_g: NonNeg
    co2e_low_g: NonNeg | None = None
    co2e_high_g: NonNeg | None = None
    cost: NonNeg
    currency: Annotated[str, Field(max_length=8)]
    price_per_kwh: NonNeg = 0.0
    price_source: Text = ""
    pue: Annotated[float, Field(ge=1.0, le=10.0, allow_inf_nan=False)]
    pue_source: Text = ""
    location: LocationIn
    components: list[ComponentIn] = Field(default_factory=list, max_length=MAX_COMPONENTS)
    phases: list[PhaseIn] = Field(default_factory=list, max_length=MAX_PHASES)
    steps: Annotated[int, Field(ge=0, le=10**15)] = 0
    provenance: Literal["counter", "sampled", "modeled"] = "modeled"
    warnings: list[Text] = Field(default_factory=list, max_length=1000)
    timeline: list[TimelinePointIn] = Field(default_factory=list, max_length=MAX_TIMELINE)
    metadata: dict[Annotated[str, Field(max_length=256)], Any] = Field(
        default_factory=dict, max_length=MAX_METADATA_KEYS
    )
    host: Annotated[str, Field(max_length=256)] = ""
    error: Text | None = None
    forecast: dict[Annotated[str, Field(max_length=64)], Any] | None = Field(default=None, max_length=64)
    meters: list[dict[Annotated[str, Field(max_length=64)], Any]] = Field(
        default_factory=list, max_length=MAX_COMPONENTS
    )
    samples: list[SampleIn] = Field(default_factory=list, max_length=MAX_SAMPLES_PER_BATCH)

    @model_validator(mode="after")
    def _unique(self) -> RunIn:
        names = [c.name for c in self.components]
        if len(set(names)) != len(names):
            raise ValueError("component names must be unique within a run")
        paths = [f"{p.parent}/{p.name}" if p.parent else p.name for p in self.phases]
        if len(set(paths)) != len(paths):
            raise ValueError("phase paths (parent/name) must be unique within a run")
        return self


class RunStartIn(_Body):
    """A run that has just started (``RunStart``): recorded as running."""

    run_id: RunId
    project: Name
    started_at: Annotated[str, Field(min_length=10, max_length=40)]
    pid: Int32 = 0
    host: Annotated[str, Field(max_length=256)] = ""
    process_start_time: NonNeg = 0.0
    location: LocationIn
    pue: Annotated[float, Field(ge=1.0, le=10.0, allow_inf_nan=False)] = 1.0
    metadata: dict[Annotated[str, Field(max_length=256)], Any] = Field(
        default_factory=dict, max_length=MAX_METADATA_KEYS
    )
    meters: list[dict[Annotated[str, Field(max_length=64)], Any]] = Field(
        default_factory=list, max_length=MAX_COMPONENTS
    )
    pue_source: Text = ""
    price_per_kwh: NonNeg | None = None
    currency: Annotated[str, Field(max_length=8)] = ""
    price_source: Text = ""


class ProgressIn(_Body):
    """Running totals at a flush, so a killed run keeps what was measured."""

    duration_s: NonNeg
    energy_j: NonNeg
    facility_energy_j: NonNeg
    co2e_g: NonNeg
    components: dict[Annotated[str, Field(min_length=1, max_length=128)], NonNeg] = Field(
        default_factory=dict, max_length=MAX_COMPONENTS
    )


class SamplesIn(_Body):
    """A batch of samples of a running run; ``seq`` numbers the batches (re-posts are ignored)."""

    seq: Int32
    samples: list[SampleIn] = Field(max_length=MAX_SAMPLES_PER_BATCH)
    progress: ProgressIn


class SampleOut(BaseModel):
    """One stored sample: cumulative energy of a component at ``t_s``, mean power since the last."""

    t_s: float
    component: str
    energy_j: float
    power_w: float | None = None


class SamplePageOut(BaseModel):
    """One page of a run's samples in time order; ``next_cursor`` reads on (null: last page)."""

    run_id: str
    samples: list[SampleOut]
    next_cursor: str | None = None


class Accepted(BaseModel):
    """What the server did with a posted body."""

    run_id: str
    result: Literal["created", "updated", "duplicate", "exists"]
    samples_stored: int = 0


class Health(BaseModel):
    """``GET /api/v1/health``."""

    status: Literal["ok"]
    version: str
    schema_version: int
    read_auth: bool


class TokenInfo(BaseModel):
    """A token's public record (never the token itself)."""

    id: str
    name: str
    created_at: float
    revoked_at: float | None = None
    last_used_at: float | None = None
