"""Who may do what: bearer tokens with scopes, sign-in sessions, the Host and same-origin checks.

* **Ingest** always needs ``Authorization: Bearer glm_...`` of a token with the ``ingest`` or
  ``admin`` scope (401 without a valid token, 403 without the scope). A run belongs to the
  owner of the token that created it; another owner's token gets 403 (the store enforces it
  inside the write's transaction).
* **Reads** need a token with ``read`` (or ``admin``) when ``read_auth`` is on: always off
  loopback, and on loopback with ``--read-auth`` (behind a reverse proxy). A browser signs in
  once at ``/login``; the cookie then holds a signed, expiring, read-only session
  (:mod:`greenlm.server.tokens`), never the token, and is accepted for reads only.
* **Host**: :class:`RequestGuard` answers only requests whose ``Host`` header names this
  server (loopback names by default; ``--allowed-host`` / ``GREENLM_ALLOWED_HOSTS``), so a
  page that rebinds its own DNS name to 127.0.0.1 reads nothing (400).
* **Same origin**: every state-changing request (not GET/HEAD/OPTIONS) that carries an
  ``Origin`` (or, without one, a ``Referer``) must come from this server's own origin (403
  otherwise); a form posted without either must carry the page's CSRF token (a double-submit
  cookie, :func:`check_form`).
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from greenlm.errors import ConfigError
from greenlm.store import TokenRecord

#: The sign-in cookie (a signed read-only session, never a token).
COOKIE = "greenlm_session"
#: The double-submit CSRF cookie; forms carry its value as ``csrf_token``.
CSRF_COOKIE = "greenlm_csrf"
CSRF_FIELD = "csrf_token"
#: In an allow-list: 127.0.0.0/8, ::1, ``localhost`` and ``*.localhost`` (names a browser
#: resolves to this machine itself, so DNS cannot rebind them).
LOOPBACK = "loopback"
#: Where the guard records that a request's Origin/Referer was checked and is this server's.
SAME_ORIGIN_KEY = "greenlm.same_origin"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

bearer = HTTPBearer(auto_error=False, description="A token from `greenlm server token create`.")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


@dataclass(frozen=True)
class Principal:
    """Who is asking: a token (by bearer header or session), or nobody where reads are open."""

    token_id: str | None
    owner: str | None
    scopes: frozenset[str]
    via: str  # "bearer", "session" or "open"

    def can(self, scope: str) -> bool:
        """Whether this principal has ``scope`` (``admin`` has every scope)."""
        return scope in self.scopes or "admin" in self.scopes

    @property
    def admin(self) -> bool:
        """Whether it may change any run."""
        return "admin" in self.scopes

    @classmethod
    def of(cls, rec: TokenRecord, via: str) -> Principal:
        scopes = frozenset(rec.scopes) if via == "bearer" else frozenset({"read"})  # a session only reads
        return cls(rec.id, rec.owner or rec.name, scopes, via)


OPEN = Principal(None, None, frozenset({"read"}), "open")


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def _bearer_token(creds: HTTPAuthorizationCredentials | None) -> str | None:
    if creds is not None and creds.scheme.lower() == "bearer":
        return creds.credentials
    return None


def require_ingest(request: Request, creds: Credentials) -> Principal:
    """Ingest: a valid bearer token with the ``ingest`` (or ``admin``) scope, always."""
    tok = _bearer_token(creds)
    if tok is None:
        raise _unauthorized(
            "a bearer token is required to send runs: `greenlm server token create NAME` on the server makes one"
        )
    rec = request.app.state.tokens.verify(tok)
    if rec is None:
        raise _unauthorized("invalid or revoked token")
    p = Principal.of(rec, "bearer")
    if not p.can("ingest"):
        raise HTTPException(
            403,
            detail=f"this token may not send runs (scopes: {' '.join(sorted(p.scopes))}); "
            "a tracker needs a token made with --scope ingest",
        )
    return p


def reader(request: Request, creds: HTTPAuthorizationCredentials | None = None) -> Principal | None:
    """Who reads: OPEN where reads need no token; a token or session with ``read``; else None.

    Raises 403 for a valid token that lacks the ``read`` scope.
    """
    if not request.app.state.settings.read_auth:
        return OPEN
    tokens = request.app.state.tokens
    tok = _bearer_token(creds)
    if tok is not None:
        rec = tokens.verify(tok)
        if rec is None:
            return None
        p = Principal.of(rec, "bearer")
    else:
        rec = tokens.verify_session(request.cookies.get(COOKIE))
        if rec is None:
            return None
        p = Principal.of(rec, "session")
        if not Principal.of(rec, "bearer").can("read"):  # the token lost nothing, but never could read
            return None
    if not p.can("read"):
        raise HTTPException(
            403,
            detail=f"this token may not read runs (scopes: {' '.join(sorted(p.scopes))}); "
            "a viewer needs a token made with --scope read",
        )
    return p


def require_reader(request: Request, creds: Credentials) -> Principal:
    """API reads: a token with ``read`` where reads need one (401/403 otherwise)."""
    p = reader(request, creds)
    if p is None:
        raise _unauthorized("reads on this server need a bearer token with the read scope")
    return p


# ------------------------------------------------------------------------------ CSRF
def csrf_value(request: Request) -> tuple[str, bool]:
    """The page's CSRF token: the request's cookie, or a new one (True: set the cookie)."""
    have = request.cookies.get(CSRF_COOKIE)
    if have and 20 <= len(have) <= 100 and have.isascii():
        return have, False
    return secrets.token_urlsafe(24), True


def check_form(request: Request, form: Any) -> None:
    """A posted form is this server's own: its Origin/Referer was checked, or it carries the CSRF token."""
    if request.scope.get(SAME_ORIGIN_KEY):
        return
    sent = str(form.get(CSRF_FIELD) or "")
    cookie = request.cookies.get(CSRF_COOKIE) or ""
    if not sent or not cookie or not secrets.compare_digest(sent.encode(), cookie.encode()):
        raise HTTPException(
            403,
            detail="this form could not be verified as coming from this dashboard (no same-origin Origin or "
            "Referer header and no matching CSRF token): reload the page and submit it again",
        )


