"""A window's destinations (the run store, a team server), each opened and fed on its own.

The tracker opens every registered destination (:data:`greenlm.tracking.sink.DESTINATIONS`)
in a short-lived thread of its own, so neither the SQLAlchemy import nor a slow store sits in
``start()`` or delays the first samples; samples taken meanwhile wait in memory for the
first flush. Each destination is isolated: one that cannot be opened, or raises, is recorded
in the run's warnings and the others keep receiving the run.

At the end, each destination says where the run stands (:class:`DeliveryReport`):
``stored``, ``waiting`` (kept on disk and written when the destination is back) or
``failed``; the CLI prints "stored in" only for ``stored``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

from greenlm.config import TrackerConfig
from greenlm.tracking.result import RunResult
from greenlm.tracking.sink import DESTINATIONS, DeliveryReport, Progress, RunSink, RunStart, SampleRow

log = logging.getLogger(__name__)


class Destinations:
    """The open destinations of one window."""

    def __init__(self, config: TrackerConfig, store_arg: Any, warnings: list[str], flush_interval_s: float) -> None:
        self.config = config
        self._store_arg = store_arg
        self._warnings = warnings
        self._sinks: list[tuple[str, RunSink]] = []
        self._failed_open: list[DeliveryReport] = []
        self._warned: set[str] = set()
        self._ready = threading.Event()
        self._reports: list[DeliveryReport] = []

    # ----------------------------------------------------------------- opening
    def _factories(self) -> list[tuple[str, str, Callable[[], RunSink | None]]]:
        """(label, what is lost if it cannot be opened, factory) of each destination."""
        out: list[tuple[str, str, Callable[[], RunSink | None]]] = []
        arg = self._store_arg
        unstored = "the result is returned but not stored"
        for d in DESTINATIONS:
            if d.kind == "local" and arg is False:
                continue
            if d.kind == "local" and arg is not None and not isinstance(arg, str):
                out.append((d.name, unstored, functools.partial(_given, arg)))
                continue
            lost = unstored if d.kind == "local" else "not sent there"
            out.append((d.name, lost, functools.partial(d.open, self.config)))
        return out

    def open(self, run_start: Callable[[], RunStart]) -> None:
        """Open every destination and record the run's start, in a thread of its own."""
        threading.Thread(target=self._open, args=(run_start,), name="greenlm-store", daemon=True).start()

    def _open(self, run_start: Callable[[], RunStart]) -> None:
        try:
            start = run_start()
            for label, consequence, factory in self._factories():
                try:
                    sink = factory()
                    if sink is None:  # not configured (no team server URL)
                        continue
                    label = str(getattr(sink, "label", None) or label)
                    sink.begin(start)
                except Exception as e:
                    self._warnings.append(f"{label} unavailable ({e}); {consequence}")
                    self._failed_open.append(DeliveryReport(label, "failed", f"could not be opened: {e}"))
                    log.warning("greenlm: %s unavailable: %s", label, e)
                    continue
                self._sinks.append((label, sink))
        except Exception as e:  # never raise into the user's job
            self._warnings.append(f"run store unavailable ({e}); the result is returned but not stored")
        finally:
            self._ready.set()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    # ----------------------------------------------------------------- feeding
    def _each(self, what: str, call: Callable[[RunSink], Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for label, sink in list(self._sinks):
            try:
                out[label] = call(sink)
            except Exception as e:
                out[label] = e
                if label not in self._warned:
                    self._warned.add(label)
                    self._warnings.append(f"{label} write failed ({e}); some of the run's {what} may be missing there")
                    log.warning("greenlm: %s write failed: %s", label, e)
        return out

    def flush(self, run_id: str, samples: list[SampleRow], progress: Progress) -> None:
        """Send a batch of samples and the running totals to every open destination."""
        self._each("samples", lambda s: s.flush(run_id, samples, progress))

    def finish(self, result: RunResult, samples: list[SampleRow], progress: Progress, wait_open_s: float) -> RunResult:
        """Send the last samples and the final result; returns the result with any warnings
        about where it could not go. Waits at most ``wait_open_s`` for destinations still
        opening (a store busy at open): those that are not open by then are reported.
        """
        if not self._ready.wait(timeout=wait_open_s):
            self._warnings.append(
                f"the run store was still opening after {wait_open_s:g} s at the end of the run; "
                "the run is written when it opens (check `greenlm runs show`)"
            )
            self._reports = [DeliveryReport("run store", "waiting", "still opening at the end of the run")]
            return _with_warnings(result, self._warnings)
        known = len(self._warnings)
        if samples:
            self.flush(result.run_id, samples, progress)
        outcomes = self._each("result", lambda s: s.finish(result))
        reports = list(self._failed_open)
        for label, sink in self._sinks:
            outcome = outcomes.get(label)
            if isinstance(outcome, Exception):
                reports.append(DeliveryReport(label, "failed", f"{type(outcome).__name__}: {outcome}"))
                continue
            rep = outcome if isinstance(outcome, DeliveryReport) else None
            if rep is None:
                status = getattr(sink, "delivery_report", None)
                rep = status() if callable(status) else DeliveryReport(label, "stored")
            reports.append(rep)
            if rep.state == "waiting":
                self._warnings.append(
                    f"{rep.destination}: not yet stored ({rep.detail}); {rep.pending_events} event(s) kept in "
                    f"{rep.where}, written when it is back"
                )
            elif rep.state == "failed":
                self._warnings.append(f"{rep.destination}: run not stored ({rep.detail})")
        self._reports = reports
        if len(self._warnings) > known or self._warnings != list(result.warnings):
            return _with_warnings(result, self._warnings)
        return result

    def report(self) -> list[dict[str, Any]]:
        """The delivery reports of the last :meth:`finish`, as dicts."""
        return [r.to_dict() for r in self._reports]


def _given(sink: RunSink) -> RunSink:
    return sink


def _with_warnings(r: RunResult, warnings: list[str]) -> RunResult:
    return dataclasses.replace(r, warnings=tuple(dict.fromkeys(warnings)))
