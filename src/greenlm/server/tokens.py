"""Bearer tokens of the team server and the sign-in sessions made from them.

A token is ``glm_`` + 32 random bytes (URL-safe base64), shown once when created. The store
keeps only its SHA-256 (a salt adds nothing for a 256-bit random secret; it is a lookup key,
not a password) in its ``greenlm_server_tokens`` table (part of the store's schema since
version 2), so a PostgreSQL store shares tokens between server replicas. Revoked tokens stay
listed with their revocation time. This module never touches SQL: it goes through the
store's public token methods.

Each token has **scopes** (schema v3): ``ingest`` (send runs; a run belongs to the owner of
the token that created it, and only tokens of that owner may change it), ``read`` (read runs
and pages where reads need a token) and ``admin`` (both, and change any run). A token's
**owner** is its name unless it was made with another (``--owner``), so a replacement token
for the same person or cluster keeps writing that owner's runs.

A **session** is what the dashboard's sign-in cookie holds: ``v1.<token id>.<expiry>.<mac>``,
where the MAC is HMAC-SHA256 keyed by the token's stored hash. It is never the token, it
grants reads only (never ingest), it expires, and it dies with its token (revoked); any
server replica that shares the store can check it, including a dashboard that opened the
store for reading only.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

from greenlm.errors import GreenlmError
from greenlm.store import RunStore, TokenRecord

TOKEN_PREFIX = "glm_"
#: What a token may be allowed to do.
SCOPES = ("ingest", "read", "admin")
#: The scopes of ``greenlm server token create NAME`` without ``--scope``.
DEFAULT_SCOPES = ("ingest", "read")
#: How long a sign-in session lasts.
SESSION_S = 7 * 24 * 3600
_SESSION_VERSION = "v1"


class TokenError(GreenlmError):
    """A token cannot be created or revoked (unknown id or name, bad name or scope)."""


def hash_token(token: str) -> str:
    """The stored form of a token (hex SHA-256)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_scopes(values: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Scopes from ``--scope`` values (repeatable, or comma-separated); the default if none."""
    if not values:
        return DEFAULT_SCOPES
    out: list[str] = []
    for v in values:
        for s in str(v).replace(",", " ").split():
            s = s.strip().lower()
            if s not in SCOPES:
                raise TokenError(f"Unknown scope {s[:40]!r}: a token's scopes are {', '.join(SCOPES)}.")
            if s not in out:
                out.append(s)
    if not out:
        raise TokenError(f"A token needs at least one scope: {', '.join(SCOPES)}.")
    return tuple(out)


def _name(value: str, what: str) -> str:
    value = value.strip()
    if not value or len(value) > 128 or "\x00" in value or any(c in value for c in "\r\n"):
        raise TokenError(f"A token's {what} must be 1-128 characters on one line (who or what uses it).")
    return value


class TokenStore:
    """Create, list, revoke and check tokens (and sessions) in a run store's database."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self._last_touch: dict[str, float] = {}

    def create(
        self, name: str, scopes: tuple[str, ...] | list[str] | None = None, owner: str | None = None
    ) -> tuple[str, str]:
        """A new token for ``name``: returns ``(id, token)``; the token itself is not stored."""
        name = _name(name, "name")
        owner = _name(owner, "owner") if owner is not None else None
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        tid = secrets.token_hex(4)
        self.store.add_token(tid, name, hash_token(token), parse_scopes(list(scopes) if scopes else None), owner)
        return tid, token

    def list(self) -> list[dict[str, Any]]:
        """Every token's record (id, name, owner, scopes, created, revoked, last used), oldest first."""
        return [t.to_dict() for t in self.store.tokens()]

    def revoke(self, id_or_name: str) -> int:
        """Revoke the token with this id, or every active token with this name."""
        n = self.store.revoke_tokens(id_or_name)
        if not n:
            known = ", ".join(f"{t.id} ({t.name})" for t in self.store.tokens() if t.revoked_at is None)
            raise TokenError(f"No active token with id or name {id_or_name[:80]!r}. Active: {known or 'none'}.")
        return n

    def verify(self, token: str | None) -> TokenRecord | None:
        """The record of the active token ``token``, or None."""
        if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        h = hash_token(token)
        found = self.store.active_token(h)
        if found is None or not secrets.compare_digest(found[1], h):
            return None
        rec = found[0]
        now = time.time()
        if now - self._last_touch.get(rec.id, 0.0) > 60:  # record use, at most once a minute
            self._last_touch[rec.id] = now
            self.store.touch_token(rec.id)
        return rec

    # ----------------------------------------------------------------- sessions
    def session_for(self, rec: TokenRecord, now: float | None = None, lifetime_s: float = SESSION_S) -> str:
        """A sign-in session value for the token ``rec`` (what the cookie holds)."""
        found = self.store.token_by_id(rec.id)
        if found is None:
            raise TokenError(f"No token with id {rec.id!r}.")
        expires = int((time.time() if now is None else now) + lifetime_s)
        return f"{_SESSION_VERSION}.{rec.id}.{expires}.{_mac(found[1], rec.id, expires)}"

    def verify_session(self, value: str | None, now: float | None = None) -> TokenRecord | None:
        """The active token a session value was made for, or None (forged, expired, revoked)."""
        if not value or len(value) > 200:
            return None
        parts = value.split(".")
        if len(parts) != 4 or parts[0] != _SESSION_VERSION or not parts[2].isdigit():
            return None
        _v, tid, expires_s, mac = parts
        expires = int(expires_s)
        if expires < (time.time() if now is None else now):
            return None
        found = self.store.token_by_id(tid)
        if found is None:
            return None
        rec, token_hash = found
        if not hmac.compare_digest(mac, _mac(token_hash, tid, expires)) or not rec.active:
            return None
        return rec


def _mac(token_hash: str, tid: str, expires: int) -> str:
    key = bytes.fromhex(token_hash)
    return hmac.new(key, f"greenlm-session:{tid}:{expires}".encode(), hashlib.sha256).hexdigest()
