"""``greenlm report``: write one self-contained HTML file from runs, optimize results or a plan.

Registered by ``greenlm.cli`` (``register(subparsers)``); cheap to import: jinja2 and the
estimator load only when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from greenlm import argtypes as at
from greenlm.errors import ConfigError
from greenlm.report.loaders import OPTIMIZE_FILES, estimate_plan, load_optimize

__all__ = ["OPTIMIZE_FILES", "cmd_report", "estimate_plan", "load_optimize", "register"]


def register(sub: Any) -> None:
    """Add ``greenlm report`` to the top-level sub-parsers."""
    p = sub.add_parser(
        "report",
        help="write a self-contained HTML report (runs, optimize results, estimates)",
        description="Write one HTML file with the charts embedded: it opens offline and can be "
        "shared as is. Give run ids (or prefixes), --project, --optimize and/or --estimate.",
    )
    p.add_argument("run_ids", nargs="*", type=at.RUN_ID, metavar="RUN_ID", help="runs to include (id or unique prefix)")
    p.add_argument("--project", type=at.PROJECT, help="include the newest runs of this project")
    p.add_argument(
        "--limit",
        type=at.Whole(1, 10**6, what="of runs", example="20"),
        default=20,
        help="with --project: how many runs (default 20)",
    )
    p.add_argument(
        "--optimize",
        type=at.InputFile(example="results", dir_holds=OPTIMIZE_FILES, dir_what="optimize results"),
        metavar="DIR",
        help="an optimize results directory or JSON file",
    )
    p.add_argument(
        "--estimate", type=at.InputFile(example="plan.yaml"), metavar="PLAN", help="a lifecycle plan (YAML) to estimate"
    )
    p.add_argument(
        "--locations",
        type=at.Text(1000, example="FRA,USA"),
        help="with --estimate: compare these locations (FRA,USA,aws:us-east-1)",
    )
    p.add_argument(
        "--weights",
        type=at.Text(200, example="carbon=2"),
        help="with --estimate: score weights compute=..,energy=..,carbon=..",
    )
    p.add_argument("--title", type=at.Text(500, example="Q3 training"), help="page title")
    p.add_argument("--store", type=at.STORE_URL, help="store URL (default: $GREENLM_STORE or sqlite in $GREENLM_HOME)")
    p.add_argument(
        "-o",
        "--output",
        type=at.OutputFile(example="greenlm-report.html"),
        metavar="FILE",
        default="greenlm-report.html",
        help="file to write (default greenlm-report.html)",
    )
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    """Gather what was asked for, render, write; print the path."""
    from greenlm.report.html import render_report, write_report
    from greenlm.store import PowerTrace, StoredRun, open_store
    from greenlm.store.samples import check_limit

    if not (args.run_ids or args.project or args.optimize or args.estimate):
        raise ConfigError(
            "Nothing to report: give RUN_ID..., --project, --optimize DIR or "
            "--estimate plan.yaml (e.g. `greenlm report 3b0c81ec -o report.html`)."
        )
    runs: list[StoredRun] = []
    traces: dict[str, PowerTrace] = {}
    if args.run_ids or args.project:
        check_limit(args.limit, "--limit")
        store = open_store(args.store, read_only=True)
        seen = set()
        picked = [store.get_run(rid) for rid in args.run_ids]
        if args.project:
            found = store.list_runs(project=args.project, limit=args.limit)
            if not found:
                raise ConfigError(f"No runs of project {args.project!r} in {store.display_url}.")
            picked += found
        for r in picked:
            if r.run_id not in seen:
                seen.add(r.run_id)
                runs.append(r)
                if r.ok:
                    traces[r.run_id] = store.power_trace(r.run_id)
                else:
                    print(f"greenlm: run {r.run_id} is damaged ({r.damaged}): shown as such", file=sys.stderr)
    optimize = load_optimize(args.optimize) if args.optimize else None
    estimates = estimate_plan(args.estimate, args.locations, args.weights) if args.estimate else []
    html = render_report(runs, traces, optimize=optimize, estimates=estimates, title=args.title)
    path = write_report(args.output, html)
    print(f"wrote {path} ({len(html) / 1024:.0f} KiB, self-contained)")
    return 0
