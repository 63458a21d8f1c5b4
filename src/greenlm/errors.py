"""One error tree for greenlm.

Every error a user can cause derives from :class:`GreenlmError` and says what was wrong
and what would be right. Vendor errors are translated at the boundary with ``raise ... from``.
"""

from __future__ import annotations

from collections.abc import Sequence


class GreenlmError(Exception):
    """Root of every error greenlm raises on purpose."""


class ConfigError(GreenlmError, ValueError):
    """A setting is invalid (negative PUE, interval <= 0, unreadable config file, ...)."""


class LocationNotFoundError(ConfigError):
    """A location code matches no row of the shipped carbon-intensity data."""

    def __init__(self, code: str, suggestions: Sequence[str] = ()) -> None:
        self.code = code
        self.suggestions = list(suggestions)
        hint = (
            f" Did you mean: {', '.join(self.suggestions)}?"
            if self.suggestions
            else " Use an ISO country code (DE, DEU), a region (US-CA, EGRID-CAMX, CA-QC,"
            " AU-NSW) or a cloud region (aws:us-east-1, gcp:europe-west4, azure:westeurope);"
            " `greenlm locations` lists them."
        )
        super().__init__(f"Unknown location {code!r}.{hint}")


class MeterUnavailableError(GreenlmError):
    """A meter cannot be used on this machine; ``reason`` says why and how to fix it."""

    def __init__(self, meter: str, reason: str) -> None:
        self.meter = meter
        self.reason = reason
        super().__init__(f"{meter}: {reason}")


class ResultNotReadyError(GreenlmError, RuntimeError):
    """``EnergyTracker.result`` was read before the tracking window closed."""


class StoreError(GreenlmError):
    """The run store cannot be opened, migrated or written."""


class RunNotFoundError(StoreError, KeyError):
    """No run with that id (or id prefix) is in the store."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "run not found"


class RunOwnedError(StoreError):
    """A writer tried to change a run that belongs to another owner (a team server's 403)."""


class MissingExtraError(GreenlmError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, feature: str, extra: str, package: str) -> None:
        super().__init__(f"{feature} needs the optional dependency {package!r}: pip install 'greenlm[{extra}]'")
        self.extra = extra
        self.package = package
