"""Self-contained HTML reports: one file, charts and styles inlined, viewable offline.

``render_report(...)`` builds the page from stored runs (typed ``StoredRun`` records and
their bounded power traces), an optimize results object and/or an estimate;
``write_report`` writes it atomically. Jinja2 renders with autoescaping on, so every string
that came from a user (project names, tags, metadata, model names) is text, never markup;
chart data goes through :func:`script_json`, which escapes ``<``, ``>`` and ``&`` so it
cannot close its ``<script>`` element.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from greenlm._files import write_text_atomic
from greenlm.errors import MissingExtraError
from greenlm.report import views
from greenlm.report.plots import Chart
from greenlm.store.records import PowerTrace, StoredRun

#: Static assets shipped in the wheel (``greenlm/server/static``), inlined into reports.
ASSETS = ("vendor/chart.umd.min.js", "charts.js", "style.css")


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Mapping):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def script_json(obj: Any) -> str:
    """JSON safe inside ``<script type="application/json">`` (no NaN, no ``</script>``)."""
    s = json.dumps(_clean(obj), allow_nan=False, default=str, separators=(",", ":"))
    return (
        s.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def charts_json(charts: Sequence[Chart]) -> Any:
    """The ``greenlm-charts`` script element for a page's charts (Markup)."""
    from markupsafe import Markup

    payload = {c.id: c.spec for c in charts if not c.empty}
    return Markup('<script type="application/json" id="greenlm-charts">' + script_json(payload) + "</script>")


@cache
def asset(name: str) -> str:
    """The text of a shipped static asset (``vendor/chart.umd.min.js``, ``charts.js``...)."""
    ref = resources.files("greenlm.server").joinpath("static")
    for part in name.split("/"):
        ref = ref.joinpath(part)
    return ref.read_text(encoding="utf-8")


def inline_script(name: str) -> Any:
    """An asset as an inline ``<script>`` (``</`` escaped so the element cannot end early)."""
    from markupsafe import Markup

    return Markup("<script>" + asset(name).replace("</", "<\\/") + "</script>")


def environment(extra_dirs: Sequence[Path] = ()) -> Any:
    """A Jinja2 environment over ``extra_dirs`` then the report templates, autoescaping on."""
    try:
        import jinja2
    except ImportError as e:
        raise MissingExtraError("HTML reports and the dashboard", "server", "jinja2") from e
    here = Path(__file__).parent / "templates"
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([*map(str, extra_dirs), str(here)]),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        provenance_help=views.PROVENANCE_HELP, url_prefix="", charts_json=charts_json, inline_script=inline_script
    )
    return env


def _version() -> str:
    try:
        from greenlm import __version__

        return str(__version__)
    except ImportError:  # pragma: no cover
        return "?"


def render_report(
    runs: Sequence[StoredRun] = (),
    traces: Mapping[str, PowerTrace] | None = None,
    optimize: Mapping[str, Any] | None = None,
    estimates: Sequence[Mapping[str, Any]] = (),
    title: str | None = None,
) -> str:
    """The report page as one HTML string (runs and their comparison, optimize, estimates).

    ``runs`` are stored runs (``RunStore.get_run``), ``traces`` their bounded power traces by
    run id (``RunStore.power_trace``). ``estimates`` are estimate JSON objects: a
    train/finetune/inference estimate, a lifecycle estimate (with ``parts``) or an
    ``estimate compare`` result (with ``options``).
    """
    traces = traces or {}
    units = views.page_units(runs) if runs else None  # one unit per quantity for the whole report
    run_views = [views.run_view(r, traces.get(r.run_id), prefix=f"r{i}-", units=units) for i, r in enumerate(runs)]
    charts: list[Chart] = [c for v in run_views for c in v["charts"]]
    compare = views.compare_view(runs, units) if len(runs) > 1 else None
    if compare:
        charts += compare["charts"]
    opt = views.optimize_view(optimize) if optimize else None
    if opt:
        charts += opt["charts"]
    est = [estimate_views(e, prefix=f"e{i}-") for i, e in enumerate(estimates)]
    for ev in est:
        charts += [c for part in ev.values() if isinstance(part, dict) for c in part.get("charts", [])]
    if title is None:
        if runs:
            title = "greenlm report: " + ", ".join(sorted({r.project for r in runs}))
        elif opt:
            title = f"greenlm optimize report: {opt['model']}"
        else:
            title = "greenlm estimate report" + (
                f": {estimates[0].get('name')}" if estimates and estimates[0].get("name") else ""
            )
    return (
        environment()
        .get_template("report.html")
        .render(
            title=title,
            runs=run_views,
            compare=compare,
            optimize=opt,
            estimates=est,
            charts=charts,
            totals=views.runs_totals(runs, units) if runs else None,
            generated_at=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            version=_version(),
            inline_asset_css=_css(),
        )
    )


def _css() -> Any:
    from markupsafe import Markup

    return Markup(asset("style.css").replace("</", "<\\/"))


def estimate_views(est: Mapping[str, Any], prefix: str = "e-") -> dict[str, Any]:
    """The view of one estimate object: plain, lifecycle (``parts``) or comparison (``options``)."""
    kind = str(est.get("kind") or "estimate")
    out: dict[str, Any] = {"title": f"{kind}: {est.get('name')}" if est.get("name") else kind}
    if est.get("parts"):
        out["lifecycle"] = views.lifecycle_view(est, prefix=prefix)
    elif est.get("options"):
        out["comparison"] = views.comparison_view(est, chart_id=f"{prefix}options")
    else:
        out["estimate"] = views.estimate_view(est)
    return out


def write_report(path: str | Path, html: str) -> Path:
    """Write ``html`` to ``path`` atomically (a reader never sees half a report)."""
    p = Path(path).expanduser()
    p.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(p, html)
