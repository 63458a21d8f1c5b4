"""URLs and messages as greenlm shows them: passwords replaced, with the standard library only.

Anything greenlm prints, logs or puts in an error message about a store or a team server names it through
:func:`redact_url`, so ``postgresql+psycopg://greenlm:secret@db/runs`` reads
``postgresql+psycopg://greenlm:***@db/runs``. It does not import SQLAlchemy (the dashboard
and the CLI call it on every page and message).
"""

from __future__ import annotations

import re
import urllib.parse

#: What stands in for a password.
MASK = "***"
#: Query parameters that carry secrets in SQLAlchemy / libpq URLs.
SECRET_PARAMS = frozenset({"password", "passwd", "pwd", "sslpassword", "token", "secret"})


def redact_url(url: str) -> str:
    """``url`` with its password (in the user info or a ``password=`` parameter) masked.

    Text that is not a URL comes back unchanged; a URL without credentials too.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hostport}" if sep else netloc
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in SECRET_PARAMS for k, _ in pairs):
            query = "&".join(
                f"{urllib.parse.quote(k, safe='')}="
                + (MASK if k.lower() in SECRET_PARAMS else urllib.parse.quote(v, safe="/:"))
                for k, v in pairs
            )
    if netloc == parts.netloc and query == parts.query:
        return url
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@")


def redact_text(text: str) -> str:
    """Every ``scheme://user:password@`` inside ``text`` (an error message) with the password masked."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
