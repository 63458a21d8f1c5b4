"""Plausibility checks shared by the GPU backends: a board's power bound and a counter's sanity.

Vendor energy counters and power readings are not always right: AMD's energy accumulator
has stalled on some ROCm releases, early amdsmi integrations elsewhere reported megawatt
readings from single GPUs, and a GPU reset zeroes a counter mid-run. Two rules keep such
artefacts out of a result:

* **Bound.** No interval may carry more energy than the board can draw:
  ``max_power_w x (dt_s + 1 s)`` (the extra second absorbs counters that update in bursts).
  ``max_power_w`` is the board's maximum power limit as the driver reports it, else a
  1500 W ceiling (above every single accelerator board shipped as of 2025: MI355X 1400 W,
  B200 1000 W). A power *reading* above twice that maximum is discarded (held at the last
  plausible reading) and counted; short transients above the limit are real, a reading of
  twice the board's maximum is not.
* **Sanity of a counter against integrated power** (:class:`CounterCheck`). An interval is
  refused when the counter *jumps* (beyond the bound), *stalls* (no advance for 2 s while
  power reads at least 5 W) or, over each 10 s window, *disagrees* with the integrated
  power readings by more than 25 %. A refused counter is not trusted again: the meter
  raises :class:`CounterFault` and the tracker continues with power sampling (one warning,
  provenance ``sampled``), carrying over the energy the counter missed.

The 25 % tolerance is wide on purpose: power readings are averages over a firmware window
(about 1 s on AMD Instinct), so on a load that changes every few seconds the integral of the
readings lags the counter by up to half a window; the checks are for broken counters, not
for a few per cent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from greenlm.humanize import duration, energy, power

#: Ceiling used when the driver reports no power limit (W).
DEFAULT_MAX_POWER_W = 1500.0
#: Seconds of full power allowed on top of an interval's length (bursty counter updates).
SLACK_S = 1.0
#: A power reading above this multiple of the board's maximum is discarded.
READING_MARGIN = 2.0
#: Relative disagreement between counter and integrated power tolerated per window.
TOLERANCE = 0.25
#: Length of the windows the counter and the integrated power are compared over (s).
WINDOW_S = 10.0
#: A counter that does not move for this long while power reads >= STALL_MIN_W has stalled.
STALL_S = 2.0
STALL_MIN_W = 5.0


class CounterFault(RuntimeError):
    """An energy counter gave a reading that cannot be true; the meter must not be trusted."""


@dataclass(frozen=True)
class PowerLimit:
    """The most a board can plausibly draw, and where the figure comes from."""

    max_power_w: float
    source: str

    def max_energy_j(self, dt_s: float) -> float:
        """The most energy an interval of ``dt_s`` seconds can carry."""
        return self.max_power_w * (max(0.0, dt_s) + SLACK_S)

    def plausible_power(self, power_w: float) -> bool:
        """Whether a power reading can be true (finite, non-negative, below twice the maximum)."""
        return math.isfinite(power_w) and 0.0 <= power_w <= self.max_power_w * READING_MARGIN


def power_limit(candidates_w: list[tuple[float | None, str]]) -> PowerLimit:
    """The first plausible limit among ``(watts, what it is)`` candidates, else the ceiling."""
    for w, what in candidates_w:
        if w is not None and math.isfinite(w) and 1.0 <= w <= 20_000.0:
            return PowerLimit(float(w), f"{what} {w:.0f} W")
    return PowerLimit(DEFAULT_MAX_POWER_W, f"no board power limit reported: {DEFAULT_MAX_POWER_W:.0f} W assumed")


class PowerReadings:
    """Power readings passed through the plausibility bound: implausible ones are held and counted."""

    def __init__(self, limit: PowerLimit) -> None:
        self.limit = limit
        self.rejected = 0
        self.largest_rejected_w = 0.0
        self._last_good: float | None = None

    def accept(self, power_w: float) -> float | None:
        """The reading if plausible, else the last plausible one (``None`` before any)."""
        if self.limit.plausible_power(power_w):
            self._last_good = power_w
            return power_w
        self.rejected += 1
        if math.isfinite(power_w):
            self.largest_rejected_w = max(self.largest_rejected_w, abs(power_w))
        return self._last_good

    def warning(self, name: str) -> list[str]:
        """The result's warning about discarded readings (empty when none were)."""
        if not self.rejected:
            return []
        return [
            f"{name}: {self.rejected} power reading(s) above the plausible maximum "
            f"({READING_MARGIN:g} x {self.limit.source}) were discarded (largest "
            f"{power(self.largest_rejected_w)}); the last plausible reading was used instead"
        ]


class CounterCheck:
    """Judges an energy counter interval by interval against integrated power readings."""

    def __init__(self, limit: PowerLimit) -> None:
        self.limit = limit
        self._stall_s = 0.0
        self._stall_j = 0.0
        self._win_s = 0.0
        self._win_counter_j = 0.0
        self._win_power_j = 0.0
        #: Energy the counter missed, by the power readings, when it was refused (J).
        self.missed_j = 0.0
        #: Energy the counter counted beyond the power readings in the refused window (J).
        self.overcounted_j = 0.0

    def interval(self, counter_j: float, power_j: float | None, dt_s: float, power_w: float | None) -> None:
        """Accept one interval or raise :class:`CounterFault` saying what was wrong.

        ``counter_j``: the counter's energy over the interval; ``power_j``: the integrated
        power readings over it (``None`` if power could not be read); ``power_w``: the
        latest reading. On a fault, :attr:`missed_j` and :attr:`overcounted_j` say how the
        energy counted so far compares with the power readings.
        """
        if not math.isfinite(counter_j) or counter_j < 0:
            self.missed_j = power_j or 0.0
            raise CounterFault(f"energy counter went backwards ({energy(counter_j)} in {duration(dt_s)})")
        if counter_j > self.limit.max_energy_j(dt_s):
            self.missed_j = power_j or 0.0
            implied = counter_j / dt_s if dt_s > 0 else math.inf
            raise CounterFault(
                f"energy counter jumped by {energy(counter_j)} in {duration(dt_s)} "
                f"({power(implied)}), more than the board can draw ({self.limit.source})"
            )
        if power_j is None or power_w is None:
            return
        if counter_j == 0.0 and power_w >= STALL_MIN_W:
            self._stall_s += dt_s
            self._stall_j += power_j
            if self._stall_s >= STALL_S:
                self.missed_j = self._stall_j
                raise CounterFault(
                    f"energy counter stalled: no advance in {duration(self._stall_s)} while power read {power(power_w)}"
                )
        else:
            self._stall_s = self._stall_j = 0.0
        self._win_s += dt_s
        self._win_counter_j += counter_j
        self._win_power_j += power_j
        if self._win_s >= WINDOW_S:
            c, p, w = self._win_counter_j, self._win_power_j, self._win_s
            self._win_s = self._win_counter_j = self._win_power_j = 0.0
            if p >= STALL_MIN_W * w and abs(c - p) > TOLERANCE * p:
                accepted = c - counter_j  # this interval itself is not counted
                self.missed_j = max(0.0, p - accepted)
                self.overcounted_j = max(0.0, accepted - p)
                raise CounterFault(
                    f"energy counter disagrees with integrated power readings: {energy(c)} vs "
                    f"{energy(p)} over {duration(w)} (more than {TOLERANCE:.0%} apart)"
                )
