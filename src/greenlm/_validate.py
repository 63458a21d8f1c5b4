"""Small validators shared by the config objects: clear messages for bad numbers."""

from __future__ import annotations

import math

from greenlm.errors import ConfigError


def finite(
    name: str,
    value: object,
    *,
    minimum: float | None = None,
    strict: bool = False,
    maximum: float | None = None,
    hint: str = "",
) -> float:
    """Return ``value`` as a float, or raise ConfigError saying what would be right."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}.{hint}") from None
    if math.isnan(x) or math.isinf(x):
        raise ConfigError(f"{name} must be a finite number, got {value!r}.{hint}")
    if minimum is not None:
        if strict and x <= minimum:
            raise ConfigError(f"{name} must be > {minimum:g}, got {x:g}.{hint}")
        if not strict and x < minimum:
            raise ConfigError(f"{name} must be >= {minimum:g}, got {x:g}.{hint}")
    if maximum is not None and x > maximum:
        raise ConfigError(f"{name} must be <= {maximum:g}, got {x:g}.{hint}")
    return x
