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
    """What is known when a window opens."""

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
