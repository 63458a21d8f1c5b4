"""Pydantic models of the ingest API's bodies: validated, bounded, finite.

Every body a tracker sends is checked here before it reaches the store: numbers must be
finite (no NaN or infinity) and within the ranges of :mod:`greenlm.limits` (the same the
tracker enforces: an energy above ``ENERGY_J_MAX``, a power above ``POWER_W_MAX``, a PUE
outside ``PUE`` is refused), names and paths fit the lengths of ``limits`` (and so the
store's columns), strings have no NUL characters (PostgreSQL rejects them), lists have item
limits, metadata at most ``METADATA_JSON_BYTES``. Together with the byte limit
on the request body this turns any malformed or oversized input into a 4xx answer, never a
500. Unknown keys in a run result are accepted and ignored (the result JSON only ever gains
keys), so an older server accepts runs from a newer tracker.

The bodies mirror the tracker's types field for field: ``RunIn`` is ``RunResult.to_dict``,
``RunStartIn`` is ``RunStart``, and so on; ``tests/server/test_models.py`` checks every
dataclass field has its model field, so a field added to a result cannot be forgotten here.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from greenlm import limits as L

MAX_COMPONENTS = 1024
MAX_PHASES = 10_000
MAX_TIMELINE = 100_000
MAX_SAMPLES_PER_BATCH = 50_000
MAX_METADATA_KEYS = 200
#: Grid intensity, g CO2e/kWh: the dirtiest grids are about 1,000-1,200; 5,000 refuses overflow.
INTENSITY_G_PER_KWH_MAX = 5000.0
_J_PER_KWH = 3.6e6
#: Facility energy: a run's IT energy at the highest PUE.
FACILITY_J_MAX = L.ENERGY_J_MAX * L.PUE[1]
CO2E_G_MAX = FACILITY_J_MAX / _J_PER_KWH * INTENSITY_G_PER_KWH_MAX
COST_MAX = FACILITY_J_MAX / _J_PER_KWH * L.PRICE_PER_KWH[1]

RunId = Annotated[str, Field(min_length=1, max_length=L.RUN_ID_CHARS, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]
Name = Annotated[str, Field(min_length=1, max_length=L.PROJECT_CHARS)]
Text = Annotated[str, Field(max_length=4096)]
ComponentName = Annotated[str, Field(min_length=1, max_length=L.COMPONENT_CHARS)]
Host = Annotated[str, Field(max_length=L.HOST_CHARS)]
Currency = Annotated[str, Field(max_length=L.CURRENCY_CHARS)]
#: Physical quantities, finite and within ``greenlm.limits`` (the tracker's own bounds), so a
#: 1e29 J sample is refused here, sums stay finite, and everything is JSON-safe.
Energy = Annotated[float, Field(ge=0.0, le=L.ENERGY_J_MAX, allow_inf_nan=False)]
FacilityEnergy = Annotated[float, Field(ge=0.0, le=FACILITY_J_MAX, allow_inf_nan=False)]
Kwh = Annotated[float, Field(ge=0.0, le=FACILITY_J_MAX / _J_PER_KWH, allow_inf_nan=False)]
Co2e = Annotated[float, Field(ge=0.0, le=CO2E_G_MAX, allow_inf_nan=False)]
Cost = Annotated[float, Field(ge=0.0, le=COST_MAX, allow_inf_nan=False)]
Duration = Annotated[float, Field(ge=0.0, le=L.DURATION_S_MAX, allow_inf_nan=False)]
Power = Annotated[float, Field(ge=-L.POWER_W_MAX, le=L.POWER_W_MAX, allow_inf_nan=False)]
Pue = Annotated[float, Field(ge=L.PUE[0], le=L.PUE[1], allow_inf_nan=False)]
PricePerKwh = Annotated[float, Field(ge=L.PRICE_PER_KWH[0], le=L.PRICE_PER_KWH[1], allow_inf_nan=False)]
Intensity = Annotated[float, Field(ge=0.0, le=INTENSITY_G_PER_KWH_MAX, allow_inf_nan=False)]
#: Other numbers (epoch seconds): finite and below 1e30.
NonNeg = Annotated[float, Field(ge=0.0, le=1e30, allow_inf_nan=False)]
#: Integers stored in 32-bit SQL columns (PostgreSQL ``integer``).
Int32 = Annotated[int, Field(ge=0, le=2**31 - 1)]
Status = Literal["running", "completed", "failed", "interrupted"]


def _metadata_size(m: dict[str, Any]) -> dict[str, Any]:
    size = len(json.dumps(m, default=str).encode("utf-8"))
    if size > L.METADATA_JSON_BYTES:
        raise ValueError(f"metadata is {size} bytes as JSON; at most {L.METADATA_JSON_BYTES} are accepted")
    return m


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

    name: ComponentName
    kind: Annotated[str, Field(max_length=8)]
    energy_j: Energy
    provenance: Literal["counter", "sampled", "modeled"]
    low_j: Energy
    high_j: Energy
    scope: Annotated[str, Field(max_length=16)] = "device"
    detail: Text = ""
    node: Host | None = None
    rank: Annotated[int, Field(ge=0, le=10_000_000)] | None = None
    #: The whole device's energy when the component is a share of it (a shared GPU, MIG).
    device_energy_j: Energy | None = None


class PhaseIn(_Body):
    """One phase of a finished run (nested phases name their parent's path)."""

    name: Annotated[str, Field(min_length=1, max_length=L.PHASE_NAME_CHARS)]
    parent: Annotated[str, Field(max_length=L.PHASE_PATH_CHARS)] | None = None
    energy_j: Energy
    duration_s: Duration
    steps: Int32 = 0
    entries: Int32 = 1
    co2e_g: Co2e = 0.0

    @model_validator(mode="after")
    def _path_fits(self) -> PhaseIn:
        path = f"{self.parent}/{self.name}" if self.parent else self.name
        if len(path) > L.PHASE_PATH_CHARS:
            raise ValueError(f"the phase path is {len(path)} characters; at most {L.PHASE_PATH_CHARS} are allowed")
        if path.count("/") + 1 > L.PHASE_DEPTH:
            raise ValueError(f"phases nest at most {L.PHASE_DEPTH} deep")
        return self


class TimelinePointIn(_Body):
    """Average power per component over the interval ending at ``t_s``."""

    t_s: Duration
    power_w: dict[ComponentName, Power] = Field(max_length=MAX_COMPONENTS)


class LocationIn(_Body):
    """The grid location and intensity a run used (extra keys kept as sent)."""

    model_config = ConfigDict(extra="allow")

    code: Annotated[str, Field(max_length=L.LOCATION_CHARS)] | None = None
    intensity_g_per_kwh: Intensity


class SampleIn(_Body):
    """One component's reading: cumulative energy and average power since the last sample."""

    t_s: Duration
    component: ComponentName
    energy_j: Energy
    power_w: Power | None = None


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
    duration_s: Duration
    energy_j: Energy
    energy_low_j: Energy | None = None
    energy_high_j: Energy | None = None
    facility_energy_j: FacilityEnergy
    energy_kwh: Kwh
    co2e_g: Co2e
    co2e_low_g: Co2e | None = None
    co2e_high_g: Co2e | None = None
    cost: Cost
    currency: Currency
    price_per_kwh: PricePerKwh = 0.0
    price_source: Text = ""
    pue: Pue
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
    host: Host = ""
    error: Text | None = None
    forecast: dict[Annotated[str, Field(max_length=64)], Any] | None = Field(default=None, max_length=64)
    meters: list[dict[Annotated[str, Field(max_length=64)], Any]] = Field(
        default_factory=list, max_length=MAX_COMPONENTS
    )
    samples: list[SampleIn] = Field(default_factory=list, max_length=MAX_SAMPLES_PER_BATCH)

    @field_validator("metadata")
    @classmethod
    def _metadata_bytes(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _metadata_size(v)

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
    host: Host = ""
    process_start_time: NonNeg = 0.0
    location: LocationIn
    pue: Pue = 1.0
    metadata: dict[Annotated[str, Field(max_length=256)], Any] = Field(
        default_factory=dict, max_length=MAX_METADATA_KEYS
    )
    meters: list[dict[Annotated[str, Field(max_length=64)], Any]] = Field(
        default_factory=list, max_length=MAX_COMPONENTS
    )
    pue_source: Text = ""
    price_per_kwh: PricePerKwh | None = None
    currency: Currency = ""
    price_source: Text = ""

    @field_validator("metadata")
    @classmethod
    def _metadata_bytes(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _metadata_size(v)


class ProgressIn(_Body):
    """Running totals at a flush, so a killed run keeps what was measured."""

    duration_s: Duration
    energy_j: Energy
    facility_energy_j: FacilityEnergy
    co2e_g: Co2e
    components: dict[ComponentName, Energy] = Field(default_factory=dict, max_length=MAX_COMPONENTS)


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
    scopes: list[str] = Field(default_factory=list)
    owner: str = ""
