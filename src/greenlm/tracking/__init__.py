"""Tracking: measuring windows, phases and steps, and their frozen results."""

from __future__ import annotations

from greenlm.tracking.result import ComponentEnergy, PhaseEnergy, RunResult, TimelinePoint
from greenlm.tracking.sink import Progress, RunSink, RunStart, SampleRow
from greenlm.tracking.tracker import EnergyTracker, track_energy

__all__ = [
    "ComponentEnergy",
    "EnergyTracker",
    "PhaseEnergy",
    "Progress",
    "RunResult",
    "RunSink",
    "RunStart",
    "SampleRow",
    "TimelinePoint",
    "track_energy",
]
