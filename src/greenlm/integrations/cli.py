"""``greenlm monitor serve``: a Prometheus sidecar that exposes a machine's power and energy.

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
    p = subparsers.add_parser("monitor", help="serve live energy metrics (Prometheus sidecar)")
    sub = p.add_subparsers(dest="monitor_cmd", required=True)
    s = sub.add_parser("serve", help="expose this machine's power and energy on /metrics")
    s.add_argument("--port", type=int, default=9464, help="port of /metrics (default 9464)")
    s.add_argument("--addr", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--model", default="", help="value of the model label")
    s.add_argument("--project", help="project of the serving run")
    s.add_argument("--location", help="grid location (DEU, US-CA, aws:us-east-1, ...)")
    s.add_argument("--interval", dest="interval_s", type=float, help="sampling interval, s")
    s.add_argument(
        "--window",
        dest="window_s",
        type=float,
        default=300.0,
        help="roll-up window saved with the run, s (default 300)",
    )
    s.add_argument(
        "--duration",
        dest="duration_s",
        type=float,
        default=None,
        help="stop after this many seconds (default: until Ctrl-C / SIGTERM)",
    )
    s.set_defaults(func=cmd_monitor_serve)


def cmd_monitor_serve(args: argparse.Namespace) -> int:
    """Run the sidecar until interrupted; print the serving run's id and energy."""
    from greenlm.integrations.monitor import Monitor

    mon = Monitor(
        model=args.model,
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
        mon.serve_metrics(args.port, args.addr)
        print(f"greenlm: serving metrics on http://{args.addr}:{args.port}/metrics", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait(args.duration_s)
    finally:
        signal.signal(signal.SIGTERM, prev)
        result = mon.close()
    print(f"greenlm: run {result.run_id}: {result.energy_j:.1f} J, {result.co2e_g:.3f} gCO2e")
    return 0
