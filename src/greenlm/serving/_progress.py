"""A minimal progress line for long commands (until a shared ``greenlm.progress`` exists).

On a terminal, one line rewritten in place; otherwise (CI logs, ``nohup``) a plain line at
most every ``every_s`` seconds and at the end of each task.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``update(done)`` as work advances; ``close()`` at the end of a task."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None, every_s: float = 10.0) -> None:
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = every_s
        self._last = 0.0
        self._t0 = time.monotonic()

    def update(self, done: int, note: str = "") -> None:
        now = time.monotonic()
        text = f"{self.label}: {done}/{self.total}{' ' + note if note else ''} ({now - self._t0:.0f} s)"
        if self.tty:
            self.stream.write("\r" + text[:100].ljust(100))
            self.stream.flush()
        elif now - self._last >= self.every_s:
            self._last = now
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self, note: str = "") -> None:
        text = f"{self.label}: done{' ' + note if note else ''} ({time.monotonic() - self._t0:.1f} s)"
        if self.tty:
            self.stream.write("\r" + text[:100].ljust(100) + "\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
