"""The dashboard's HTML pages: runs, run detail, compare, estimator, lifecycle, optimize.

Pages render server-side with Jinja2 (autoescaping on) from the same view models as the HTML
report (:mod:`greenlm.report.views`); charts are Chart.js specs drawn by the vendored
library, so the dashboard works offline. The estimator and the optimize view call
``greenlm.estimate`` and read optimize results files when those parts are installed, and say
so plainly when they are not.

Forms post back with a CSRF token (a double-submit cookie set with the page) and are checked
by :func:`greenlm.server.auth.check_form`; the lifecycle plan is parsed by
:func:`greenlm.config.load_yaml` (no aliases, bounded size and nesting), and every error shown
is bounded (:func:`greenlm.server.app.public_message`).
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import logging
import pathlib
import urllib.parse
from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from greenlm.config import greenlm_home, load_yaml
from greenlm.errors import ConfigError, GreenlmError
from greenlm.report import views
from greenlm.report.html import environment
from greenlm.report.loaders import load_optimize
from greenlm.report.plots import Chart, runs_overview
from greenlm.server.app import public_message
from greenlm.server.auth import COOKIE, CSRF_COOKIE, CSRF_FIELD, Principal, check_form, csrf_value, reader
from greenlm.store.urls import redact_url
from greenlm.tracking.result import STATUSES

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
TEMPLATES_DIR = pathlib.Path(__file__).parent / "templates"


def _figure(attr: str) -> Any:
    return lambda r: float(getattr(r.result, attr)) if r.result is not None else -1.0


SORTS: dict[str, Any] = {
    "started": lambda r: r.started_at,
    "project": lambda r: r.project.lower(),
    "status": lambda r: r.status,
    "duration": _figure("duration_s"),
    "energy": _figure("energy_j"),
    "co2e": _figure("co2e_g"),
    "location": lambda r: r.location_code,
}
DEFAULT_LOCATIONS = "FRA,SWE,DEU,GBR,USA,IND,aws:us-east-1,gcp:europe-west1"
MAX_PLAN_CHARS = 64 * 1024
#: How deeply a lifecycle plan may nest (a real plan nests 3 levels).
MAX_PLAN_DEPTH = 32


@lru_cache(maxsize=1)
def _env() -> Any:
    return environment([TEMPLATES_DIR])


def render(request: Request, name: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    """A page from ``name`` with the common context (nav, settings, charts, the CSRF token)."""
    charts: list[Chart] = ctx.pop("charts", [])
    csrf, new_csrf = csrf_value(request)
    html = (
        _env()
        .get_template(name)
        .render(
            request_path=request.url.path,
            settings=request.app.state.settings,
            charts=charts,
            store_url=redact_url(request.app.state.store.url),
            csrf_field=CSRF_FIELD,
            csrf=csrf,
            signed_in=bool(request.cookies.get(COOKIE)),
            **ctx,
        )
    )
    resp = HTMLResponse(html, status_code=status_code)
    if new_csrf:
        resp.set_cookie(
            CSRF_COOKIE, csrf, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/"
        )
    return resp


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    """An error as a page (404 unknown run, 422 bad form input); the message is bounded."""
    return render(request, "error.html", status_code=status, status=status, message=public_message(message))


def _guard(request: Request) -> Response | None:
    """Redirect to sign-in when this server needs a token for reads and none is presented."""
    if _viewer(request) is not None:
        return None
    nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={urllib.parse.quote(nxt)}", status_code=303)


def _viewer(request: Request) -> Principal | None:
    """Who reads this page (a bearer header counts too; a token without ``read`` is a 403)."""
    creds = None
    auth = request.headers.get("authorization") or ""
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value:
        from fastapi.security import HTTPAuthorizationCredentials

        creds = HTTPAuthorizationCredentials(scheme="Bearer", credentials=value.strip())
    return reader(request, creds)


# ------------------------------------------------------------------------------ runs
@router.get("/", response_class=HTMLResponse)
def runs_page(
    request: Request,
    q: Annotated[str, Query(max_length=256)] = "",
    project: Annotated[str, Query(max_length=256)] = "",
    status: Annotated[str, Query(max_length=16)] = "",
    location: Annotated[str, Query(max_length=64)] = "",
    since: Annotated[str, Query(max_length=10)] = "",
    until: Annotated[str, Query(max_length=10)] = "",
    sort: Annotated[str, Query(max_length=16)] = "started",
    order: Annotated[str, Query(max_length=4)] = "desc",
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> Response:
    """Runs with search, filters (project, status, location, dates), sorting and totals."""
    if (r := _guard(request)) is not None:
        return r
    store = request.app.state.store
    for name, d in (("since", since), ("until", until)):
        if d:
            try:
                dt.date.fromisoformat(d)
            except ValueError:
                raise ConfigError(f"{name} must be a date like 2025-01-31, got {d!r}") from None
    if status and status not in STATUSES:
        raise ConfigError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    every = store.list_runs()
    projects = sorted({r.project for r in every})
    locations = sorted({r.location_code for r in every if r.location_code})
    runs = store.list_runs(project=project or None, status=status or None, search=q or None, since=since or None)
    if location:
        runs = [r for r in runs if r.location_code.lower() == location.lower()]
    if until:
        runs = [r for r in runs if r.started_at[:10] <= until]
    key = SORTS.get(sort, SORTS["started"])
    runs.sort(key=key, reverse=(order != "asc"))
    shown = runs[:limit]
    params = {
        k: v
        for k, v in (
            ("q", q),
            ("project", project),
            ("status", status),
            ("location", location),
            ("since", since),
            ("until", until),
        )
        if v
    }

    def sort_url(col: str) -> str:
        new_order = "asc" if (sort == col and order == "desc") else "desc"
        return "/?" + urllib.parse.urlencode({**params, "sort": col, "order": new_order})

    report_url = "/report?" + urllib.parse.urlencode([("ids", r.run_id) for r in shown[:50]])
    return render(
        request,
        "runs.html",
        rows=[views.run_row(r) for r in shown],
        totals=views.runs_totals(runs),
        filters={
            "q": q,
            "project": project,
            "status": status,
            "location": location,
            "since": since,
            "until": until,
            "sort": sort,
            "order": order,
        },
        projects=projects,
        locations=locations,
        total_count=len(every),
        matched=len(runs),
        sort_url=sort_url,
        report_url=report_url,
        charts=[runs_overview(shown)],
    )


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: Annotated[str, Path(max_length=64)]) -> Response:
    """One run: figures with provenance, power chart, components, phases, equivalents."""
    if (r := _guard(request)) is not None:
        return r
    store = request.app.state.store
    run = store.get_run(run_id)
    v = views.run_view(run, store.power_trace(run.run_id) if run.ok else None)
    return render(request, "run.html", v=v, charts=v["charts"])


@router.get("/compare", response_class=HTMLResponse)
def compare_page(request: Request, ids: Annotated[list[str] | None, Query(max_length=50)] = None) -> Response:
    """Two or more runs side by side (``?ids=A&ids=B`` or ``?ids=A,B``)."""
    if (r := _guard(request)) is not None:
        return r
    wanted = _ids(ids)
    store = request.app.state.store
    runs = [store.get_run(i) for i in wanted]
    cv = views.compare_view(runs) if len(runs) >= 2 else None
    recent = [views.run_row(r) for r in store.list_runs(limit=30)]
    return render(
        request,
        "compare.html",
        cv=cv,
        recent=recent,
        selected=wanted,
        charts=cv["charts"] if cv else [],
        report_url="/report?" + urllib.parse.urlencode([("ids", i) for i in wanted]),
    )


def _ids(ids: list[str] | None) -> list[str]:
    out: list[str] = []
    for item in ids or []:
        for i in item.split(","):
            i = i.strip()
            if i and i not in out:
                if len(i) > 64:
                    raise ConfigError(f"not a run id: {i[:20]!r}...")
                out.append(i)
    return out[:50]


@router.get("/report")
def report_download(request: Request, ids: Annotated[list[str] | None, Query(max_length=50)] = None) -> Response:
    """A self-contained HTML report of the given runs, as a download."""
    if (r := _guard(request)) is not None:
        return r
    from greenlm.report.html import render_report

    wanted = _ids(ids)
    if not wanted:
        raise ConfigError("choose at least one run (?ids=RUN_ID)")
    store = request.app.state.store
    runs = [store.get_run(i) for i in wanted]
    html = render_report(runs, {r.run_id: store.power_trace(r.run_id) for r in runs if r.ok})
    name = f"greenlm-report-{runs[0].run_id[:8]}.html"
    return Response(
        html, media_type="text/html; charset=utf-8", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


# ------------------------------------------------------------------------------ estimate
def _estimate_module() -> Any | None:
    try:
        mod = importlib.import_module("greenlm.estimate")
    except ImportError as e:
        log.debug("greenlm.estimate unavailable: %s", e)
        return None
    return mod if all(hasattr(mod, n) for n in ("train", "finetune", "inference")) else None


ESTIMATE_FIELDS = {
    "train": ("params", "tokens", "hardware", "chips", "hours", "mfu", "location", "pue", "power_w"),
    "finetune": (
        "params",
        "tokens",
        "hardware",
        "method",
        "lora_rank",
        "chips",
        "hours",
        "mfu",
        "location",
        "pue",
        "power_w",
    ),
    "inference": (
        "params",
        "hardware",
        "queries_per_day",
        "days",
        "input_tokens",
        "output_tokens",
        "batch_size",
        "weights_bits",
        "chips",
        "location",
        "pue",
        "power_w",
    ),
}
INT_FIELDS = {"lora_rank", "batch_size", "weights_bits"}
TEXT_FIELDS = {"hardware", "method", "location"}
ESTIMATE_EXAMPLE = {
    "kind": "train",
    "params": "7e9",
    "tokens": "2e12",
    "hardware": "A100",
    "chips": "512",
    "location": "FRA",
}


def _estimate_kwargs(kind: str, form: dict[str, str]) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    for name in ESTIMATE_FIELDS[kind]:
        raw = (form.get(name) or "").strip()
        if not raw:
            continue
        if name in TEXT_FIELDS:
            kw[name] = raw
            continue
        try:
            kw[name] = int(float(raw)) if name in INT_FIELDS else float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    return kw


@router.get("/estimate", response_class=HTMLResponse)
def estimate_page(request: Request) -> Response:
    """The estimator form (train / fine-tune / inference), its result with band, and locations."""
    if (r := _guard(request)) is not None:
        return r
    est = _estimate_module()
    form = {k: v[:200] for k, v in request.query_params.items()}
    kind = form.get("kind") or "train"
    if kind not in ESTIMATE_FIELDS:
        raise ConfigError(f"kind must be one of {', '.join(ESTIMATE_FIELDS)}, got {kind!r}")
    ctx: dict[str, Any] = {
        "available": est is not None,
        "form": form or ESTIMATE_EXAMPLE,
        "kind": kind,
        "fields": ESTIMATE_FIELDS,
        "ev": None,
        "cmp": None,
        "error": None,
        "default_locations": DEFAULT_LOCATIONS,
    }
    charts: list[Chart] = []
    if est is not None and form.get("params"):
        fn = getattr(est, kind)
        try:
            kw = _estimate_kwargs(kind, form)
            result = fn(**kw).to_dict()
            ctx["ev"] = views.estimate_view(result)
            locs = [x.strip() for x in (form.get("compare") or DEFAULT_LOCATIONS).split(",") if x.strip()][:20]
            options = []
            for loc in locs:
                o = fn(**{**kw, "location": loc}).to_dict()
                options.append(
                    {
                        **o,
                        "label": loc,
                        "location": loc,
                        "location_name": (o.get("location") or {}).get("name"),
                        "intensity_g_per_kwh": (o.get("location") or {}).get("intensity_g_per_kwh"),
                    }
                )
            options.sort(key=lambda o: float(o.get("total_co2e_t") or o.get("co2e_t") or 0))
            for i, o in enumerate(options, 1):
                o["rank"] = i
            ctx["cmp"] = views.comparison_view(
                {"options": options, "ranked_by": ["total_co2e_t"]}, chart_id="est-locations"
            )
            charts = ctx["cmp"]["charts"]
        except GreenlmError as e:
            ctx["error"] = public_message(e)
        except (TypeError, ValueError, OverflowError) as e:
            ctx["error"] = public_message(f"invalid input: {e}")
    elif form.get("params") is None:
        ctx["form"] = {**ESTIMATE_EXAMPLE, **form}
    return render(request, "estimate.html", charts=charts, **ctx)


@router.get("/lifecycle", response_class=HTMLResponse)
def lifecycle_form(request: Request) -> Response:
    """The lifecycle view: a plan (YAML) to estimate, prefilled with the shipped example."""
    if (r := _guard(request)) is not None:
        return r
    return _lifecycle(request, _example_plan(), "", DEFAULT_LOCATIONS, run=False)


@router.post("/lifecycle", response_class=HTMLResponse)
async def lifecycle_post(request: Request) -> Response:
    """Estimate the posted plan: parts as stacked charts, the composite score and its weights."""
    if (r := _guard(request)) is not None:
        return r
    form = await request.form(max_files=0, max_fields=20, max_part_size=MAX_PLAN_CHARS * 4)
    check_form(request, form)
    plan = str(form.get("plan") or "")
    if len(plan) > MAX_PLAN_CHARS:
        raise ConfigError(f"the plan is {len(plan)} characters long; at most {MAX_PLAN_CHARS} are accepted")
    weights = str(form.get("weights") or "")[:200]
    locs = str(form.get("compare") or "")[:500]
    return _lifecycle(request, plan, weights, locs, run=True)


def _example_plan() -> str:
    try:
        from importlib import resources

        ref = resources.files("greenlm.estimate").joinpath("examples").joinpath("plan.yaml")
        return ref.read_text(encoding="utf-8")
    except Exception:
        return (
            "name: my-model\nhardware: A100\nlocation: FRA\nmodel:\n  params: 7.0e9\n"
            "training:\n  tokens: 2.0e12\n  chips: 64\n"
        )


def _lifecycle(request: Request, plan_text: str, weights: str, locs: str, run: bool) -> Response:
    est = _estimate_module()
    available = est is not None and all(hasattr(est, n) for n in ("parse_plan", "lifecycle"))
    ctx: dict[str, Any] = {
        "available": available,
        "plan": plan_text,
        "weights": weights,
        "compare": locs,
        "lv": None,
        "cmp": None,
        "error": None,
    }
    charts: list[Chart] = []
    status = 200
    if available and run and est is not None:
        try:
            try:  # no aliases (a few hundred bytes of them expand to gigabytes), nothing quoted back
                data = load_yaml(plan_text, "the plan")
            except RecursionError:
                raise ConfigError(f"the plan is nested too deeply (more than {MAX_PLAN_DEPTH} levels)") from None
            if _depth(data) > MAX_PLAN_DEPTH:
                raise ConfigError(f"the plan is nested too deeply (more than {MAX_PLAN_DEPTH} levels)")
            plan = est.parse_plan(data, "(form)")
            lc = est.lifecycle(plan, weights or None).to_dict()
            ctx["lv"] = views.lifecycle_view(lc)
            charts += ctx["lv"]["charts"]
            loc_list = [x.strip() for x in locs.split(",") if x.strip()][:20]
            if loc_list and hasattr(est, "compare"):
                ctx["cmp"] = views.comparison_view(est.compare(plan, loc_list).to_dict(), chart_id="lc-locations")
                charts += ctx["cmp"]["charts"]
        except GreenlmError as e:
            ctx["error"], status = public_message(e), 422
        except (TypeError, ValueError, OverflowError, RecursionError) as e:
            ctx["error"], status = public_message(f"invalid plan: {type(e).__name__}: {e}"), 422
    return render(request, "lifecycle.html", status_code=status, charts=charts, **ctx)


def _depth(value: Any, limit: int = 64) -> int:
    """How deeply ``value`` nests lists and mappings (stops counting past ``limit``)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            if d > limit:
                return d
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


