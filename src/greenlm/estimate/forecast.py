"""In-run forecast: predict a run's total energy from its first steps.

Like Carbontracker's prediction after the first epoch (Anthony et al. 2020), but per step and
excluding warm-up (compilation, cache fills, data-loader start), which costs more than a
steady step and would inflate a linear extrapolation.

``total = energy of all completed steps + remaining steps x mean steady-step energy``.

The band covers three things: the uncertainty of the mean steady-step energy (2 standard
errors), the step-to-step noise summed over the remaining steps, and a drift check — the
mean of the first and of the second half of the steady steps, each extrapolated, so that a
trend (thermal throttling, growing sequence length) widens the band instead of hiding.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from greenlm._validate import finite
from greenlm.errors import ConfigError


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
    energies = [finite(f"step_energies_j[{i}]", e, minimum=0.0) for i, e in enumerate(step_energies_j)]
    done = len(energies)
    total = int(finite("total_steps", total_steps, minimum=1.0))
    warm = int(finite("warmup_steps", warmup_steps, minimum=0.0))
    if done > total:
        raise ConfigError(
            f"{done} steps completed but total_steps is {total}: total_steps must "
            "be the number of steps of the whole run."
        )
    steady = energies[warm:]
    if len(steady) < 2:
        raise ConfigError(
            f"A forecast needs at least 2 steps after the {warm} warm-up step(s); {done} "
            f"completed. Forecast after at least {warm + 2} steps."
        )
    spent = math.fsum(energies)
    remaining = total - done
    mean = statistics.fmean(steady)
    sd = statistics.stdev(steady)
    n = len(steady)
    central = spent + remaining * mean
    # Uncertainty of the rate, plus noise of the remaining steps (independent steps).
    spread = 2.0 * math.sqrt(remaining**2 * sd**2 / n + remaining * sd**2)
    half = n // 2
    first, second = statistics.fmean(steady[:half]), statistics.fmean(steady[half:])
    low = min(central - spread, spent + remaining * min(first, second))
    high = max(central + spread, spent + remaining * max(first, second))
    duration = None
    if step_times_s is not None:
        times = [finite(f"step_times_s[{i}]", t, minimum=0.0) for i, t in enumerate(step_times_s)]
        if len(times) != done:
            raise ConfigError(
                f"step_times_s has {len(times)} entries but step_energies_j has "
                f"{done}: give one duration per completed step."
            )
        duration = math.fsum(times) + remaining * statistics.fmean(times[warm:])
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
