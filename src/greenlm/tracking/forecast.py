"""In-run forecast: predict a run's total energy from its first steps.

Like Carbontracker's prediction after the first epoch (Anthony et al. 2020), but per step and
excluding warm-up (compilation, cache fills, data-loader start), which costs more than a
steady step and would inflate a linear extrapolation.

``total = energy of all completed steps + remaining steps x mean steady-step energy``.

The band covers three things: the uncertainty of the mean steady-step energy (2 standard
errors), the step-to-step noise summed over the remaining steps, and a drift check — the
mean of the first and of the second half of the steady steps, each extrapolated, so that a
trend (thermal throttling, growing sequence length) widens the band instead of hiding.

Memory is bounded: the half means need prefix sums of the steady steps, kept at a stride
that doubles whenever more than :data:`PREFIX_POINTS` would be kept, so a run of any length
costs at most ``8 * PREFIX_POINTS`` bytes (512 KiB); below that many steady steps the
forecast is exact, above it the split between the halves moves by at most one stride
(under 1 / 32768 of the run), which changes the drift check negligibly.

This lives in ``tracking`` because the tracker forecasts while it runs; the estimator
re-exports it (``greenlm.estimate.forecast_total``).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

from greenlm._validate import finite
from greenlm.errors import ConfigError

#: Most prefix sums a forecaster keeps (see the module docstring).
PREFIX_POINTS = 1 << 16


@dataclass(frozen=True)
class Forecast:
    """Predicted total energy of a run (J), its band, and what the prediction rests on."""

    energy_j: float
    low_j: float
    high_j: float
    done_energy_j: float
    steps_completed: int
    steps_used: int  # steady steps the mean is based on (completed minus warm-up)
    total_steps: int
    mean_step_energy_j: float
    duration_s: float | None = None  # predicted total duration, when step times were given
    method: str = "linear extrapolation of the mean steady-step energy, warm-up excluded"

    @property
    def fraction_done(self) -> float:
        return self.steps_completed / self.total_steps

    def to_dict(self) -> dict[str, object]:
        return {
            "energy_j": self.energy_j,
            "low_j": self.low_j,
            "high_j": self.high_j,
            "done_energy_j": self.done_energy_j,
            "steps_completed": self.steps_completed,
            "steps_used": self.steps_used,
            "total_steps": self.total_steps,
            "mean_step_energy_j": self.mean_step_energy_j,
            "duration_s": self.duration_s,
            "method": self.method,
        }


class StepForecaster:
    """The forecast built step by step: O(1) work per step and per forecast.

    The tracker feeds it each step's energy once the step is final and asks for a forecast
    at every flush; a run of millions of steps costs the sampling thread (and the job's GIL)
    no more at the end than at the start. :func:`forecast_total` is the same computation
    over a list.
    """

    def __init__(self, warmup_steps: int = 1) -> None:
        self.warmup_steps = int(finite("warmup_steps", warmup_steps, minimum=0.0))
        self.steps = 0
        self._spent_j = 0.0
        # prefix sums of steady-step energies (for the half means), every `_stride`-th one:
        # 8 bytes each in an array, at most PREFIX_POINTS of them
        self._steady_prefix_j = array("d", [0.0])
        self._stride = 1
        self._steady_n = 0
        self._steady_sum_j = 0.0
        self._mean_j = 0.0  # Welford mean and sum of squared deviations of steady steps
        self._m2 = 0.0
        self._time_s: float | None = 0.0
        self._steady_time_s = 0.0

    def add(self, energy_j: float, duration_s: float | None = None, count: int = 1) -> None:
        """Record ``count`` completed steps of ``energy_j`` (J) each and, optionally, ``duration_s`` (s) each.

        ``count > 1`` is what ``tracker.step(n)`` reports: n steps whose total energy is known,
        each given the mean; O(log) work whatever ``count`` is.
        """
        e = finite(f"step_energies_j[{self.steps}]", energy_j, minimum=0.0)
        d = None if duration_s is None else finite(f"step_times_s[{self.steps}]", duration_s, minimum=0.0)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(f"count must be a positive whole number of steps, got {count!r}.")
        warm_left = max(0, self.warmup_steps - self.steps)
        self.steps += count
        self._spent_j += e * count
        if d is None or self._time_s is None:
            self._time_s = None
        else:
            self._time_s += d * count
        steady = count - min(count, warm_left)
        if steady <= 0:
            return
        # Welford, merging a group of `steady` identical values (mean e, no spread)
        n_a = self._steady_n
        n = n_a + steady
        delta = e - self._mean_j
        self._mean_j += delta * steady / n
        self._m2 += delta * delta * n_a * steady / n
        if d is not None:
            self._steady_time_s += d * steady
        # prefix sums at every multiple of the stride crossed by these steps
        k = (n_a // self._stride + 1) * self._stride
        while k <= n:
            self._steady_prefix_j.append(self._steady_sum_j + e * (k - n_a))
            if len(self._steady_prefix_j) > PREFIX_POINTS:
                self._steady_prefix_j = self._steady_prefix_j[::2]  # keeps index 0 and every even point
                self._stride *= 2
                k = (k // self._stride + 1) * self._stride
            else:
                k += self._stride
        self._steady_n = n
        self._steady_sum_j += e * steady

    def forecast(self, total_steps: int) -> Forecast:
        """The forecast for a run of ``total_steps`` steps from the steps added so far."""
        done = self.steps
        total = int(finite("total_steps", total_steps, minimum=1.0))
        warm = self.warmup_steps
        if done > total:
            raise ConfigError(
                f"{done} steps completed but total_steps is {total}: total_steps must "
                "be the number of steps of the whole run."
            )
        n = self._steady_n
        if n < 2:
            raise ConfigError(
                f"A forecast needs at least 2 steps after the {warm} warm-up step(s); {done} "
                f"completed. Forecast after at least {warm + 2} steps."
            )
        spent = self._spent_j
        remaining = total - done
        mean = self._mean_j
        sd = math.sqrt(max(self._m2, 0.0) / (n - 1))
        central = spent + remaining * mean
        # Uncertainty of the rate, plus noise of the remaining steps (independent steps).
        spread = 2.0 * math.sqrt(remaining**2 * sd**2 / n + remaining * sd**2)
        half = (n // 2) // self._stride * self._stride or self._stride
        cut = self._steady_prefix_j[half // self._stride]
        first, second = cut / half, (self._steady_sum_j - cut) / (n - half)
        low = min(central - spread, spent + remaining * min(first, second))
        high = max(central + spread, spent + remaining * max(first, second))
        duration = None
        if self._time_s is not None:
            duration = self._time_s + remaining * (self._steady_time_s / n)
        return Forecast(
            energy_j=central,
            low_j=max(spent, low),
            high_j=high,
            done_energy_j=spent,
            steps_completed=done,
            steps_used=n,
            total_steps=total,
            mean_step_energy_j=mean,
            duration_s=duration,
        )


def forecast_total(
    step_energies_j: Sequence[float],
    total_steps: int,
    warmup_steps: int = 1,
    step_times_s: Sequence[float] | None = None,
) -> Forecast:
    """Forecast the total energy of a run of ``total_steps`` steps.

    Args:
        step_energies_j: energy of each completed step, in joules, oldest first (per step,
            not cumulative).
        total_steps: the number of steps the whole run will have (>= completed steps).
        warmup_steps: leading steps excluded from the mean (they are still counted in the
            energy already spent). At least two steps must remain after them.
        step_times_s: optional duration of each completed step (s), to forecast the total
            duration the same way.

    Returns:
        A :class:`Forecast` with ``energy_j`` and the ``low_j``/``high_j`` band. When the run
        is complete (``len(step_energies_j) == total_steps``) the band collapses to the
        measured total.

    Raises:
        ConfigError: negative or non-finite energies, too few steady steps, or more steps
        completed than ``total_steps``.
    """
    if step_times_s is not None and len(step_times_s) != len(step_energies_j):
        raise ConfigError(
            f"step_times_s has {len(step_times_s)} entries but step_energies_j has "
            f"{len(step_energies_j)}: give one duration per completed step."
        )
    fc = StepForecaster(warmup_steps)
    for i, e in enumerate(step_energies_j):
        fc.add(e, None if step_times_s is None else step_times_s[i])
    return fc.forecast(total_steps)
