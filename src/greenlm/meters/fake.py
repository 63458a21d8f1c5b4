"""A replay meter: known power over time, for tests and demos without hardware.

``ReplayMeter("gpu:0", "gpu", power_w=300.0)`` draws a constant 300 W;
``power_w=[(0.0, 100.0), (2.0, 300.0)]`` is a piecewise-constant trace (seconds since
start, watts). Energy is exact (integrated analytically), so tests can check the tracker's
attribution to phases against a known answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from greenlm.meters.base import Band, Meter


class ReplayMeter(Meter):
    """Replays a power trace; energy is the exact integral of the trace."""

    def __init__(
        self,
        name: str,
        kind: str = "gpu",
        power_w: float | Sequence[tuple[float, float]] = 100.0,
        provenance: str = "sampled",
        clock: Callable[[], float] = time.monotonic,
        node_level: bool = False,
        band: Band | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.kind = kind  # type: ignore[assignment]
        self.provenance = provenance  # type: ignore[assignment]
        self.node_level = node_level
        if band is not None:
            self.band = band
        self._trace = (
            [(0.0, float(power_w))] if isinstance(power_w, (int, float)) else [(float(t), float(p)) for t, p in power_w]
        )
        self._clock = clock
        self._t0 = 0.0

    def power_at(self, t_s: float) -> float:
        """Power of the trace ``t_s`` seconds after start."""
        p = self._trace[0][1]
        for t, w in self._trace:
            if t <= t_s:
                p = w
        return p

    def integral_j(self, t_s: float) -> float:
        """Exact energy of the trace from 0 to ``t_s``."""
        e = 0.0
        for i, (t, w) in enumerate(self._trace):
            if t >= t_s:
                break
            end = self._trace[i + 1][0] if i + 1 < len(self._trace) else t_s
            e += w * (min(end, t_s) - max(t, 0.0))
        return e

    def start(self) -> None:
        self._t0 = self._clock()

    def energy_j(self) -> float:
        t = self._clock() - self._t0
        self.last_power_w = self.power_at(t)
        return self.integral_j(t)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "replay": True, "scope": "device"}
