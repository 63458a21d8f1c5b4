"""Meters: sensors that turn into cumulative joules, one small module per backend."""

from __future__ import annotations

from greenlm.meters.base import Band, IntegratingMeter, IntervalMeter, Meter, weakest
from greenlm.meters.detect import Detection, MeterStatus, detect
from greenlm.meters.fake import ReplayMeter

__all__ = [
    "Band",
    "Detection",
    "IntegratingMeter",
    "IntervalMeter",
    "Meter",
    "MeterStatus",
    "ReplayMeter",
    "detect",
    "weakest",
]
