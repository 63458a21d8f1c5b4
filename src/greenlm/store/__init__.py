"""The run store (SQLAlchemy; SQLite by default, PostgreSQL by URL) and the records it returns.

The records (:mod:`greenlm.store.records`) and :func:`redact_url` import no SQLAlchemy; the
store itself (``RunStore``, ``open_store``, ``StoreSink``) is loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from greenlm.store.records import PowerSeries, PowerTrace, SamplePage, StoredRun, TokenRecord
from greenlm.store.urls import redact_url

if TYPE_CHECKING:
    from greenlm.store.runs import RunStore, StoreSink, clear_store_cache, open_store

_LAZY = ("RunStore", "StoreSink", "clear_store_cache", "open_store")

__all__ = [
    "PowerSeries",
    "PowerTrace",
    "RunStore",
    "SamplePage",
    "StoreSink",
    "StoredRun",
    "TokenRecord",
    "clear_store_cache",
    "open_store",
    "redact_url",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from greenlm.store import runs

        return getattr(runs, name)
    raise AttributeError(f"module 'greenlm.store' has no attribute {name!r}")
