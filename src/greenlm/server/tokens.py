"""Bearer tokens of the team server, stored hashed next to the runs.

A token is ``glm_`` + 32 random bytes (URL-safe base64), shown once when created. The server
keeps only its SHA-256 (a salt adds nothing for a 256-bit random secret; it is a lookup key,
not a password) in the ``greenlm_server_tokens`` table of the run store's database, so a
PostgreSQL store shares tokens between server replicas. Revoked tokens stay listed with
their revocation time.

The table belongs to the server, not to the run store's schema: it is created on first use
with ``CREATE TABLE IF NOT EXISTS`` semantics and never touched by the store's migrations.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

import sqlalchemy as sa

from greenlm.errors import GreenlmError
from greenlm.store.runs import RunStore

TOKEN_PREFIX = "glm_"

metadata = sa.MetaData()
tokens = sa.Table(
    "greenlm_server_tokens",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float),
    sa.Column("last_used_at", sa.Float),
)
#: Sample batches already stored, so a re-posted batch is not stored twice.
batches = sa.Table(
    "greenlm_server_batches",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("received_at", sa.Float, nullable=False),
)


class TokenError(GreenlmError):
    """A token cannot be created or revoked (unknown id or name, bad name)."""


def hash_token(token: str) -> str:
    """The stored form of a token (hex SHA-256)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def ensure_tables(store: RunStore) -> None:
    """Create the server's tables in the store's database if they are missing."""
    with store.begin() as conn:
        metadata.create_all(conn, checkfirst=True)


class TokenStore:
    """Create, list, revoke and check tokens in a run store's database."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        ensure_tables(store)
        self._last_touch: dict[str, float] = {}

    def create(self, name: str) -> tuple[str, str]:
        """A new token for ``name``: returns ``(id, token)``; the token is not stored."""
        name = name.strip()
        if not name or len(name) > 128 or "\x00" in name:
            raise TokenError("A token needs a name of 1-128 characters (who or what uses it).")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        tid = secrets.token_hex(4)
        with self.store.begin() as conn:
            conn.execute(
                tokens.insert().values(id=tid, name=name, token_hash=hash_token(token), created_at=time.time())
            )
        return tid, token

    def list(self) -> list[dict[str, Any]]:
        """Every token's record (id, name, created, revoked, last used), oldest first."""
        with self.store.engine.connect() as conn:
            rows = (
                conn.execute(
                    sa.select(
                        tokens.c.id, tokens.c.name, tokens.c.created_at, tokens.c.revoked_at, tokens.c.last_used_at
                    ).order_by(tokens.c.created_at)
                )
                .mappings()
                .all()
            )
        return [dict(r) for r in rows]

    def revoke(self, id_or_name: str) -> int:
        """Revoke the token with this id, or every active token with this name."""
        now = time.time()
        with self.store.begin() as conn:
            active = tokens.c.revoked_at.is_(None)
            n = conn.execute(tokens.update().where(tokens.c.id == id_or_name, active).values(revoked_at=now)).rowcount
            if not n:
                n = conn.execute(
                    tokens.update().where(tokens.c.name == id_or_name, active).values(revoked_at=now)
                ).rowcount
        if not n:
            known = ", ".join(f"{t['id']} ({t['name']})" for t in self.list() if t["revoked_at"] is None)
            raise TokenError(f"No active token with id or name {id_or_name!r}. Active: {known or 'none'}.")
        return int(n)

    def verify(self, token: str | None) -> str | None:
        """The id of the active token ``token``, or None."""
        if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        h = hash_token(token)
        with self.store.engine.connect() as conn:
            row = conn.execute(
                sa.select(tokens.c.id, tokens.c.token_hash).where(
                    tokens.c.token_hash == h, tokens.c.revoked_at.is_(None)
                )
            ).first()
        if row is None or not secrets.compare_digest(row[1], h):
            return None
        tid = str(row[0])
        now = time.time()
        if now - self._last_touch.get(tid, 0.0) > 60:  # record use, at most once a minute
            self._last_touch[tid] = now
            with self.store.begin() as conn:
                conn.execute(tokens.update().where(tokens.c.id == tid).values(last_used_at=now))
        return tid
