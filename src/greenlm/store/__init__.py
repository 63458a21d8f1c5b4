"""The run store (SQLAlchemy; SQLite by default, PostgreSQL by URL) and the records it returns.

The records (:mod:`greenlm.store.records`) and :func:`redact_url` import no SQLAlchemy; the
store itself (``RunStore``, ``open_store``, ``StoreSink``) is loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from greenlm.redact import redact_text, redact_url
from greenlm.store.records import PowerSeries, PowerTrace, SamplePage, StoredRun, TokenRecord

if TYPE_CHECKING:
    from greenlm.store.runs import RunStore, clear_store_cache, open_store
    from greenlm.store.sink import StoreSink, replay

_LAZY = {
    "RunStore": "runs",
    "clear_store_cache": "runs",
    "open_store": "runs",
    "StoreSink": "sink",
    "replay": "sink",
}

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
    "redact_text",
    "redact_url",
    "replay",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"greenlm.store.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'greenlm.store' has no attribute {name!r}")
