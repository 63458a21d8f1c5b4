"""The JSON API under ``/api/v1``: ingest (start, sample batches, finished runs) and reads.

Ingest is idempotent by run id (and by batch ``seq`` for samples), so a tracker's outbox can
re-send anything it is unsure about. A run belongs to the owner of the token that created it:
only tokens of that owner (or an ``admin`` token) may re-post it or add samples to it.
Status codes: 201 created, 200 replaced or already there, 401 no/bad token, 403 the token
lacks the scope or the run is another owner's, 404 unknown run, 413 body too large, 422
invalid body, 503 the store cannot be written (a dashboard opened for reading) or reached.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response

from greenlm.server import ingest
from greenlm.server.auth import Principal, require_ingest, require_reader
from greenlm.server.models import Accepted, Health, RunIn, RunStartIn, SamplePageOut, SamplesIn
from greenlm.store.samples import DEFAULT_PAGE, MAX_PAGE

router = APIRouter(prefix="/api/v1")

RunIdPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$",
        description="run id (or, for reads, a unique prefix of 4+ characters)",
    ),
]
#: The token of an ingest request (401 without one, 403 without the ingest scope).
Ingester = Annotated[Principal, Depends(require_ingest)]
ErrorResponses: dict[int | str, dict[str, Any]] = {
    400: {"description": "the body cannot be decoded, or a bad Content-Length header"},
    401: {"description": "missing, invalid or revoked bearer token"},
    403: {
        "description": "the token lacks the ingest scope, or the run belongs to another owner (then the body has "
        '"reason": "not_owner")'
    },
    413: {"description": "request body too large"},
    422: {"description": "invalid body or parameters"},
}
ReadResponses: dict[int | str, dict[str, Any]] = {
    401: {"description": "reads need a token here, and none (or an invalid one) was given"},
    403: {"description": "the token lacks the read scope"},
}


def _store(request: Request) -> Any:
    return request.app.state.store


@router.get("/health", response_model=Health, tags=["meta"])
def health(request: Request) -> Health:
    """Liveness, version, store schema and whether reads need a token (no auth needed)."""
    from greenlm import __version__

    return Health(
        status="ok",
        version=str(__version__),
        schema_version=_store(request).schema_version,
        read_auth=bool(request.app.state.settings.read_auth),
    )


@router.post(
    "/runs/{run_id}/start",
    response_model=Accepted,
    status_code=201,
    tags=["ingest"],
    responses={
        200: {"model": Accepted, "description": "the run was already known"},
        **ErrorResponses,
    },
)
def post_start(
    run_id: RunIdPath,
    body: RunStartIn,
    response: Response,
    request: Request,
    who: Ingester,
) -> Accepted:
    """Record that a run started (shown as running until its result arrives); it is the token owner's."""
    _same_id(run_id, body.run_id)
    result = ingest.record_start(_store(request), body, who.owner, who.admin)
    if result != "created":
        response.status_code = 200
    return Accepted(run_id=body.run_id, result=result)  # type: ignore[arg-type]


@router.post(
    "/runs/{run_id}/samples",
    response_model=Accepted,
    status_code=201,
    tags=["ingest"],
    responses={
        200: {"model": Accepted, "description": "this batch was already stored"},
        404: {"description": "the run's start was never posted"},
        **ErrorResponses,
    },
)
def post_samples(
    run_id: RunIdPath,
    body: SamplesIn,
    response: Response,
    request: Request,
    who: Ingester,
) -> Accepted:
    """Append one batch of samples of a running run of the token's owner (stored once per ``seq``)."""
    result, n = ingest.record_samples(_store(request), run_id, body, who.owner, who.admin)
    if result != "created":
        response.status_code = 200
    return Accepted(run_id=run_id, result=result, samples_stored=n)  # type: ignore[arg-type]