# ------------------------------------------------------------------------------ optimize
def optimize_sources(request: Request) -> list[pathlib.Path]:
    """Optimize results the dashboard may show: ``--optimize`` paths, then ``$GREENLM_HOME/optimize``."""
    out: list[pathlib.Path] = []
    for p in request.app.state.settings.optimize_paths:
        out.append(pathlib.Path(p).expanduser())
    home = greenlm_home() / "optimize"
    if home.is_dir():
        out += sorted(home.glob("*/optimize.json")) + sorted(home.glob("*/results.json"))
    return out


@router.get("/optimize", response_class=HTMLResponse)
def optimize_page(request: Request, i: Annotated[int, Query(ge=0, le=10_000)] = 0) -> Response:
    """Optimization results: the table, the energy-vs-quality Pareto chart, the recommendation."""
    if (r := _guard(request)) is not None:
        return r
    sources = optimize_sources(request)
    ov, error = None, None
    if sources:
        src = sources[min(i, len(sources) - 1)]
        try:
            ov = views.optimize_view(load_optimize(src))
        except GreenlmError as e:
            error = str(e)
    return render(
        request,
        "optimize.html",
        sources=[str(s) for s in sources],
        current=i,
        ov=ov,
        error=error,
        charts=ov["charts"] if ov else [],
    )