# ------------------------------------------------------------------------------ Host and origin
def check_allowed_hosts(names: Iterable[str]) -> tuple[str, ...]:
    """Validate an allow-list of Host names (``*``, ``loopback``, ``name``, ``*.domain`` or ``.domain``)."""
    out: list[str] = []
    for raw in names:
        n = raw.strip().lower().rstrip(".")
        if not n:
            continue
        bare = n[2:] if n.startswith("*.") else n[1:] if n.startswith(".") else n
        ok = n in ("*", LOOPBACK) or _is_ip(bare) or (len(n) <= 253 and _HOSTNAME.fullmatch(bare) is not None)
        if not ok:
            raise ConfigError(
                f"allowed host {raw[:60]!r} is not a host name: give a name such as greenlm.example.com, "
                "*.example.com for its subdomains, an IP address, 'loopback' or '*' (any host)"
            )
        if n not in out:
            out.append(n.strip("[]") if _is_ip(n) else n)
    return tuple(out)


_HOSTNAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s.strip("[]"))
    except ValueError:
        return False
    return True


def split_host(host: str) -> tuple[str, int | None] | None:
    """``Host`` header -> (lower-case name, port or None); None when it is not a host[:port]."""
    h = host.strip().lower()
    if not h or len(h) > 300:
        return None
    port_s = ""
    if h.startswith("["):
        end = h.find("]")
        if end < 0:
            return None
        name, rest = h[1:end], h[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return None
            port_s = rest[1:]
    elif h.count(":") == 1:
        name, port_s = h.split(":")
    elif ":" in h:
        return None  # a bare IPv6 address must be bracketed in a Host header
    else:
        name = h
    name = name.rstrip(".")
    if not name or any(c in name for c in "/ @\\?#"):
        return None
    if port_s:
        if not port_s.isdigit() or not 0 < int(port_s) < 65536:
            return None
        return name, int(port_s)
    return name, None


def host_allowed(host: str | None, allowed: tuple[str, ...]) -> bool:
    """Whether a request's ``Host`` header names a host in ``allowed``."""
    if "*" in allowed:
        return True
    parsed = split_host(host or "")
    if parsed is None:
        return False
    name = parsed[0]
    for a in allowed:
        if a == LOOPBACK:
            if name == "localhost" or name.endswith(".localhost"):
                return True
            try:
                if ipaddress.ip_address(name).is_loopback:
                    return True
            except ValueError:
                pass
        elif a.startswith("*."):
            if name.endswith(a[1:]):
                return True
        elif a.startswith("."):
            if name == a[1:] or name.endswith(a):
                return True
        elif name == a.strip("[]"):
            return True
    return False


def same_origin(source: str, host: str | None) -> bool:
    """Whether an ``Origin`` (or ``Referer``) URL is the origin the request's ``Host`` names.

    Names must match; ports too when the Host header has one (without one, a TLS-terminating
    proxy in front may have served the page on 443 while this server sees plain HTTP).
    """
    if not source or source == "null":
        return False
    try:
        u = urllib.parse.urlsplit(source)
        port = u.port
    except ValueError:
        return False
    if u.scheme not in ("http", "https") or not u.hostname:
        return False
    parsed = split_host(host or "")
    if parsed is None:
        return False
    name, hport = parsed
    if u.hostname.lower().rstrip(".") != name:
        return False
    if hport is None:
        return True
    return (port or (443 if u.scheme == "https" else 80)) == hport


class RequestGuard:
    """ASGI middleware: refuse a foreign ``Host`` (400) and a cross-site state change (403).

    Runs before anything else reads the request, so a refused request reaches no route and
    no store.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: tuple[str, ...]) -> None:
        self.app = app
        self.allowed = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers") or []}
        host = headers.get(b"host", b"").decode("latin-1")
        if not host_allowed(host, self.allowed):
            await _refuse(
                send,
                400,
                f"this server does not answer to the host name {_shown(host)}: if that name is this server's, "
                "start it with --allowed-host NAME (or set GREENLM_ALLOWED_HOSTS)",
            )
            return
        if scope["method"] not in SAFE_METHODS:
            origin = headers.get(b"origin")
            source = origin if origin is not None else headers.get(b"referer")
            if source is not None:
                if not same_origin(source.decode("latin-1"), host):
                    kind = "Origin" if origin is not None else "Referer"
                    await _refuse(
                        send,
                        403,
                        f"cross-site request refused: its {kind} is not this server's origin "
                        "(state-changing requests must come from this server's own pages, or from a "
                        "client that sends no Origin, such as a tracker)",
                    )
                    return
                scope[SAME_ORIGIN_KEY] = True
        await self.app(scope, receive, send)


def _shown(value: str) -> str:
    """A header value for an error message: printable ASCII, at most 80 characters, quoted."""
    clean = "".join(c if c.isascii() and c.isprintable() else "?" for c in value[:80])
    return repr(clean) + ("..." if len(value) > 80 else "")


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-content-type-options", b"nosniff"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
