"""The Meter protocol: a sensor that turns into cumulative joules.

A meter measures one component (a GPU, a CPU package, RAM). The tracker only ever calls
:meth:`Meter.energy_j` (cumulative joules since :meth:`Meter.start`) and reads
``last_power_w`` for the timeline; it never branches on the kind of device. Meters that can
only sample power integrate it themselves (:class:`IntegratingMeter`).

Provenance, in order of trust:

* ``counter``: a hardware energy counter (NVML total energy, RAPL);
* ``sampled``: instantaneous power readings integrated over time (NVML power);
* ``modeled``: a power model fed by utilisation (CPU TDP model, RAM W/GB model).
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass
from typing import Literal

Kind = Literal["gpu", "cpu", "ram"]
Provenance = Literal["counter", "sampled", "modeled"]

#: Most to least trustworthy; a run's overall provenance is its least trustworthy component.
PROVENANCE_ORDER: tuple[Provenance, ...] = ("counter", "sampled", "modeled")


def weakest(provenances: list[str]) -> str:
    """The least trustworthy provenance among ``provenances`` (``counter`` if empty)."""
    worst = 0
    for p in provenances:
        worst = max(worst, PROVENANCE_ORDER.index(p))  # type: ignore[arg-type,unused-ignore]
    return PROVENANCE_ORDER[worst]


@dataclass(frozen=True)
class Band:
    """Relative uncertainty of a meter's energy: ``low_j = energy_j * low``, ``high_j = energy_j * high``."""

    low: float = 1.0
    high: float = 1.0
    source: str = "hardware counter: exact to the counter's resolution"


class Meter(abc.ABC):
    """One component's energy meter."""

    #: Unique, human-readable component name, e.g. ``gpu:0``, ``cpu:package-0``, ``ram``.
    name: str
    kind: Kind
    provenance: Provenance
    band: Band = Band()
    #: Per-node meters (CPU, RAM) are counted once per node in distributed runs.
    node_level: bool = False

    def __init__(self) -> None:
        self.last_power_w: float | None = None

    @abc.abstractmethod
    def start(self) -> None:
        """Zero the meter: later :meth:`energy_j` calls count from here."""

    @abc.abstractmethod
    def energy_j(self) -> float:
        """Cumulative joules since :meth:`start`. Called from the sampling thread."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release handles (files, libraries)."""

    def fallback(self) -> Meter | None:
        """A meter to continue with if this one fails mid-run (``None``: no fallback).

        The tracker calls it once, after :meth:`energy_j` raised; the replacement is started
        by the tracker and counts from there (what this meter measured is kept). An NVML
        counter falls back to NVML power sampling, RAPL to the CPU power model.
        """
        return None

    def bounds_j(self, energy_j: float) -> tuple[float, float]:
        """Low and high bound of ``energy_j``, this meter's reading since :meth:`start`.

        By default the band applied to the reading; models that integrate a band of their
        own (the CPU model's low and high power curves) override it.
        """
        return energy_j * self.band.low, energy_j * self.band.high

    def device_energy_j(self) -> float | None:
        """The whole device's joules since :meth:`start`, for meters that charge only part of it.

        ``None`` (the default) for meters that measure their device whole. A meter that
        attributes a share of a shared GPU, or a MIG instance's share of its GPU, returns
        the GPU's total here, so the result can keep it beside the attributed figure.
        """
        return None

    def warnings(self) -> list[str]:
        """What this meter noticed during the run that the result must say (default: nothing).

        Read when the window closes (and when the meter is replaced by its fallback): a share
        model that switched on, readings rejected as implausible, a device that reported no
        energy at all.
        """
        return []

    def describe(self) -> dict[str, object]:
        """What this meter is, for ``greenlm detect`` and result metadata."""
        return {"name": self.name, "kind": self.kind, "provenance": self.provenance}


class IntegratingMeter(Meter):
    """A meter that only knows power: integrates ``read_power_w`` between calls (trapezoid)."""

    def __init__(self, clock: object = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._t: float | None = None
        self._p: float = 0.0
        self._e: float = 0.0

    @abc.abstractmethod
    def read_power_w(self) -> float:
        """Instantaneous power now, in watts."""

    def start(self) -> None:
        self._t = self._clock()  # type: ignore[operator]
        self._p = self.read_power_w()
        self.last_power_w = self._p
        self._e = 0.0

    def energy_j(self) -> float:
        now = self._clock()  # type: ignore[operator]
        p = self.read_power_w()
        if self._t is not None:
            self._e += 0.5 * (p + self._p) * max(0.0, now - self._t)
        self._t, self._p = now, p
        self.last_power_w = p
        return self._e


class IntervalMeter(Meter):
    """A meter whose model gives the *average* power over the interval since the last call.

    Utilisation-based models work this way: CPU busy time over an interval gives the average
    power over that interval exactly, so energy is ``mean_power_w * dt`` with no trapezoid.
    """

    def __init__(self, clock: object = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._t: float | None = None
        self._e = 0.0

    @abc.abstractmethod
    def _reset(self) -> None:
        """Take the reference readings the next :meth:`mean_power_w` is measured from."""

    @abc.abstractmethod
    def mean_power_w(self, dt_s: float) -> float:
        """Average power since the previous call (or :meth:`_reset`)."""

    def start(self) -> None:
        self._reset()
        self._t = self._clock()  # type: ignore[operator]
        self._e = 0.0

    def energy_j(self) -> float:
        now = self._clock()  # type: ignore[operator]
        dt = now - (self._t if self._t is not None else now)
        if dt > 0:
            p = self.mean_power_w(dt)
            self._e += p * dt
            self.last_power_w = p
            self._t = now
        return self._e
