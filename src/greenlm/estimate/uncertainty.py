"""Uncertainty: a value with low/high bounds, and how bounds combine through a product.

Every estimate is a product of factors (FLOPs / (peak x MFU) x power x PUE x intensity), so
bounds are propagated multiplicatively. Each input range is read as a plausible interval
(roughly a 90% range, not hard limits); the relative distances to the low and high ends are
combined in log space in quadrature, separately for each side. This is the usual rule for
independent multiplicative errors: two inputs each 20% uncertain give about 28%, not 44%
(which is what multiplying the worst cases would give, and which overstates the spread
because all inputs are rarely at their extremes together).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from greenlm.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """A central value and its plausible low/high bounds (``low <= value <= high``)."""

    value: float
    low: float
    high: float

    def __post_init__(self) -> None:
        if not (self.low <= self.value <= self.high):
            raise ConfigError(
                f"A range must satisfy low <= value <= high, got low={self.low:g}, "
                f"value={self.value:g}, high={self.high:g}."
            )

    @classmethod
    def exact(cls, value: float) -> Range:
        """Build a range for a value known exactly (a user input): no spread."""
        return cls(value, value, value)

    def scaled(self, factor: float) -> Range:
        """Return the range multiplied by a positive constant."""
        return Range(self.value * factor, self.low * factor, self.high * factor)


def combine(terms: Iterable[tuple[Range, float]]) -> Range:
    """Return the product of ``value ** exponent`` over ``terms``, with propagated bounds.

    A term with a negative exponent (MFU in ``FLOPs / MFU``) raises the result at its low
    end. Values must be positive wherever a term has a spread.
    """
    central = 1.0
    up2 = 0.0
    down2 = 0.0
    for r, exponent in terms:
        central *= r.value**exponent
        if r.low == r.high:
            continue
        if r.low <= 0:
            raise ConfigError(f"Cannot propagate a range that reaches zero or below: {r}.")
        up = abs(exponent) * math.log((r.high if exponent > 0 else r.value) / (r.value if exponent > 0 else r.low))
        down = abs(exponent) * math.log((r.value if exponent > 0 else r.high) / (r.low if exponent > 0 else r.value))
        up2 += up * up
        down2 += down * down
    return Range(central, central * math.exp(-math.sqrt(down2)), central * math.exp(math.sqrt(up2)))


def add(*ranges: Range) -> Range:
    """Add parts, each bound summed (the parts are taken to move together: conservative)."""
    return Range(sum(r.value for r in ranges), sum(r.low for r in ranges), sum(r.high for r in ranges))
