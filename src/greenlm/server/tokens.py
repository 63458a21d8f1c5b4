"""Bearer tokens of the team server: made here, stored hashed by the run store.

A token is ``glm_`` + 32 random bytes (URL-safe base64), shown once when created. The store
keeps only its SHA-256 (a salt adds nothing for a 256-bit random secret; it is a lookup key,
not a password) in its ``greenlm_server_tokens`` table (part of the store's schema since
version 2), so a PostgreSQL store shares tokens between server replicas. Revoked tokens stay
listed with their revocation time. This module never touches SQL: it goes through the
store's public token methods.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

from greenlm.errors import GreenlmError
from greenlm.store import RunStore

TOKEN_PREFIX = "glm_"


class TokenError(GreenlmError):
    """A token cannot be created or revoked (unknown id or name, bad name)."""


def hash_token(token: str) -> str:
    """The stored form of a token (hex SHA-256)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenStore:
    """Create, list, revoke and check tokens in a run store's database."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self._last_touch: dict[str, float] = {}

    def create(self, name: str) -> tuple[str, str]:
        """A new token for ``name``: returns ``(id, token)``; the token is not stored."""
        name = name.strip()
        if not name or len(name) > 128 or "\x00" in name:
            raise TokenError("A token needs a name of 1-128 characters (who or what uses it).")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        tid = secrets.token_hex(4)
        self.store.add_token(tid, name, hash_token(token))
        return tid, token

    def list(self) -> list[dict[str, Any]]:
        """Every token's record (id, name, created, revoked, last used), oldest first."""
        return [t.to_dict() for t in self.store.tokens()]

    def revoke(self, id_or_name: str) -> int:
        """Revoke the token with this id, or every active token with this name."""
        n = self.store.revoke_tokens(id_or_name)
        if not n:
            known = ", ".join(f"{t.id} ({t.name})" for t in self.store.tokens() if t.revoked_at is None)
            raise TokenError(f"No active token with id or name {id_or_name!r}. Active: {known or 'none'}.")
        return n

    def verify(self, token: str | None) -> str | None:
        """The id of the active token ``token``, or None."""
        if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        h = hash_token(token)
        found = self.store.active_token(h)
        if found is None or not secrets.compare_digest(found[1], h):
            return None
        tid = found[0]
        now = time.time()
        if now - self._last_touch.get(tid, 0.0) > 60:  # record use, at most once a minute
            self._last_touch[tid] = now
            self.store.touch_token(tid)
        return tid
