"""Errors of the optimizer, all under greenlm's one error tree."""

from __future__ import annotations

from collections.abc import Sequence

from greenlm.errors import ConfigError, GreenlmError


class UnknownTechniqueError(ConfigError):
    """A technique name in ``--techniques`` is not one greenlm knows."""

    def __init__(self, name: str, known: Sequence[str], suggestions: Sequence[str] = ()) -> None:
        self.name = name
        hint = f" Did you mean {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"Unknown technique {name!r}.{hint} Known techniques: {', '.join(known)}.")


class TechniqueArgumentError(ConfigError):
    """A technique was given an argument outside its valid range or of the wrong kind."""


class NotAModelError(ConfigError):
    """``--model`` points at something that is not a transformers model folder."""


class UnknownTaskError(ConfigError):
    """The task is not one of embedding, classification, causal-lm, or unfit for the model."""


class NotApplicableError(GreenlmError):
    """A technique does not apply to this model or device; the variant is reported skipped.

    Raised by a transform and caught by the runner, never shown as a crash.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class TrackerUnavailableError(GreenlmError):
    """greenlm's energy tracker cannot be used (not installed in this build)."""


def first_line(e: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, at most ``limit`` characters (for a report)."""
    text = str(e).strip()
    return text.splitlines()[0][:limit] if text else ""
