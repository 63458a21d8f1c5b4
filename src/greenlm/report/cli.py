"""``greenlm report``: write one self-contained HTML file from runs, optimize results or a plan.

Registered by ``greenlm.cli`` (``register(subparsers)``); cheap to import: jinja2 and the
estimator load only when the command runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from greenlm.errors import ConfigError, GreenlmError

#: File names ``--optimize DIR`` looks for, in order (``greenlm optimize --report DIR``).
OPTIMIZE_FILES = ("optimize.json", "results.json")


def register(sub: Any) -> None:
    """Add ``greenlm report`` to the top-level sub-parsers."""
    p = sub.add_parser(
        "report",
        help="write a self-contained HTML report (runs, optimize results, estimates)",
        description="Write one HTML file with the charts embedded: it opens offline and can be "
        "shared as is. Give run ids (or prefixes), --project, --optimize and/or --estimate.",
    )
    p.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="runs to include (id or unique prefix)")
    p.add_argument("--project", help="include the newest runs of this project")
    p.add_argument("--limit", type=int, default=20, help="with --project: how many runs (default 20)")
    p.add_argument("--optimize", metavar="DIR", help="an optimize results directory or JSON file")
    p.add_argument("--estimate", metavar="PLAN", help="a lifecycle plan (YAML) to estimate")
    p.add_argument("--locations", help="with --estimate: compare these locations (FRA,USA,aws:us-east-1)")
    p.add_argument("--weights", help="with --estimate: score weights compute=..,energy=..,carbon=..")
    p.add_argument("--title", help="page title")
    p.add_argument("--store", help="store URL (default: $GREENLM_STORE or sqlite in $GREENLM_HOME)")
    p.add_argument("-o", "--output", default="greenlm-report.html", help="file to write (default greenlm-report.html)")
    p.set_defaults(func=cmd_report)


def load_optimize(path: str | Path) -> dict[str, Any]:
    """The optimize ``--json`` object from a results directory or a JSON file."""
    p = Path(path).expanduser()
    candidates = [p] if p.is_file() else [p / n for n in OPTIMIZE_FILES]
    for c in candidates:
        if c.is_file():
            try:
                data = json.loads(c.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise ConfigError(f"Cannot read optimize results {c}: {e}") from e
            if not isinstance(data, dict) or "variants" not in data:
                raise ConfigError(
                    f"{c} is not an optimize results file (no 'variants'): "
                    "write one with `greenlm optimize --report DIR`."
                )
            return data
    raise ConfigError(
        f"No optimize results in {p}: expected {' or '.join(OPTIMIZE_FILES)} "
        "(written by `greenlm optimize --report DIR`)."
    )


def estimate_plan(path: str, locations: str | None = None, weights: str | None = None) -> list[dict[str, Any]]:
    """Lifecycle estimate of a plan (and a location comparison) as JSON objects."""
    try:
        from greenlm import estimate
    except ImportError as e:
        raise GreenlmError("greenlm estimate is not available in this installation") from e
    plan = estimate.load_plan(path)
    out = [estimate.lifecycle(plan, weights).to_dict()]
    if locations:
        locs = [x.strip() for x in locations.split(",") if x.strip()]
        out.append(estimate.compare(plan, locs).to_dict())
    return out


def cmd_report(args: argparse.Namespace) -> int:
    """Gather what was asked for, render, write; print the path."""
    from greenlm.report.html import render_report, write_report
    from greenlm.store import open_store

    if not (args.run_ids or args.project or args.optimize or args.estimate):
        raise ConfigError(
            "Nothing to report: give RUN_ID..., --project, --optimize DIR or "
            "--estimate plan.yaml (e.g. `greenlm report 3b0c81ec -o report.html`)."
        )
    runs: list[dict[str, Any]] = []
    samples: dict[str, list[dict[str, Any]]] = {}
    if args.run_ids or args.project:
        store = open_store(args.store)
        seen = set()
        picked = [store.get_run(rid) for rid in args.run_ids]
        if args.project:
            if args.limit is not None and args.limit <= 0:
                raise ConfigError("--limit must be a positive number of runs.")
            found = store.list_runs(project=args.project, limit=args.limit)
            if not found:
                raise ConfigError(f"No runs of project {args.project!r} in {store.url}.")
            picked += found
        for r in picked:
            if r["run_id"] not in seen:
                seen.add(r["run_id"])
                runs.append(r)
                samples[r["run_id"]] = store.get_samples(r["run_id"])
    optimize = load_optimize(args.optimize) if args.optimize else None
    estimates = estimate_plan(args.estimate, args.locations, args.weights) if args.estimate else []
    html = render_report(runs, samples, optimize=optimize, estimates=estimates, title=args.title)
    path = write_report(args.output, html)
    print(f"wrote {path} ({len(html) / 1024:.0f} KiB, self-contained)")
    return 0
