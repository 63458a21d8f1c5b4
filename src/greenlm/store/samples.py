"""Samples: the retention policy (downsampling), cursor pages and bounded power traces.

Retention policy. A sample is one component's cumulative energy at a time since the start
of its run (plus the mean power since the previous sample). Samples taken within the last
:data:`DOWNSAMPLE_AFTER_S` (24 h, wall clock) are kept as recorded. Older ones are merged
into buckets of :data:`BUCKET_S` (60 s of run time) per component: the last sample of each
bucket is kept, the others deleted, and the kept sample's ``power_w`` becomes the mean power
over the whole bucket (energy difference to the previous kept sample over the time
difference). Cumulative energy is therefore exact at every bucket edge, and the energy under
the power curve of any span between edges is unchanged; what is lost is the shape within a
bucket. A run's samples then cost at most one row per component per minute once they are a
day old (a 1 Hz run: 60x smaller).

Who applies it: writers only (reading never writes). Each flush of a running run
downsamples that run's part that has become old; opening a run (``StoreSink.begin``)
downsamples other runs that became old since, at most :data:`MAX_COMPACT_ROWS` samples per
call so a writer never holds the write lock long. ``runs.samples_compacted_to_s`` records
how far a run is done (a bucket edge), so no sample is looked at twice.

Power traces for charts (:func:`power_trace`) apply the same bucketing at read time, with
the bucket width chosen so that at most ``max_points`` points per component are drawn.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from greenlm.errors import ConfigError
from greenlm.store import schema as S
from greenlm.store.records import PowerSeries, PowerTrace, SamplePage
from greenlm.tracking.sink import SampleRow

#: Samples older than this (wall clock, seconds) are downsampled.
DOWNSAMPLE_AFTER_S = 24 * 3600.0
#: Width of the buckets old samples are merged into (seconds of run time).
BUCKET_S = 60.0
#: At most this many samples are read by one downsampling call.
MAX_COMPACT_ROWS = 50_000
#: Default and largest page of the samples API.
DEFAULT_PAGE = 10_000
MAX_PAGE = 100_000
#: Default number of points per component in a power chart.
TRACE_POINTS = 600

_COLS = (S.samples.c.t_s, S.samples.c.component, S.samples.c.energy_j, S.samples.c.power_w)


# --------------------------------------------------------------------------- the policy
def plan_buckets(
    rows: Iterable[tuple[int, float, str, float]],
    bucket_s: float,
    before: Mapping[str, tuple[float, float]] | None = None,
) -> tuple[list[int], list[tuple[int, float | None]]]:
    """Which samples to delete and the new ``power_w`` of those kept (pure).

    ``rows`` are ``(id, t_s, component, energy_j)`` of complete buckets; ``before`` maps a
    component to its last kept ``(t_s, energy_j)`` before them (default ``(0, 0)``: the start
    of the run). Returns ``(ids to delete, [(id kept, mean power over its bucket)])``.
    """
    by_comp: dict[str, list[tuple[float, int, float]]] = {}
    for rid, t, comp, e in rows:
        by_comp.setdefault(comp, []).append((float(t), int(rid), float(e)))
    delete: list[int] = []
    keep: list[tuple[int, float | None]] = []
    for comp, pts in by_comp.items():
        pts.sort()
        prev_t, prev_e = (before or {}).get(comp, (0.0, 0.0))
        last: dict[int, tuple[float, int, float]] = {}
        for p in pts:
            b = math.floor(p[0] / bucket_s)
            old = last.get(b)
            if old is not None:
                delete.append(old[1])
            last[b] = p
        for b in sorted(last):
            t, rid, e = last[b]
            keep.append((rid, (e - prev_e) / (t - prev_t) if t > prev_t else None))
            prev_t, prev_e = t, e
    return delete, keep


def run_start_epoch(started_at: Any) -> float | None:
    """Epoch seconds of a run's ISO start time (None when it cannot be read)."""
    try:
        t = dt.datetime.fromisoformat(str(started_at))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.timestamp()


