"""The reference tables shipped with greenlm, and their one reader.

Grid intensity, cloud regions and PUE (read by ``carbon`` and ``estimate``), CPUs (read by
``meters.cpu_model``) and accelerators (read by ``estimate``): every row names its source,
year and licence (``DATA_LICENSES.md`` beside this file). This package imports nothing of
greenlm, so every layer may read it. Electricity Maps rows (ODbL) live in ``*_odbl.csv``
files that a redistributor may delete: read them with ``optional=True``.
"""

from __future__ import annotations

import csv
import functools
import io
from importlib import resources

__all__ = ["clear_cache", "read_csv"]


def read_csv(name: str, *, optional: bool = False) -> list[dict[str, str]]:
    """Rows of a shipped CSV as dicts (read once, cached); ``optional`` files may be absent."""
    return list(_read(name, optional))


@functools.cache
def _read(name: str, optional: bool) -> tuple[dict[str, str], ...]:
    ref = resources.files(__name__) / name
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
