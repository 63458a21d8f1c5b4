"""``greenlm monitor serve`` (a Prometheus sidecar) and ``greenlm slurm check`` (a run beside sacct).

``greenlm monitor serve`` exposes a machine's power and energy.

For servers greenlm cannot wrap (another language, a binary): it measures the whole machine
(``attribution="machine"``) and serves ``/metrics`` with ``greenlm_power_watts`` and
``greenlm_energy_joules_total{route="_all"}``, rolling the energy up into the run store as one
serving run until it is stopped (Ctrl-C or SIGTERM). Per-request attribution needs the
in-process middleware or wrapper (``greenlm.monitor``).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from typing import Any


def register(subparsers: Any) -> None:
    """Add ``greenlm monitor`` to the top-level parser."""
    from greenlm import argtypes as t

    p = subparsers.add_parser("monitor", help="serve live energy metrics (Prometheus sidecar)")
    sub = p.add_subparsers(dest="monitor_cmd", metavar="ACTION", required=True)
    s = sub.add_parser("serve", help="expose this machine's power and energy on /metrics")
    s.add_argument("--port", type=t.PORT, default=9464, help="port of /metrics (default 9464)")
    s.add_argument("--host", type=t.HOST, default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    # the old spelling, kept working, not shown: one name for one thing across commands
    s.add_argument("--addr", dest="host", type=t.HOST, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    s.add_argument("--model", type=t.NAME, help="value of the model label (default: '_', no model named)")
    s.add_argument("--project", type=t.PROJECT, help="project of the serving run")
    s.add_argument("--location", type=t.LOCATION, help="grid location (DEU, US-CA, aws:us-east-1, ...)")
    s.add_argument("--interval", dest="interval_s", type=t.INTERVAL_S, help="sampling interval, s (default 1)")
    s.add_argument(
        "--window",
        dest="window_s",
        type=t.SECONDS,
        default=300.0,
        help="roll-up window saved with the run, s (default 300)",
    )
    s.add_argument(
        "--duration",
        dest="duration_s",
        type=t.LONG_SECONDS,
        default=None,
        help="stop after this many seconds (default: until Ctrl-C / SIGTERM)",
    )
    s.set_defaults(func=cmd_monitor_serve)

    p = subparsers.add_parser("slurm", help="compare stored runs with Slurm's accounting")
    sub = p.add_subparsers(dest="slurm_cmd", metavar="ACTION", required=True)
    s = sub.add_parser(
        "check",
        help="a run of a Slurm job beside sacct: elapsed time, allocation, ConsumedEnergy",
        description="Read sacct for the job step a stored run ran in (accounting storage, else the job "
        "completion log) and print Slurm's elapsed time, allocation and ConsumedEnergy beside greenlm's figures.",
    )
    s.add_argument("run_id", type=t.RUN_ID, metavar="RUN_ID", help="run id or a unique prefix of it")
    s.add_argument("--store", type=t.STORE_URL, help="store URL (default: $GREENLM_STORE or runs.db in $GREENLM_HOME)")
    s.add_argument("--json", action="store_true", help="print the comparison as one JSON object")
    s.set_defaults(func=cmd_slurm_check)


def cmd_monitor_serve(args: argparse.Namespace) -> int:
    """Run the sidecar until interrupted; print the serving run's id and energy."""
    from greenlm.integrations.monitor import Monitor

    mon = Monitor(
        model=args.model or "",
        project=args.project,
        location=args.location,
        interval_s=args.interval_s,
        window_s=args.window_s,
        attribution="machine",
        idle_route="_all",
    )
    stop = threading.Event()
    prev = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        mon.serve_metrics(args.port, args.host)
        host = f"[{args.host}]" if ":" in args.host else args.host
        print(f"greenlm: serving metrics on http://{host}:{args.port}/metrics", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait(args.duration_s)
    finally:
        signal.signal(signal.SIGTERM, prev)
        result = mon.close()
    print(f"greenlm: run {result.run_id}: {result.energy_j:.1f} J, {result.co2e_g:.3f} gCO2e")
    return 0


def cmd_slurm_check(args: argparse.Namespace) -> int:
    """Print a stored run beside Slurm's record of its job step."""
    import json

    from greenlm.errors import GreenlmError
    from greenlm.humanize import duration
    from greenlm.humanize import energy as fmt_energy
    from greenlm.integrations import slurm
    from greenlm.store import open_store

    run = open_store(args.store, read_only=True).get_run(args.run_id).to_dict()
    facts = (run.get("metadata") or {}).get("slurm") or {}
    if not facts.get("job_id"):
        raise GreenlmError(
            f"run {run['run_id']} did not run in a Slurm job (no metadata.slurm.job_id); "
            "greenlm slurm check compares runs tracked inside srun or sbatch"
        )
    step = f"{facts['job_id']}.{facts.get('step_id', 'batch')}"
    try:
        records, source = slurm.sacct(step)
    except (RuntimeError, OSError) as e:
        raise GreenlmError(f"sacct could not report job step {step}: {e}") from e
    out = slurm.compare(run, records, source)
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    rec = out.get("slurm_record") or {}
    print(f"run {run['run_id']}  Slurm job step {step}  ({source})")
    if not rec:
        print("  sacct has no record of this job (yet): the completion log has a job once it has ended")
        return 0
    print(f"  state           {rec.get('state', '-')}  exit {rec.get('exit_code', '-')}")
    print(f"  elapsed         Slurm {duration(rec.get('elapsed_s'))}, greenlm {duration(run.get('duration_s'))}")
    nodes, cpus = rec.get("nodes", "-"), rec.get("alloc_cpus", "-")
    print(f"  allocation      {nodes} node(s) {rec.get('nodelist', '')}, {cpus} CPUs")
    if rec.get("consumed_energy_j"):
        print(
            f"  energy          Slurm ConsumedEnergy {fmt_energy(rec['consumed_energy_j'])}, "
            f"greenlm {fmt_energy(run.get('energy_j') or 0)} (ratio {out.get('energy_ratio', 0):.2f})"
        )
    else:
        print("  energy          Slurm recorded no ConsumedEnergy (no acct_gather_energy plugin)")
    return 0