@router.post(
    "/runs",
    response_model=Accepted,
    status_code=201,
    tags=["ingest"],
    responses={200: {"model": Accepted, "description": "an earlier post of this run was replaced"}, **ErrorResponses},
)
def post_run(body: RunIn, response: Response, request: Request, who: Ingester) -> Accepted:
    """Store a finished run (the tracker's result JSON); its owner re-posting it replaces it."""
    result, n = ingest.record_result(_store(request), body, who.owner, who.admin)
    if result != "created":
        response.status_code = 200
    return Accepted(run_id=body.run_id, result=result, samples_stored=n)  # type: ignore[arg-type]


@router.get(
    "/runs",
    tags=["read"],
    dependencies=[Depends(require_reader)],
    responses={**ReadResponses, 422: ErrorResponses[422]},
)
def list_runs(
    request: Request,
    project: Annotated[str | None, Query(max_length=256)] = None,
    status: Literal["running", "completed", "failed", "interrupted"] | None = None,
    search: Annotated[str | None, Query(max_length=256, description="substring of project, id or location")] = None,
    location: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[str | None, Query(max_length=40, description="ISO date or time (UTC)")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> dict[str, Any]:
    """Runs, newest first, as result-JSON objects, with totals.

    A run whose stored record cannot be read is listed with ``"damaged": "<reason>"`` (its
    figures ``null`` where unknown) and left out of the totals; ``damaged`` counts them.
    """
    for v in (project, search, location, since):
        _no_nul(v)
    runs = _store(request).list_runs(project=project, status=status, search=search, since=since)
    if location:
        runs = [r for r in runs if r.location_code.lower() == location.lower()]
    runs = runs[:limit]
    ok = [r.result for r in runs if r.result is not None]
    return {
        "count": len(runs),
        "runs": [r.to_dict() for r in runs],
        "totals": {
            "energy_j": sum(r.energy_j for r in ok),
            "facility_energy_j": sum(r.facility_energy_j for r in ok),
            "co2e_g": sum(r.co2e_g for r in ok),
        },
        "damaged": len(runs) - len(ok),
    }


@router.get(
    "/runs/{run_id}",
    tags=["read"],
    dependencies=[Depends(require_reader)],
    responses={**ReadResponses, 404: {"description": "no such run"}},
)
def get_run(run_id: RunIdPath, request: Request) -> dict[str, Any]:
    """One run's result JSON (id or unique prefix); a damaged record has ``damaged`` set."""
    return _store(request).get_run(run_id).to_dict()


@router.get(
    "/runs/{run_id}/samples",
    tags=["read"],
    response_model=SamplePageOut,
    dependencies=[Depends(require_reader)],
    responses={**ReadResponses, 404: {"description": "no such run"}, 422: ErrorResponses[422]},
)
def get_samples(
    run_id: RunIdPath,
    request: Request,
    limit: Annotated[
        int, Query(ge=1, le=MAX_PAGE, description=f"samples per page (default {DEFAULT_PAGE}, at most {MAX_PAGE})")
    ] = DEFAULT_PAGE,
    cursor: Annotated[
        str | None,
        Query(max_length=200, description="`next_cursor` of the previous page; omit for the first page"),
    ] = None,
) -> Response:
    """A run's stored samples in time order, one page at a time.

    Each sample has ``t_s``, ``component``, ``energy_j`` (cumulative) and ``power_w`` (mean
    since the previous sample of that component). ``next_cursor`` is null on the last page;
    pass it back as ``cursor`` to read on. Samples older than a day are stored downsampled
    (one per component per minute, energy exact at each kept sample).
    """
    st = _store(request)
    run = st.get_run(run_id)
    page = st.sample_page(run.run_id, limit=limit, cursor=cursor)
    # serialized here, not re-validated item by item against the response model (100x faster
    # for a page of 10,000 samples); the model still documents the body
    body = json.dumps(page.to_dict(), allow_nan=False, separators=(",", ":"))
    return Response(body, media_type="application/json")


def _same_id(path_id: str, body_id: str) -> None:
    if path_id != body_id:
        raise HTTPException(422, detail=f"run id in the path ({path_id!r}) differs from the body's ({body_id!r})")


def _no_nul(v: str | None) -> None:
    if v is not None and "\x00" in v:
        raise HTTPException(422, detail="parameters must not contain NUL characters")
