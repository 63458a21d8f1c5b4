"""Where a tracker sends what it measures while it runs: the RunSink protocol.

The tracker knows only this protocol; the run store (``greenlm.store.StoreSink``) and the
team-server client implement it. Every call is made from the tracker's sampling thread or
from ``stop()``, and a sink that raises is disabled with one warning: a sink can never take
down the measured job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from greenlm.tracking.result import RunResult


@dataclass(frozen=True)
class RunStart:
    """What is known when a window opens: enough to build a partial result later.

    A run that is killed before its window closes has only this and its flushed progress, so
    the start carries every factor its :class:`~greenlm.tracking.result.RunResult` rests on:
    location, PUE and price with their sources, and each meter's ``band_low`` /
    ``band_high`` (relative band) in ``meters``. ``price_per_kwh`` is None in starts written
    by greenlm versions that did not record it (the store then says which default it used).
    """

    run_id: str
    project: str
    started_at: str
    pid: int
    host: str
    process_start_time: float
    location: dict[str, Any]
    pue: float
    metadata: dict[str, Any] = field(default_factory=dict)
    meters: list[dict[str, Any]] = field(default_factory=list)
    pue_source: str = ""
    price_per_kwh: float | None = None
    currency: str = ""
    price_source: str = ""


@dataclass(frozen=True)
class SampleRow:
    """One component's reading: cumulative energy and average power since the last sample."""

    t_s: float
    component: str
    energy_j: float
    power_w: float | None


@dataclass(frozen=True)
class Progress:
    """Running totals at a flush, so a killed run keeps what was measured."""

    duration_s: float
    energy_j: float
    facility_energy_j: float
    co2e_g: float
    components: dict[str, float]


@runtime_checkable
class RunSink(Protocol):
    """Receives a run's start, its samples in batches, and its final result."""

    def begin(self, run: RunStart) -> None: ...

    def flush(self, run_id: str, samples: list[SampleRow], progress: Progress) -> None: ...

    def finish(self, result: RunResult) -> None: ...
