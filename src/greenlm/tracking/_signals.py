"""Taking SIGTERM for a tracking window and giving it back (main thread only).

A window takes SIGTERM so that a job stopped by its launcher still gets its run closed and
stored; afterwards it gives the handler back and, when the signal came, does what SIGTERM
did before greenlm took it (the previous Python handler, or the default: the process ends).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any


def take_sigterm(handler: Any) -> Any | None:
    """Install ``handler`` for SIGTERM; the previous handler, or None if not possible here."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        return signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):
        return None


def restore_sigterm(prev: Any | None) -> None:
    """Put back the handler :func:`take_sigterm` replaced."""
    if prev is not None:
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signal.SIGTERM, prev)


def redeliver_sigterm(prev: Any | None, frame: Any = None) -> None:
    """Do what SIGTERM did before: call the previous handler, or end the process by default."""
    if callable(prev):
        prev(signal.SIGTERM, frame)
    elif prev == signal.SIG_DFL:
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
