"""The run store as a window's destination: :class:`StoreSink`.

Registered as the ``local`` destination in ``greenlm/__init__.py``; the tracker knows it only
through the :class:`~greenlm.tracking.sink.RunSink` protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from greenlm.tracking.result import RunResult
from greenlm.tracking.sink import Progress, RunStart, SampleRow

if TYPE_CHECKING:
    from greenlm.config import TrackerConfig
    from greenlm.store.runs import RunStore


class StoreSink:
    """RunSink that writes to a :class:`~greenlm.store.runs.RunStore`."""

    def __init__(self, store: RunStore) -> None:
        self.store = store

    @property
    def label(self) -> str:
        return f"run store {self.store.url}"

    def begin(self, run: RunStart) -> None:
        self.store.begin_run(run)

    def flush(self, run_id: str, samples: list[SampleRow], progress: Progress) -> None:
        self.store.add_samples(run_id, samples, progress)

    def finish(self, result: RunResult) -> None:
        self.store.save_result(result)


def open_destination(config: TrackerConfig) -> StoreSink:
    """The run-store destination of a window: the store at ``config.store`` (default SQLite)."""
    from greenlm.store.runs import open_store

    return StoreSink(open_store(config.store))
