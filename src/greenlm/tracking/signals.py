"""Taking the stop signals for a tracking window and giving them back (main thread only).

A window takes SIGTERM (what launchers, systemd, Kubernetes and ``docker stop`` send) and
SIGHUP (a closed terminal or SSH session) so that a job stopped that way still gets its run
closed, its open phases ended at the stop time, and the run stored as ``interrupted``;
afterwards it gives the handlers back and does what the signal did before greenlm took it
(the previous Python handler, or the default action: the process ends). SIGINT needs no
handler: Python turns it into ``KeyboardInterrupt``, which the window records.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any

#: The signals a window takes.
STOP_SIGNALS: tuple[int, ...] = tuple(
    s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None
)


def name(signum: int) -> str:
    """``SIGTERM``, ``SIGHUP``, ... for an error message."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def take(handler: Any, signums: tuple[int, ...] = STOP_SIGNALS) -> dict[int, Any] | None:
    """Install ``handler`` for ``signums``; the previous handlers, or None if not possible here."""
    if threading.current_thread() is not threading.main_thread():
        return None
    prev: dict[int, Any] = {}
    for s in signums:
        try:
            prev[s] = signal.signal(s, handler)
        except (ValueError, OSError):
            continue
    return prev or None


def restore(prev: dict[int, Any] | None) -> None:
    """Put back the handlers :func:`take` replaced."""
    for s, h in (prev or {}).items():
        with contextlib.suppress(ValueError, OSError, TypeError):
            signal.signal(s, h)


def redeliver(signum: int, prev: dict[int, Any] | None, frame: Any = None) -> None:
    """Do what ``signum`` did before :func:`take`: call the previous handler, or its default action."""
    h = (prev or {}).get(signum, signal.SIG_DFL)
    if callable(h):
        h(signum, frame)
    elif h == signal.SIG_DFL:
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
