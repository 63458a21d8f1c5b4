"""Meters: sensors that turn into cumulative joules, one small module per backend."""

from __future__ import annotations

from greenlm.meters.base import Band, IntegratingMeter, IntervalMeter, Meter, weakest
from greenlm.meters.detect import DetectContext, Detection, GpuFound, MeterStatus, detect, register_gpu_backend
from greenlm.meters.fake import ReplayMeter

__all__ = [
    "Band",
    "DetectContext",
    "Detection",
    "GpuFound",
    "IntegratingMeter",
    "IntervalMeter",
    "Meter",
    "MeterStatus",
    "ReplayMeter",
    "detect",
    "register_gpu_backend",
    "weakest",
]
