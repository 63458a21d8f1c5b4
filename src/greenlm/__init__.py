"""greenlm: measure, predict and cut the energy use and carbon emissions of language models.

The public API is the names in ``__all__``; everything else is implementation. Importing
greenlm makes no network call and imports no heavy library (torch, SQLAlchemy, NVML load
lazily).
"""

from __future__ import annotations

import logging

from greenlm.carbon import CarbonConfig, GridIntensity, resolve_location
from greenlm.config import TrackerConfig
from greenlm.errors import (
    ConfigError,
    GreenlmError,
    LocationNotFoundError,
    MeterUnavailableError,
    MissingExtraError,
    ResultNotReadyError,
    RunNotFoundError,
    StoreError,
)
from greenlm.tracking import ComponentEnergy, EnergyTracker, PhaseEnergy, RunResult, track_energy
from greenlm.tracking.sink import register_destination as _register_destination

__version__ = "0.1.0"

__all__ = [
    "CarbonConfig",
    "ComponentEnergy",
    "ConfigError",
    "EnergyTracker",
    "GreenlmError",
    "GridIntensity",
    "LocationNotFoundError",
    "MeterUnavailableError",
    "MissingExtraError",
    "PhaseEnergy",
    "ResultNotReadyError",
    "RunNotFoundError",
    "RunResult",
    "StoreError",
    "TrackerConfig",
    "__version__",
    "monitor",
    "resolve_location",
    "track_energy",
]


def __getattr__(name: str) -> object:
    # ``greenlm.monitor`` (live inference monitoring) pulls in its own dependencies lazily.
    if name == "monitor":
        from greenlm.integrations.monitor import monitor

        return monitor
    raise AttributeError(f"module 'greenlm' has no attribute {name!r}")


logging.getLogger(__name__).addHandler(logging.NullHandler())

# Where every tracking window sends its run, unless told otherwise (``store=False``, a
# ``RunSink`` of its own, no team server configured). The tracker knows only the RunSink
# protocol; this is the one place that wires its default destinations, by name, so that
# neither the store nor the outbox is imported before a window opens.
_register_destination("run store", "greenlm.store.sink:open_destination", kind="local")
_register_destination("team server", "greenlm.tracking.outbox:open_destination", kind="remote")
