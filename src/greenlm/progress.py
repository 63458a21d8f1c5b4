"""Progress of long work for the person waiting: one updating line on a terminal, plain
periodic lines elsewhere (CI logs, ``nohup``, a pipe).

A neutral module (standard library only) for every command that takes minutes: ``greenlm
optimize``, ``bench serve``, the demo, calibration. On a terminal the line is redrawn in
place (at most ten times a second, cut to the terminal's width) and cleared at the end; when
the stream is not a terminal a full line is written at the first update and then at most
every ``interval_s`` seconds, plus one closing line, so a log shows steady progress without
thousands of lines::

    optimize: variant 3/8 int8 round 2/5 (21/54, 1 min 05 s)

Writing progress never fails the work: a closed or broken stream is ignored.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from greenlm.humanize import duration

__all__ = ["Progress"]


def _elapsed(seconds: float) -> str:
    return duration(seconds) if seconds >= 1 else f"{seconds:.1f} s"


class Progress:
    """Progress lines for ``label`` on ``stream`` (stderr by default); a context manager.

    ``tty`` forces the terminal (True) or log (False) mode; by default it is the stream's
    ``isatty()``. ``interval_s`` is the shortest gap between two lines in log mode. ``clock``
    is replaceable for tests.
    """

    def __init__(
        self,
        label: str,
        *,
        stream: TextIO | None = None,
        tty: bool | None = None,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_s < 0:
            raise ValueError(f"interval_s must be >= 0, got {interval_s!r}")
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        if tty is None:
            try:
                tty = bool(self.stream.isatty())
            except (AttributeError, ValueError, OSError):
                tty = False
        self.tty = tty
        self.interval_s = interval_s
        self._clock = clock
        self._start = clock()
        self._last_write: float | None = None
        self._line = ""
        self._pending = False  # an update not yet written (log mode)
        self._drawn = False  # a terminal line is on screen
        self._closed = False
        self._lock = threading.Lock()

    # -- formatting ----------------------------------------------------------------------
    def _format(self, message: str, done: int | None, total: int | None) -> str:
        parts = []
        if done is not None and total:
            parts.append(f"{done}/{total}")
        parts.append(_elapsed(self._clock() - self._start))
        return f"{self.label}: {message} ({', '.join(parts)})"

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream must not stop the work
            pass

    def _width(self) -> int:
        return max(20, shutil.get_terminal_size(fallback=(80, 24)).columns)

    # -- API -----------------------------------------------------------------------------
    def update(self, message: str, done: int | None = None, total: int | None = None) -> None:
        """Report the current step (``done`` of ``total`` when known)."""
        with self._lock:
            if self._closed:
                return
            now = self._clock()
            self._line = self._format(message, done, total)
            if self.tty:
                if self._last_write is not None and now - self._last_write < 0.1 and done != total:
                    return
                self._write("\r" + self._line[: self._width() - 1] + "\x1b[K")
                self._drawn = True
            else:
                if self._last_write is not None and now - self._last_write < self.interval_s:
                    self._pending = True
                    return
                self._write(self._line + "\n")
                self._pending = False
            self._last_write = now

    def log(self, line: str) -> None:
        """Write a permanent line (on a terminal, above the updating one)."""
        with self._lock:
            if self.tty and self._drawn:
                self._write("\r\x1b[K" + line + "\n")
                self._write("\r" + self._line[: self._width() - 1] + "\x1b[K")
            else:
                self._write(line + "\n")

    def callback(self) -> Callable[[str, int, int], None]:
        """A ``progress(description, done, total)`` function, as ``greenlm.optimize`` takes."""
        return lambda desc, done, total: self.update(desc, done, total)

    def close(self, final: str | None = None) -> None:
        """End: clear the terminal line, or write a last log line with the total time.

        ``final`` (e.g. ``"stopped"``) replaces ``done`` in that line and is shown on a
        terminal too; in log mode the last unwritten update is written before it.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            took = _elapsed(self._clock() - self._start)
            if self.tty:
                if self._drawn:
                    self._write("\r\x1b[K")
                if final:
                    self._write(f"{self.label}: {final} ({took})\n")
            elif self._last_write is not None or final:
                if self._pending and final:  # where it stopped
                    self._write(self._line + "\n")
                self._write(f"{self.label}: {final or 'done'} ({took})\n")

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(None if exc_type is None else "stopped")
