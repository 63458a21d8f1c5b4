"""The run store (SQLAlchemy; SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

from greenlm.store.runs import RunStore, clear_store_cache, open_store
from greenlm.store.sink import StoreSink, replay
from greenlm.store.urls import redact_text, redact_url

__all__ = ["RunStore", "StoreSink", "clear_store_cache", "open_store", "redact_text", "redact_url", "replay"]
