"""The run store's tables and its migrations.

Why not alembic: the store is opened inside users' training processes, often several at
once on one SQLite file, and must migrate itself on open, cheaply, without an ``env.py`` or
an ini file. The schema is small and append-mostly. So migrations are plain, ordered
functions in :data:`MIGRATIONS`; ``schema_version`` in the ``greenlm_meta`` table records
how far a database has come, and each migration runs in the same write transaction that
bumps the version (``BEGIN IMMEDIATE`` on SQLite), so two processes opening an old store at
once cannot both apply it. A store newer than this greenlm is refused with a clear error
rather than written.

Readers never migrate (reading never writes): a store at any version from
:data:`READABLE_FROM` to :data:`SCHEMA_VERSION` is read as it is, so the read queries use
only what that oldest readable version has (:data:`RUN_READ_COLUMNS`).
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

metadata = sa.MetaData()

#: The scopes of a token made before tokens had scopes (schema v3): what any token could do then.
LEGACY_SCOPES = "ingest read"

meta = sa.Table(
    "greenlm_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("project", sa.String(256), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("started_at", sa.String(40), nullable=False, index=True),
    sa.Column("ended_at", sa.String(40)),
    sa.Column("updated_at", sa.Float, nullable=False),  # epoch seconds of the last write
    sa.Column("duration_s", sa.Float, nullable=False, default=0.0),
    sa.Column("energy_j", sa.Float, nullable=False, default=0.0),
    sa.Column("facility_energy_j", sa.Float, nullable=False, default=0.0),
    sa.Column("co2e_g", sa.Float, nullable=False, default=0.0),
    sa.Column("cost", sa.Float),
    sa.Column("currency", sa.String(8)),
    sa.Column("pue", sa.Float),
    sa.Column("location_code", sa.String(64), index=True),
    sa.Column("intensity_g_per_kwh", sa.Float),
    sa.Column("provenance", sa.String(16)),
    sa.Column("host", sa.String(256)),
    sa.Column("pid", sa.Integer),
    sa.Column("process_start_time", sa.Float),
    sa.Column("start_json", sa.Text),  # RunStart: location, meters, metadata
    sa.Column("result_json", sa.Text),  # the final RunResult JSON, once finished
    # v2: samples before this run time (s) are downsampled (see greenlm.store.samples)
    sa.Column("samples_compacted_to_s", sa.Float, nullable=False, server_default="0"),
    # v3: who may change the run through the team server (the owner of the token that created
    # it); NULL for runs written directly to the store (a tracker's own store), which only an
    # admin token may change through a server
    sa.Column("owner", sa.String(128)),
)

components = sa.Table(
    "components",
    metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("kind", sa.String(8)),
    sa.Column("energy_j", sa.Float, nullable=False),
    sa.Column("provenance", sa.String(16)),
    sa.Column("low_j", sa.Float),
    sa.Column("high_j", sa.Float),
)

phases = sa.Table(
    "phases",
    metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("path", sa.String(512), primary_key=True),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("parent", sa.String(512)),
    sa.Column("energy_j", sa.Float, nullable=False),
    sa.Column("duration_s", sa.Float, nullable=False),
    sa.Column("steps", sa.Integer, nullable=False),
)

samples = sa.Table(
    "samples",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
    sa.Column("t_s", sa.Float, nullable=False),
    sa.Column("component", sa.String(128), nullable=False),
    sa.Column("energy_j", sa.Float, nullable=False),
    sa.Column("power_w", sa.Float),
    sa.Index("ix_samples_run_t", "run_id", "t_s"),
)


#: Team-server bearer tokens (only their SHA-256 is stored).
tokens = sa.Table(
    "greenlm_server_tokens",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float),
    sa.Column("last_used_at", sa.Float),
    # v3: what the token may do (space-separated: ingest, read, admin) and whose runs it writes
    # (NULL: the token's name). Tokens made before v3 keep what they could do then.
    sa.Column("scopes", sa.String(64), nullable=False, server_default=LEGACY_SCOPES),
    sa.Column("owner", sa.String(128)),
)

#: Sample batches a team server already stored, so a re-posted batch is not stored twice.
batches = sa.Table(
    "greenlm_server_batches",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("received_at", sa.Float, nullable=False),
)

#: The ``runs`` columns every readable version has (reads select these, never ``runs.*``).
RUN_READ_COLUMNS = tuple(c for c in runs.c if c.name not in ("samples_compacted_to_s", "owner"))
#: The token columns every version with tokens has.
TOKEN_READ_COLUMNS = tuple(c for c in tokens.c if c.name not in ("scopes", "owner"))


def _v1(conn: sa.Connection) -> None:
    """Initial schema: runs, components, phases, samples."""
    for t in (runs, components, phases, samples):
        t.create(conn, checkfirst=True)


def _v2(conn: sa.Connection) -> None:
    """Sample downsampling bookkeeping; the team server's tokens and batches join the store.

    The two server tables existed before, created on first use by the server; ``checkfirst``
    keeps them (and their tokens) as they are.
    """
    have = {c["name"] for c in sa.inspect(conn).get_columns("runs")}
    if "samples_compacted_to_s" not in have:
        conn.execute(sa.text("ALTER TABLE runs ADD COLUMN samples_compacted_to_s FLOAT NOT NULL DEFAULT 0"))
    for t in (tokens, batches):
        t.create(conn, checkfirst=True)


def _v3(conn: sa.Connection) -> None:
    """Ownership and scopes: a run belongs to the owner of the token that created it.

    Existing runs get no owner (only an admin token may change them through a server);
    existing tokens keep what every token could do before (``ingest read``).
    """
    insp = sa.inspect(conn)
    have = {c["name"] for c in insp.get_columns("runs")}
    if "owner" not in have:
        conn.execute(sa.text("ALTER TABLE runs ADD COLUMN owner VARCHAR(128)"))
    have = {c["name"] for c in insp.get_columns(tokens.name)}
    if "scopes" not in have:
        conn.execute(
            sa.text(f"ALTER TABLE {tokens.name} ADD COLUMN scopes VARCHAR(64) NOT NULL DEFAULT '{LEGACY_SCOPES}'")
        )
    if "owner" not in have:
        conn.execute(sa.text(f"ALTER TABLE {tokens.name} ADD COLUMN owner VARCHAR(128)"))


#: PostgreSQL advisory lock taken by the migrating transaction: processes that open a new
#: store at once (the nodes of a distributed job) migrate one after the other.
MIGRATION_LOCK_KEY = 0x67726E6C6D  # "grnlm"

#: Ordered migrations; index + 1 is the schema version each one produces.
MIGRATIONS: list[Callable[[sa.Connection], None]] = [_v1, _v2, _v3]
SCHEMA_VERSION = len(MIGRATIONS)
#: The oldest schema version a reader can read without migrating it.
READABLE_FROM = 1
#: The version from which the token and batch tables are part of the store.
TOKENS_FROM = 2
#: The version from which tokens have scopes and owners, and runs an owner.
OWNERS_FROM = 3