def due_until(started_at: Any, duration_s: Any, now: float, after_s: float, bucket_s: float) -> float | None:
    """The bucket edge up to which a run's samples are old enough to downsample (or None)."""
    start = run_start_epoch(started_at)
    try:
        duration = float(duration_s)
    except (TypeError, ValueError):
        return None
    if start is None or not math.isfinite(duration):
        return None
    edge = min(now - after_s - start, duration)
    return math.floor(edge / bucket_s) * bucket_s if edge > 0 else None


def compact_run(
    conn: sa.Connection,
    run_id: str,
    until_s: float,
    done_s: float,
    *,
    bucket_s: float = BUCKET_S,
    max_rows: int = MAX_COMPACT_ROWS,
) -> int:
    """Downsample ``run_id``'s samples from ``done_s`` up to ``until_s`` (bucket edges).

    Reads at most ``max_rows`` samples (then stops at an earlier edge); returns how many
    samples were deleted. Runs inside the caller's write transaction.
    """
    if until_s - done_s < bucket_s:
        return 0
    c = S.samples.c
    rows = conn.execute(
        sa.select(c.id, c.t_s, c.component, c.energy_j)
        .where(c.run_id == run_id, c.t_s >= done_s, c.t_s < until_s)
        .order_by(c.t_s, c.id)
        .limit(max_rows + 1)
    ).all()
    hi = until_s
    if len(rows) > max_rows:
        hi = max(math.floor(float(rows[max_rows][1]) / bucket_s) * bucket_s, done_s + bucket_s)
        rows = [r for r in rows if float(r[1]) < hi]
        if len(rows) >= max_rows:  # one bucket holds more than the budget: take it whole
            rows = conn.execute(
                sa.select(c.id, c.t_s, c.component, c.energy_j)
                .where(c.run_id == run_id, c.t_s >= done_s, c.t_s < hi)
                .order_by(c.t_s, c.id)
            ).all()
    before: dict[str, tuple[float, float]] = {}
    for comp in {str(r[2]) for r in rows}:
        prev = conn.execute(
            sa.select(c.t_s, c.energy_j)
            .where(c.run_id == run_id, c.component == comp, c.t_s < done_s)
            .order_by(c.t_s.desc())
            .limit(1)
        ).first()
        if prev is not None:
            before[comp] = (float(prev[0]), float(prev[1]))
    delete, keep = plan_buckets(((int(r[0]), float(r[1]), str(r[2]), float(r[3])) for r in rows), bucket_s, before)
    for i in range(0, len(delete), 500):
        conn.execute(S.samples.delete().where(c.id.in_(delete[i : i + 500])))
    if keep:
        conn.execute(
            S.samples.update().where(c.id == sa.bindparam("kid")).values(power_w=sa.bindparam("kpower")),
            [{"kid": k, "kpower": p} for k, p in keep],
        )
    conn.execute(S.runs.update().where(S.runs.c.run_id == run_id).values(samples_compacted_to_s=hi))
    return len(delete)