# ------------------------------------------------------------------------------ sign-in
@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: Annotated[str, Query(max_length=2000)] = "/") -> Response:
    """Sign in with a token that can read (servers whose reads need a token)."""
    return render(request, "login.html", next=_safe_next(next), error=None)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Check the token; keep a signed, read-only session (never the token) in an HttpOnly cookie."""
    form = await request.form(max_files=0, max_fields=10, max_part_size=4096)
    check_form(request, form)
    token = str(form.get("token") or "").strip()
    nxt = _safe_next(str(form.get("next") or "/"))
    tokens = request.app.state.tokens
    rec = tokens.verify(token)
    if rec is None:
        return render(request, "login.html", status_code=401, next=nxt, error="invalid or revoked token")
    if not Principal.of(rec, "bearer").can("read"):
        return render(
            request,
            "login.html",
            status_code=403,
            next=nxt,
            error=f"this token cannot read runs (scopes: {' '.join(rec.scopes)}): sign in with a token made with "
            "--scope read",
        )
    from greenlm.server.tokens import SESSION_S

    resp = RedirectResponse(nxt, status_code=303)
    resp.set_cookie(
        COOKIE,
        tokens.session_for(rec),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=SESSION_S,
        path="/",
    )
    return resp


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Forget the sign-in cookie."""
    form = await request.form(max_files=0, max_fields=5, max_part_size=1024)
    check_form(request, form)
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp


def _safe_next(nxt: str) -> str:
    """Only same-site paths (no ``//host`` or ``scheme:``) as a post-login redirect."""
    if not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt:
        return "/"
    return nxt


def dump_json(obj: Any) -> str:
    """Pretty JSON for ``<pre>`` blocks (escaped by the template)."""
    return json.dumps(obj, indent=2, default=str)
