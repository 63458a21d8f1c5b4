"""Paired energy ratios with confidence intervals, for recommendations that do not flip.

The runner measures the baseline and every variant in rounds, one window each per round, in
a shuffled order (round-robin), so a change of the machine's load hits every variant alike.
For a variant ``v`` and round ``r`` the paired log ratio is ``d_r = ln(E_v,r / E_base,r)``;
the energy ratio is ``exp(mean d)`` (the geometric mean of the per-round ratios) and its
interval ``exp(mean d ± t · sd(d) / √n)``, a Student t-interval on the log ratios with
``n - 1`` degrees of freedom. Log ratios because energy ratios multiply: a 2x saving and a
2x cost are the same distance from "no change".

The intervals are family-wise: with ``k`` variants compared against one baseline, each
interval is at ``1 - (1 - confidence) / k`` (Bonferroni), so that the chance of *any*
same-cost variant looking like a saving stays below ``(1 - confidence) / 2``.

Student t quantiles are computed here (no scipy): the t distribution's CDF for a whole
number of degrees of freedom has a closed form (Abramowitz & Stegun 26.7.3-4), inverted by
bisection.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

METHOD = "paired t-interval on per-round log energy ratios, Bonferroni-adjusted over the variants compared"


def t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with ``df`` (a whole number >= 1) degrees of freedom."""
    if df < 1 or int(df) != df:
        raise ValueError(f"degrees of freedom must be a whole number >= 1, got {df!r}")
    if t == 0:
        return 0.5
    theta = math.atan(abs(t) / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2:  # odd: (2/pi) (theta + sin(theta) * sum of c^(2k+1) terms up to c^(df-2))
        total = 0.0
        if df > 1:
            coef, power = 1.0, c
            total = coef * power
            for k in range(1, (df - 3) // 2 + 1):
                coef *= (2 * k) / (2 * k + 1)
                power *= c * c
                total += coef * power
        a = (2.0 / math.pi) * (theta + s * total)
    else:  # even: sin(theta) * sum of c^(2k) terms up to c^(df-2)
        coef, power, total = 1.0, 1.0, 1.0
        for k in range(1, (df - 2) // 2 + 1):
            coef *= (2 * k - 1) / (2 * k)
            power *= c * c
            total += coef * power
        a = s * total
    a = min(1.0, max(0.0, a))
    return 0.5 + 0.5 * a if t > 0 else 0.5 - 0.5 * a


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (0 < p < 1)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p!r}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
        if hi > 1e12:
            return math.inf
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class RatioEstimate:
    """A variant's energy against the baseline's: ``ratio`` = variant / baseline, with its interval.

    ``low`` and ``high`` are None when fewer than two rounds could be paired. ``saving`` is
    ``1 - ratio`` (0.25 = a quarter less energy), its interval ``[1 - high, 1 - low]``.
    """

    ratio: float
    low: float | None
    high: float | None
    rounds: int
    confidence: float
    method: str = METHOD

    @property
    def saving(self) -> float:
        return 1.0 - self.ratio

    @property
    def saving_low(self) -> float | None:
        return None if self.high is None else 1.0 - self.high

    @property
    def saving_high(self) -> float | None:
        return None if self.low is None else 1.0 - self.low

    @property
    def significant_saving(self) -> bool:
        """The interval lies wholly below 1: the variant uses less energy beyond noise."""
        return self.high is not None and self.high < 1.0

    @property
    def significant_cost(self) -> bool:
        """The interval lies wholly above 1: the variant uses more energy beyond noise."""
        return self.low is not None and self.low > 1.0

    def overlaps(self, other: RatioEstimate) -> bool:
        """Whether the two intervals share a value (no interval: only an equal ratio overlaps)."""
        a_lo, a_hi = (
            self.low if self.low is not None else self.ratio,
            self.high if self.high is not None else self.ratio,
        )
        b_lo = other.low if other.low is not None else other.ratio
        b_hi = other.high if other.high is not None else other.ratio
        return a_lo <= b_hi and b_lo <= a_hi


def per_variant_confidence(confidence: float, comparisons: int) -> float:
    """Bonferroni: the level of each of ``comparisons`` intervals for a family-wise ``confidence``."""
    return 1.0 - (1.0 - confidence) / max(1, comparisons)


def paired_ratio(variant: Sequence[float], baseline: Sequence[float], confidence: float) -> RatioEstimate:
    """The energy ratio variant / baseline from windows paired by round, with a t-interval.

    Rounds where either window read no energy (below the meter's resolution) are left out.
    """
    pairs = [(v, b) for v, b in zip(variant, baseline) if v > 0 and b > 0 and math.isfinite(v) and math.isfinite(b)]
    if not pairs:
        return RatioEstimate(math.nan, None, None, 0, confidence)
    d = [math.log(v / b) for v, b in pairs]
    mean = statistics.fmean(d)
    n = len(d)
    if n < 2:
        return RatioEstimate(math.exp(mean), None, None, n, confidence)
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * statistics.stdev(d) / math.sqrt(n)
    return RatioEstimate(math.exp(mean), math.exp(mean - half), math.exp(mean + half), n, confidence)


def round_spread(values: Sequence[float]) -> tuple[float | None, float | None]:
    """``(cv, trend)`` of one variant's per-round energies: the coefficient of variation and
    the least-squares line's change from the first round to the last, as fractions of the mean.
    """
    xs = [float(v) for v in values if math.isfinite(v)]
    if len(xs) < 2:
        return None, None
    mean = statistics.fmean(xs)
    if mean <= 0:
        return None, None
    cv = statistics.stdev(xs) / mean
    n = len(xs)
    t_mean = (n - 1) / 2.0
    slope = sum((i - t_mean) * (x - mean) for i, x in enumerate(xs)) / sum((i - t_mean) ** 2 for i in range(n))
    return cv, slope * (n - 1) / mean
