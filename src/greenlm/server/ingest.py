"""What the ingest API does with a validated body: idempotent writes to the run store.

- a run start is recorded once (a re-post, or a start arriving after the result, is a no-op);
- a sample batch is stored once per ``(run_id, seq)``: the batch is claimed in the server's
  ``greenlm_server_batches`` table first, and the claim released if the write fails;
- a finished run replaces what the server had for that run id (``RunStore.save_result`` is
  idempotent), keeping the streamed samples.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import sqlalchemy as sa

from greenlm.errors import RunNotFoundError
from greenlm.server.models import RunIn, RunStartIn, SampleIn, SamplesIn
from greenlm.server.tokens import batches
from greenlm.store import schema as S
from greenlm.store.runs import RunStore
from greenlm.tracking.result import RunResult
from greenlm.tracking.sink import Progress, RunStart, SampleRow

log = logging.getLogger(__name__)


class UnknownRunError(RunNotFoundError):
    """Samples were posted for a run whose start the server never received."""


def _exists(store: RunStore, run_id: str) -> dict[str, Any] | None:
    try:
        return _get_exact(store, run_id)
    except RunNotFoundError:
        return None


def _get_exact(store: RunStore, run_id: str) -> dict[str, Any]:
    """The run with exactly this id (no prefix matching: ids from the network are exact)."""
    with store.engine.connect() as conn:
        row = (
            conn.execute(
                sa.select(S.runs.c.run_id, S.runs.c.status, S.runs.c.result_json).where(S.runs.c.run_id == run_id)
            )
            .mappings()
            .first()
        )
    if row is None:
        raise RunNotFoundError(f"No run {run_id!r}.")
    return dict(row)


def record_start(store: RunStore, body: RunStartIn) -> str:
    """Record a run as running; ``exists`` when the server already has it."""
    if _exists(store, body.run_id) is not None:
        return "exists"
    start = RunStart(
        run_id=body.run_id,
        project=body.project,
        started_at=body.started_at,
        pid=body.pid,
        host=body.host,
        process_start_time=body.process_start_time,
        location=body.location.model_dump(),
        pue=body.pue,
        metadata=dict(body.metadata),
        meters=[dict(m) for m in body.meters],
    )
    try:
        store.begin_run(start)
    except sa.exc.IntegrityError:  # raced with another post of the same start
        return "exists"
    return "created"


def _rows(samples: list[SampleIn]) -> list[SampleRow]:
    return [SampleRow(s.t_s, s.component, s.energy_j, s.power_w) for s in samples]


def record_samples(store: RunStore, run_id: str, body: SamplesIn) -> tuple[str, int]:
    """Store one batch of samples (once per ``seq``); returns (result, samples stored)."""
    run = _exists(store, run_id)
    if run is None:
        raise UnknownRunError(
            f"No run {run_id!r} on this server: post its start first (POST /api/v1/runs/{run_id}/start)."
        )
    try:
        with store.begin() as conn:
            conn.execute(batches.insert().values(run_id=run_id, seq=body.seq, received_at=time.time()))
    except sa.exc.IntegrityError:
        return "duplicate", 0
    try:
        if run.get("result_json"):
            # The result came first (out-of-order delivery): keep its totals, add the samples.
            r = RunResult.from_dict(store.get_run(run_id))
            progress = Progress(
                r.duration_s, r.energy_j, r.facility_energy_j, r.co2e_g, {c.name: c.energy_j for c in r.components}
            )
        else:
            p = body.progress
            progress = Progress(p.duration_s, p.energy_j, p.facility_energy_j, p.co2e_g, dict(p.components))
        store.add_samples(run_id, _rows(body.samples), progress)
    except Exception:
        with store.begin() as conn:  # release the claim: a retry may store the batch
            conn.execute(batches.delete().where(batches.c.run_id == run_id, batches.c.seq == body.seq))
        raise
    return "created", len(body.samples)


def record_result(store: RunStore, body: RunIn) -> tuple[str, int]:
    """Store a finished run (replacing an earlier post); returns (result, samples stored)."""
    existing = _exists(store, body.run_id)
    d = body.model_dump(exclude={"samples"})
    d["location"] = body.location.model_dump()
    for band, central in (
        ("energy_low_j", "energy_j"),
        ("energy_high_j", "energy_j"),
        ("co2e_low_g", "co2e_g"),
        ("co2e_high_g", "co2e_g"),
    ):
        if d.get(band) is None:  # no band sent: the band is the figure itself
            d[band] = d[central]
    store.save_result(RunResult.from_dict(d))
    stored = 0
    if body.samples and not _has_samples(store, body.run_id):
        r = RunResult.from_dict(d)
        store.add_samples(
            body.run_id,
            _rows(body.samples),
            Progress(
                r.duration_s, r.energy_j, r.facility_energy_j, r.co2e_g, {c.name: c.energy_j for c in r.components}
            ),
        )
        stored = len(body.samples)
    return ("created" if existing is None else "updated"), stored


def _has_samples(store: RunStore, run_id: str) -> bool:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(S.samples.c.id).where(S.samples.c.run_id == run_id).limit(1)).first() is not None