# --------------------------------------------------------------------------- pages
def encode_cursor(t_s: float, sample_id: int) -> str:
    """An opaque cursor: the position after sample ``sample_id`` at ``t_s``."""
    return base64.urlsafe_b64encode(f"{t_s!r},{sample_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, int]:
    """``(t_s, id)`` of a cursor from :func:`encode_cursor`; ConfigError when it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        t, _, i = raw.partition(",")
        out = float(t), int(i)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ConfigError(
            f"cursor {cursor[:40]!r} is not a samples cursor: pass the next_cursor of the previous page"
        ) from None
    if not math.isfinite(out[0]):
        raise ConfigError("cursor is not a samples cursor: pass the next_cursor of the previous page")
    return out


def check_limit(limit: Any, name: str = "limit", maximum: int | None = None) -> int | None:
    """``limit`` as a positive int (None stays None); ConfigError saying what would be right."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"{name} must be a positive whole number (1 or more), got {limit!r}.")
    if maximum is not None and limit > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, got {limit}.")
    return limit


def sample_page(conn: sa.Connection, run_id: str, limit: int, cursor: str | None) -> SamplePage:
    """One page of samples in ``(t_s, id)`` order after ``cursor``."""
    c = S.samples.c
    q = sa.select(c.id, *_COLS).where(c.run_id == run_id)
    if cursor:
        t, i = decode_cursor(cursor)
        q = q.where(sa.tuple_(c.t_s, c.id) > sa.tuple_(t, i))  # a row value: an index range scan
    rows = conn.execute(q.order_by(c.t_s, c.id).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    samples = tuple(row_to_sample(r[1:]) for r in rows)
    nxt = encode_cursor(float(rows[-1][1]), int(rows[-1][0])) if more and rows else None
    return SamplePage(run_id, samples, nxt)


def row_to_sample(r: Sequence[Any]) -> SampleRow:
    """A ``(t_s, component, energy_j, power_w)`` row as a SampleRow (ValueError if not numeric)."""
    p = r[3]
    return SampleRow(float(r[0]), str(r[1]), float(r[2]), None if p is None else float(p))


# --------------------------------------------------------------------------- traces
def power_trace(conn: sa.Connection, run_id: str, max_points: int = TRACE_POINTS) -> PowerTrace:
    """A run's power per component from at most ``max_points`` points each.

    When no component has more samples than that, every sample is drawn with its stored
    mean power. Otherwise the run time is cut into ``max_points`` equal buckets and each
    point is the mean power over one bucket, from the cumulative energy of the last sample
    in each bucket (the database does the grouping; only the bucket edges are read). As
    energy is cumulative, the last sample of a bucket is the one with the most energy.
    """
    c = S.samples.c
    stats = conn.execute(
        sa.select(c.component, sa.func.count(), sa.func.max(c.t_s)).where(c.run_id == run_id).group_by(c.component)
    ).all()
    n = sum(int(s[1]) for s in stats)
    if not stats:
        return PowerTrace(run_id, (), 0)
    most = max(int(s[1]) for s in stats)
    if most <= max_points:
        rows = conn.execute(sa.select(*_COLS).where(c.run_id == run_id).order_by(c.t_s, c.id)).all()
        series: dict[str, list[tuple[float, float]]] = {}
        for r in rows:
            t, p = _finite(r[0]), _finite(r[3])
            if t is not None and p is not None:
                series.setdefault(str(r[1]), []).append((t, p))
        return PowerTrace(run_id, tuple(PowerSeries(k, tuple(v)) for k, v in sorted(series.items())), n)
    t_max = max(_finite(s[2]) or 0.0 for s in stats)
    width = t_max / max_points if t_max > 0 else 1.0
    # t_s >= 0, so truncation is the floor; PostgreSQL's CAST rounds, hence floor() there
    bucket = sa.func.floor(c.t_s / width) if conn.dialect.name == "postgresql" else sa.cast(c.t_s / width, sa.Integer)
    # Energy is cumulative (never decreases within a component), so the largest energy of a
    # bucket is the one at its last sample: one GROUP BY, no join back to the rows.
    edge_rows = conn.execute(
        sa.select(c.component, sa.func.max(c.t_s), sa.func.max(c.energy_j))
        .where(c.run_id == run_id)
        .group_by(c.component, bucket)
    ).all()
    pts: dict[str, dict[float, float]] = {}
    for comp, t, e in edge_rows:
        tf, ef = _finite(t), _finite(e)
        if tf is not None and ef is not None:
            pts.setdefault(str(comp), {})[tf] = ef
    out = []
    for comp in sorted(pts):
        prev_t, prev_e = 0.0, 0.0
        line = []
        for t, e in sorted(pts[comp].items()):
            if t > prev_t:
                line.append((t, (e - prev_e) / (t - prev_t)))
            prev_t, prev_e = t, e
        out.append(PowerSeries(comp, tuple(line)))
    return PowerTrace(run_id, tuple(out), n, bucket_s=width)


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None
