"""Open and close a tracker's phases from a framework's begin / end callbacks.

Frameworks call ``on_*_begin`` and ``on_*_end`` hooks instead of running a ``with`` block;
:class:`PhaseDriver` turns those calls into the tracker's nested phases. It owns the tracking
window when it opened it: the outermost ``begin`` starts the window if nobody else did, and the
matching ``end`` closes it (one run per top-level ``fit`` / ``train`` / ``evaluate`` call).
A window the user opened (``with tracker: trainer.train()``) is only given phases and steps.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from greenlm.tracking.result import RunResult


def default_tracker(tracker: Any, tracker_kwargs: dict[str, Any]) -> Any:
    """The tracker an integration uses: the one given, else a new one for this process.

    An :class:`~greenlm.EnergyTracker` is distributed by default: launched as one rank of a
    torchrun / accelerate / DeepSpeed / MPI / Slurm job, each window is the job's one run.
    """
    if tracker is not None:
        if tracker_kwargs:
            from greenlm.errors import ConfigError

            raise ConfigError(f"Pass either tracker= or tracker settings, not both (got {sorted(tracker_kwargs)}).")
        return tracker
    from greenlm.tracking.tracker import EnergyTracker

    return EnergyTracker(**tracker_kwargs)


class PhaseDriver:
    """Nested phases on ``tracker`` driven by begin / end calls."""

    def __init__(self, tracker: Any, on_result: Callable[[RunResult], None] | None = None) -> None:
        self.tracker = tracker
        self.results: list[RunResult] = []
        self._open: list[tuple[str, Any]] = []
        self._owned = False
        self._on_result = on_result

    @property
    def owned(self) -> bool:
        """Whether this driver opened the current window (and will close it)."""
        return self._owned

    def is_open(self, name: str) -> bool:
        return any(n == name for n, _ in self._open)

    def begin(self, name: str) -> None:
        """Enter phase ``name`` (starting the window first if none is open)."""
        if not self._open and not self.tracker.running:
            self.tracker.start()
            self._owned = True
        cm = self.tracker.phase(name)
        cm.__enter__()
        self._open.append((name, cm))

    def end(self, name: str) -> RunResult | None:
        """Leave phase ``name`` (and any left open inside it); close an owned window when the
        outermost phase ends, returning its result.
        """
        if not self.is_open(name):
            return None
        while self._open:
            n, cm = self._open.pop()
            cm.__exit__(None, None, None)
            if n == name:
                break
        if self._open or not self._owned:
            return None
        self._owned = False
        return self._finish(self.tracker.stop())

    def fail(self, exc: BaseException) -> RunResult | None:
        """The framework raised: close every phase, and an owned window as failed."""
        while self._open:
            _, cm = self._open.pop()
            with contextlib.suppress(Exception):
                cm.__exit__(type(exc), exc, exc.__traceback__)
        if not self._owned:
            return None
        self._owned = False
        self.tracker.__exit__(type(exc), exc, exc.__traceback__)
        return self._finish(self.tracker.result)

    def _finish(self, result: RunResult) -> RunResult:
        self.results.append(result)
        if self._on_result is not None:
            self._on_result(result)
        return result
