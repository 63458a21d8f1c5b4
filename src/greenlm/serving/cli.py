"""``greenlm serve`` and ``greenlm bench serve``: parse, build the options, call in."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from greenlm import argtypes as t
from greenlm import limits
from greenlm.errors import ConfigError


def _tracker_options(p: argparse.ArgumentParser) -> None:
    t.add_tracker_options(
        p.add_argument_group("measurement (as for greenlm track)"),
        project_help="project of the serving run (default: $GREENLM_PROJECT or 'default')",
        interval_default=0.1,
        interval_help="sampling interval in seconds (default 0.1: a response waits at most this long for its figure)",
        attribution_help="charge the engine's process tree (default) or the whole machine",
        meta_example="hardware=A100, params=135e6",
    )


def _meta(items: list[str]) -> dict[str, Any]:
    return t.meta_items(items)


def register(subparsers: Any) -> None:
    """Add ``greenlm serve`` and ``greenlm bench serve`` to the top-level parser."""
    p = subparsers.add_parser(
        "serve",
        help="front an OpenAI-compatible engine with a proxy that measures energy per request",
        description=(
            "Start ENGINE COMMAND as a measured child (or attach with --upstream URL --pid PID) and serve an "
            "OpenAI-compatible proxy on --port whose responses carry their energy. Without a command: "
            "transformers serve of greenlm's SmolLM2 copy on the CPU. SIGTERM / Ctrl-C stop it; the run is stored."
        ),
    )
    p.add_argument("--port", type=t.PORT, default=8000, help="port of the proxy (default 8000)")
    p.add_argument("--host", type=t.HOST, default="127.0.0.1", help="address the proxy binds (default 127.0.0.1)")
    p.add_argument(
        "--upstream",
        type=t.Url(),
        metavar="URL",
        help="where the engine answers (default: read from the engine command's --host/--port)",
    )
    p.add_argument("--pid", type=t.PID, help="process id of an engine already running (with --upstream)")
    p.add_argument(
        "--model-name",
        dest="model",
        type=t.NAME,
        help="model label of idle energy and of requests that name none (default: the engine's first model)",
    )
    p.add_argument(
        "--prefill-weight",
        type=t.Number(0.0, 100.0, example="0.1"),
        metavar="W",
        default=None,
        help="decode-token equivalents of one prompt token in the split (default: fitted for SmolLM2 on CPU)",
    )
    p.add_argument(
        "--startup-timeout",
        metavar="S",
        dest="startup_timeout_s",
        type=t.SECONDS,
        default=600.0,
        help="seconds to wait for the engine to answer GET /v1/models (default 600)",
    )
    p.add_argument(
        "--grace",
        metavar="S",
        dest="grace_s",
        type=t.Number(0.0, 3600.0, unit="s", example="10"),
        default=10.0,
        help="on SIGTERM, seconds given to requests in flight and then to the engine to stop (default 10)",
    )
    p.add_argument(
        "--window",
        metavar="S",
        dest="window_s",
        type=t.SECONDS,
        default=300.0,
        help="roll-up window saved with the run, seconds (default 300)",
    )
    p.add_argument("--json", action="store_true", help="print the stored run as one JSON object at the end")
    _tracker_options(p)
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="ENGINE", help="-- the engine command and its arguments")
    p.set_defaults(func=cmd_serve)

    b = subparsers.add_parser("bench", help="benchmarks of energy against speed")
    bs = b.add_subparsers(dest="bench_cmd", metavar="WHAT", required=True)
    q = bs.add_parser(
        "serve",
        help="sweep concurrency against a greenlm serve proxy: J per token vs throughput and latency",
        description=(
            "Send streaming chat requests to a greenlm serve proxy at each concurrency and report, per point, "
            "J per output token and per request, output tokens/s, time to first token and inter-token latency "
            "(p50/p95) and power, with provenance and band."
        ),
    )
    q.add_argument("--url", type=t.Url(), required=True, help="the greenlm serve proxy, e.g. http://127.0.0.1:8000")
    q.add_argument("--model", type=t.NAME, help="model to request (default: the proxy's model)")
    q.add_argument(
        "--concurrency",
        type=t.WholeList(1, 100000),
        default="1,2,4,8",
        help="comma-separated concurrency levels (default 1,2,4,8)",
    )
    q.add_argument("--requests", type=t.COUNT, default=16, help="requests per concurrency level (default 16)")
    q.add_argument(
        "--prompts",
        type=t.InputFile(example="prompts.txt"),
        metavar="FILE",
        help="file of prompts: one per line, or JSON lines with 'prompt' or 'messages'",
    )
    q.add_argument(
        "--max-tokens",
        dest="max_tokens",
        type=t.Whole(1, 10**6),
        default=32,
        metavar="T",
        help="max_tokens of each request (32)",
    )
    q.add_argument("--warmup", type=t.Whole(0, 10**6), default=1, help="requests sent before measuring (default 1)")
    q.add_argument(
        "--timeout", dest="timeout_s", type=t.SECONDS, default=600.0, metavar="S", help="seconds per request (600)"
    )
    q.add_argument(
        "--total-params",
        type=t.Number(*limits.PARAMS, example="135e6"),
        metavar="N",
        help="the model's parameter count, recorded with the points",
    )
    q.add_argument(
        "--active-params",
        type=t.Number(*limits.PARAMS, example="135e6"),
        metavar="N",
        help="parameters active per token (MoE), recorded",
    )
    q.add_argument(
        "--weight-precision",
        type=t.Text(16, example="bf16"),
        metavar="P",
        help="weight precision (fp32, bf16, int4, ...), recorded",
    )
    q.add_argument("--json", action="store_true", help="print the result as JSON (greenlm.bench.serve) on stdout")
    q.add_argument(
        "--report",
        type=t.OutputDir(example="bench"),
        metavar="DIR",
        help="write bench.json, bench.md and pareto.png there",
    )
    q.set_defaults(func=cmd_bench_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the proxy until stopped; print how the run ended."""
    from greenlm.serving.attribution import DEFAULT_PREFILL_WEIGHT
    from greenlm.serving.serve import ServeOptions, serve

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if cmd and not cmd[0].strip():
        raise ConfigError("The ENGINE command after -- is empty; give a program, e.g. -- transformers serve MODEL.")
    tracker: dict[str, Any] = {
        k: getattr(args, k)
        for k in (
            "project",
            "location",
            "pue",
            "pue_setting",
            "price_per_kwh",
            "currency",
            "interval_s",
            "cpu_tdp_w",
            "attribution",
            "store",
        )
        if getattr(args, k) is not None
    }
    tracker["metadata"] = _meta(args.meta)
    opts = ServeOptions(
        cmd=cmd,
        host=args.host,
        port=args.port,
        upstream=args.upstream,
        pid=args.pid,
        model=args.model,
        prefill_weight=DEFAULT_PREFILL_WEIGHT if args.prefill_weight is None else args.prefill_weight,
        startup_timeout_s=args.startup_timeout_s,
        grace_s=args.grace_s,
        window_s=args.window_s,
        tracker=tracker,
    )
    outcome = serve(opts)
    r = outcome.result
    s = r.metadata.get("serving", {})
    from greenlm import humanize as hz

    print(
        f"greenlm serve: {outcome.reason}. Run {r.run_id[:12]} ({r.status}): {hz.energy(r.energy_j)} measured, "
        f"{s.get('requests', 0)} requests, {hz.energy(s.get('requests_energy_j', 0.0))} in requests, "
        f"{hz.energy(s.get('idle_energy_j', 0.0))} idle, {hz.co2e(r.co2e_g)}.",
        file=sys.stderr,
    )
    for w in r.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        print(json.dumps(r.to_dict(), indent=2, default=str))
    return outcome.exit_code


def cmd_bench_serve(args: argparse.Namespace) -> int:
    """Sweep concurrency against a proxy; print a table (or JSON) and write the report."""
    from greenlm.serving.bench import BenchOptions, run_bench, table, write_report

    opts = BenchOptions(
        url=args.url,
        model=args.model,
        concurrency=list(args.concurrency),
        requests=args.requests,
        prompts_file=args.prompts,
        max_tokens=args.max_tokens,
        warmup=args.warmup,
        timeout_s=args.timeout_s,
        total_params=args.total_params,
        active_params=args.active_params,
        weight_precision=args.weight_precision,
    )
    run = run_bench(opts)
    if args.report:
        paths = write_report(run, args.report)
        print(f"report: {', '.join(str(p) for p in paths)}", file=sys.stderr)
    if args.json:
        print(json.dumps(run.result, indent=2))
    else:
        sys.stdout.write(table(run.result))
    return 0
