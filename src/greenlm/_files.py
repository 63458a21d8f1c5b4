"""Atomic file writes: a reader (or a crash) never sees half a file.

A path that is a symbolic link is written through (the link's target is replaced, the link
stays), and an existing file keeps its permission bits: an atomic replace must not turn a
user's link into a plain file or reset a file's mode.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path


def write_text_atomic(path: str | os.PathLike[str], text: str, *, fsync: bool = False, mode: int | None = None) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder, then rename.

    ``mode``: permission bits for a new file (default: what the umask gives); an existing
    file keeps its own.
    """
    p = Path(path).expanduser()
    if p.is_symlink():
        p = Path(os.path.realpath(p))
    old_mode: int | None = None
    with contextlib.suppress(OSError):
        old_mode = stat.S_IMODE(p.stat().st_mode)
    fd, tmp = tempfile.mkstemp(dir=p.parent if str(p.parent) else ".", prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        if old_mode is not None:
            os.chmod(tmp, old_mode)
        elif mode is not None:
            os.chmod(tmp, mode)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return p


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) readable by the user only (0700); an existing one is left as is."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(OSError):
            os.chmod(path, 0o700)
    return path
