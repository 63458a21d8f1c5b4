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
    """Create ``path`` and every missing parent readable by the user only (0700).

    Folders that exist are left as they are (a user may have chosen to share one).
    """
    if path.is_dir():
        return path
    missing = []
    p = path
    while not p.is_dir():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            if not d.is_dir():
                raise
            continue
        with contextlib.suppress(OSError):
            os.chmod(d, 0o700)  # the umask may have taken bits away; never added any
    return path


def private_file(path: Path) -> bool:
    """Create an empty file at ``path`` readable and writable by the user only (0600).

    Returns False (and changes nothing) when it exists already.
    """
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    return True
