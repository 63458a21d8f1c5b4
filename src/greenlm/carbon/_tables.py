"""Read the reference CSVs shipped in ``greenlm/carbon/data`` (cached, read once)."""

from __future__ import annotations

import csv
import functools
import io
from importlib import resources


def read_csv(name: str, *, optional: bool = False) -> list[dict[str, str]]:
    """Rows of a shipped CSV as dicts; ``optional`` files (ODbL) may be absent."""
    return list(_read(name, optional))


@functools.cache
def _read(name: str, optional: bool) -> tuple[dict[str, str], ...]:
    ref = resources.files("greenlm.carbon") / "data" / name
    try:
        text = ref.read_text(encoding="utf-8")
    except FileNotFoundError:
        if optional:
            return ()
        raise
    return tuple(csv.DictReader(io.StringIO(text)))


def clear_cache() -> None:
    """Forget cached tables (tests)."""
    _read.cache_clear()
