"""Tracking: measuring windows, phases and steps, and their frozen results."""

from __future__ import annotations

from greenlm.tracking.listeners import Listener
from greenlm.tracking.result import ComponentEnergy, PhaseEnergy, RunResult, TimelinePoint
from greenlm.tracking.sink import DeliveryReport, Progress, RunSink, RunStart, SampleRow, register_destination
from greenlm.tracking.tracker import EnergyTracker, track_energy

__all__ = [
    "ComponentEnergy",
    "DeliveryReport",
    "EnergyTracker",
    "Listener",
    "PhaseEnergy",
    "Progress",
    "RunResult",
    "RunSink",
    "RunStart",
    "SampleRow",
    "TimelinePoint",
    "register_destination",
    "track_energy",
]
