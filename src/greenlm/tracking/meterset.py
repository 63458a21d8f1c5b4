"""The meters of one window: read them all, survive the ones that fail, describe the rest.

A meter that raises mid-run is replaced by its :meth:`~greenlm.meters.base.Meter.fallback`
(an NVML counter by power sampling, RAPL by the CPU model), keeping what it measured so far,
with one warning; a meter with no fallback is frozen at its last reading ("energy after this
point is not counted"). The tracker never branches on the kind of device: it reads
``MeterSet.read()`` and gets one cumulative figure per component.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from greenlm.meters.base import Meter, weakest
from greenlm.tracking.result import ComponentEnergy

log = logging.getLogger(__name__)


@dataclass
class _Slot:
    """One component's meter, and what is carried over if it had to fall back."""

    meter: Meter
    offset_j: float = 0.0
    offset_low_j: float = 0.0
    offset_high_j: float = 0.0
    last_j: float = 0.0
    provenances: list[str] = field(default_factory=list)
    failed: bool = False
    #: The whole device's energy measured by the meters this slot replaced.
    offset_device_j: float = 0.0
    #: Some meter of this slot charged only part of its device (``device_energy_j``).
    partial: bool = False

    def bounds_j(self) -> tuple[float, float]:
        lo, hi = self.meter.bounds_j(self.last_j - self.offset_j)
        return self.offset_low_j + lo, self.offset_high_j + hi

    def device_j(self) -> float | None:
        """The whole device's energy so far, for slots that charged part of it (else ``None``)."""
        d = self.meter.device_energy_j()
        if d is None and not self.partial:
            return None
        return self.offset_device_j + (d if d is not None else self.last_j - self.offset_j)

    def provenance(self) -> str:
        """The weakest method used so far (a meter may weaken its own during the run)."""
        return weakest([*self.provenances, self.meter.provenance])


class MeterSet:
    """The window's meters, in a fixed order (their names are the window's components)."""

    def __init__(self, meters: Sequence[Meter], warnings: list[str]) -> None:
        self._slots = [_Slot(m, provenances=[m.provenance]) for m in meters]
        self._warnings = warnings
        self.info: list[dict[str, Any]] = []

    def start(self) -> None:
        """Start every meter; one that cannot start is dropped with a warning."""
        for s in list(self._slots):
            try:
                s.meter.start()
            except Exception as e:
                self._warnings.append(f"{s.meter.name}: failed to start ({e}); not measured")
                self._slots.remove(s)
        self.info = [s.meter.describe() for s in self._slots]

    @property
    def meters(self) -> list[Meter]:
        return [s.meter for s in self._slots]

    @property
    def names(self) -> list[str]:
        return [s.meter.name for s in self._slots]

    def read(self) -> list[float]:
        """Cumulative joules of every component now (failures handled, never raises)."""
        out = []
        for s in self._slots:
            try:
                e = s.offset_j + s.meter.energy_j()
            except Exception as ex:
                e = self._fail_over(s, ex)
            s.last_j = max(e, s.last_j)
            out.append(s.last_j)
        return out

    def _fail_over(self, s: _Slot, ex: Exception) -> float:
        """A meter failed mid-run: keep what it measured, switch to its fallback if any."""
        lo, hi = s.bounds_j()
        with contextlib.suppress(Exception):  # what the failed meter noticed stays on the record
            dev = s.device_j()
            if dev is not None:
                s.offset_device_j, s.partial = dev, True
            s.provenances.append(s.meter.provenance)
            self._note(s.meter.warnings())
        s.offset_j, s.offset_low_j, s.offset_high_j = s.last_j, lo, hi
        new: Meter | None = None
        try:
            new = s.meter.fallback()
            if new is not None:
                new.start()
        except Exception:
            new = None
        if new is not None:
            self._warnings.append(f"{s.meter.name}: meter failed ({ex}); continued with {new.provenance} readings")
            s.meter = new
            s.provenances.append(new.provenance)
        elif not s.failed:
            self._warnings.append(f"{s.meter.name}: meter failed ({ex}); energy after this point is not counted")
            s.failed = True
            s.meter = _Frozen(s.meter)
        return s.last_j

    def _note(self, warnings: list[str]) -> None:
        for w in warnings:
            if w not in self._warnings:
                self._warnings.append(w)

    def components(self, energies_j: Sequence[float]) -> list[ComponentEnergy]:
        """The window's components at the given cumulative energies (normally the last sample)."""
        out = []
        for s, e in zip(self._slots, energies_j):
            lo, hi = s.bounds_j()
            device_j: float | None = None
            try:
                self._note(s.meter.warnings())
                device_j = s.device_j()
            except Exception as ex:  # a meter's report must not cost the result
                log.debug("greenlm: %s: could not report: %s", s.meter.name, ex)
            out.append(
                ComponentEnergy(
                    name=s.meter.name,
                    kind=s.meter.kind,
                    energy_j=e,
                    provenance=s.provenance(),
                    low_j=min(lo, e),
                    high_j=max(hi, e),
                    scope=str(s.meter.describe().get("scope", "device")),
                    detail=s.meter.band.source,
                    device_energy_j=None if device_j is None else max(device_j, e),
                )
            )
        return out

    def bands(self) -> list[dict[str, Any]]:
        """Each meter's band, for the run's start record (a partial run's bounds come from it)."""
        return [
            {"name": s.meter.name, "band_low": s.meter.band.low, "band_high": s.meter.band.high} for s in self._slots
        ]

    def close(self) -> None:
        for s in self._slots:
            with contextlib.suppress(Exception):
                s.meter.close()


class _Frozen(Meter):
    """Stands in for a failed meter with no fallback: no more energy."""

    def __init__(self, failed: Meter) -> None:
        super().__init__()
        self.name, self.kind, self.provenance, self.band = failed.name, failed.kind, failed.provenance, failed.band

    def start(self) -> None:
        pass

    def energy_j(self) -> float:
        return 0.0

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "failed": True}
