"""What the ingest API does with a validated body: idempotent writes to the run store.

- a run start is recorded once (a re-post, or a start arriving after the result, is a no-op);
  the store's ``begin_run`` is race-free, so concurrent posts of one new id create one run;
- a sample batch is stored once per ``(run_id, seq)``: the batch is claimed first
  (``RunStore.claim_batch``), and the claim released if the write fails;
- a finished run replaces what the server had for that run id (``RunStore.save_result`` is
  idempotent and race-free), keeping the streamed samples;
- a run belongs to the owner of the token that created it: another owner's start, samples or
  result is refused (:class:`~greenlm.errors.RunOwnedError`, a 403) before anything is
  written or claimed; an admin token may change any run. The store checks the owner inside
  the write's own transaction, so two owners racing to create one id cannot both win.

Bodies become the tracker's own types (``RunStart``, ``SampleRow``, ``Progress``,
``RunResult``) field by field, from the dataclasses' own field lists, and reach the store
only through its public methods.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from greenlm.errors import RunNotFoundError, RunOwnedError
from greenlm.server.models import RunIn, RunStartIn, SampleIn, SamplesIn
from greenlm.store import RunStore
from greenlm.tracking.result import RunResult
from greenlm.tracking.sink import Progress, RunStart, SampleRow

log = logging.getLogger(__name__)


class UnknownRunError(RunNotFoundError):
    """Samples were posted for a run whose start the server never received."""


def run_start(body: RunStartIn) -> RunStart:
    """The ``RunStart`` a start body describes (every RunStart field is a body field)."""
    d: dict[str, Any] = body.model_dump()
    d["location"] = body.location.model_dump()
    return RunStart(**{f.name: d[f.name] for f in dataclasses.fields(RunStart)})


def record_start(store: RunStore, body: RunStartIn, owner: str | None, admin: bool = False) -> str:
    """Record a run as running, as ``owner``'s; ``exists`` when the server already has it (and it is theirs)."""
    return "created" if store.begin_run(run_start(body), owner=owner, admin=admin) else "exists"


def _rows(samples: list[SampleIn]) -> list[SampleRow]:
    return [SampleRow(s.t_s, s.component, s.energy_j, s.power_w) for s in samples]


def _progress_of(r: RunResult) -> Progress:
    return Progress(r.duration_s, r.energy_j, r.facility_energy_j, r.co2e_g, {c.name: c.energy_j for c in r.components})


def record_samples(
    store: RunStore, run_id: str, body: SamplesIn, owner: str | None, admin: bool = False
) -> tuple[str, int]:
    """Store one batch of samples of ``owner``'s run (once per ``seq``); returns (result, samples stored)."""
    run = store.find_run(run_id)
    if run is None:
        raise UnknownRunError(
            f"No run {run_id!r} on this server: post its start first (POST /api/v1/runs/{run_id}/start)."
        )
    if not admin and owner is not None and store.run_owner(run_id) != owner:
        # before the claim: another owner must not be able to take a batch number of this run
        raise RunOwnedError(
            f"Run {run_id!r} belongs to another owner: a token can add samples only to the runs its owner created."
        )
    if not store.claim_batch(run_id, body.seq):
        return "duplicate", 0
    try:
        if not run.partial and run.result is not None:
            # The result came first (out-of-order delivery): keep its totals, add the samples.
            progress = _progress_of(run.result)
        else:
            p = body.progress
            progress = Progress(p.duration_s, p.energy_j, p.facility_energy_j, p.co2e_g, dict(p.components))
        store.add_samples(run_id, _rows(body.samples), progress, owner=owner, admin=admin)
    except Exception:
        store.release_batch(run_id, body.seq)  # a retry may store the batch
        raise
    return "created", len(body.samples)


def run_result(body: RunIn) -> RunResult:
    """The ``RunResult`` a finished-run body describes (a band not sent is the figure itself)."""
    d = body.model_dump(exclude={"samples"})
    d["location"] = body.location.model_dump()
    for band, central in (
        ("energy_low_j", "energy_j"),
        ("energy_high_j", "energy_j"),
        ("co2e_low_g", "co2e_g"),
        ("co2e_high_g", "co2e_g"),
    ):
        if d.get(band) is None:
            d[band] = d[central]
    return RunResult.from_dict(d)


def record_result(store: RunStore, body: RunIn, owner: str | None, admin: bool = False) -> tuple[str, int]:
    """Store ``owner``'s finished run (replacing their earlier post); returns (result, samples stored)."""
    r = run_result(body)
    created = store.save_result(r, owner=owner, admin=admin)
    stored = 0
    if body.samples and not store.has_samples(body.run_id):
        store.add_samples(body.run_id, _rows(body.samples), _progress_of(r), owner=owner, admin=admin)
        stored = len(body.samples)
    return ("created" if created else "updated"), stored
