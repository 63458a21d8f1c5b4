"""Where a tracker sends what it measures while it runs: the RunSink protocol and the destinations.

The tracker knows only this protocol; the run store (``greenlm.store.StoreSink``) and the
team-server outbox (``greenlm.tracking.outbox.HttpSink``) implement it. Every call is made
from the tracker's own threads or from ``stop()``, and a sink that raises is isolated with a
warning: a sink can never take down the measured job.

Which destinations a window has is a registry, :data:`DESTINATIONS`, filled in by the
package that composes greenlm (``greenlm/__init__.py``: the run store and the team server),
so the tracker imports neither: each entry opens its sink from the resolved configuration,
or answers ``None`` when it is not configured (no team server URL).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from greenlm.tracking.result import RunResult

if TYPE_CHECKING:
    from greenlm.config import TrackerConfig


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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunStart:
        """Rebuild from ``dataclasses.asdict`` output (spool and outbox files); unknown keys ignored."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})


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


@dataclass(frozen=True)
class DeliveryReport:
    """Where one destination stands after a run: ``stored``, ``waiting`` or ``failed``.

    ``waiting``: the run (or part of it) is kept on disk (``where``) and written when the
    destination is back, by a later run, any greenlm command that opens the store, or
    ``greenlm server push``; ``failed``: it could not even be kept.
    """

    destination: str
    state: str
    detail: str = ""
    where: str | None = None
    pending_events: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "state": self.state,
            "detail": self.detail,
            "where": self.where,
            "pending_events": self.pending_events,
        }


Opener = Callable[["TrackerConfig"], "RunSink | None"]


@dataclass(frozen=True)
class Destination:
    """A registered destination: its kind (``local``: the run store, replaced or skipped by
    ``EnergyTracker(store=...)``; ``remote``: a team server), and how to open it.
    """

    name: str
    kind: str
    opener: str | Opener

    def open(self, config: TrackerConfig) -> RunSink | None:
        fn = self.opener
        if isinstance(fn, str):
            module, _, attr = fn.partition(":")
            fn = getattr(importlib.import_module(module), attr)
        return fn(config)


#: The destinations every window opens, in order. Filled in by ``greenlm/__init__.py``.
DESTINATIONS: list[Destination] = []


def register_destination(name: str, opener: str | Opener, *, kind: str = "remote") -> None:
    """Add (or replace, by name) a destination: ``opener(config) -> RunSink | None``, or
    ``"module:function"`` (imported when a window first opens it).
    """
    if kind not in ("local", "remote"):
        raise ValueError(f"kind must be 'local' or 'remote', got {kind!r}")
    DESTINATIONS[:] = [d for d in DESTINATIONS if d.name != name]
    DESTINATIONS.append(Destination(name, kind, opener))
