"""Store URLs as people may see them: with the password taken out.

A store URL can carry a database password (``postgresql+psycopg://user:pw@host/db``).
Everything greenlm prints, logs, stores or sends shows :func:`redact_url` of it instead. No
SQLAlchemy import: the server's pages, the CLI and error messages use this cheaply.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@")


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (also inside longer text)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if parts.password is None:
        return redact_text(url)
    netloc = parts.netloc
    userinfo, _, host = netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def redact_text(text: str) -> str:
    """Every ``scheme://user:password@`` in ``text`` with the password replaced by ``***``."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
