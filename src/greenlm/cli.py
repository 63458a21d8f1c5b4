"""The ``greenlm`` command: thin; parses, builds the API's config objects, calls in.

Sub-commands living in other packages (estimate, optimize, report, dashboard, server) are
registered by their own ``cli`` module's ``register(subparsers)``, imported here lazily so
that a missing optional dependency only affects its own command.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from greenlm.argtypes import STORE_HELP
from greenlm.errors import GreenlmError

log = logging.getLogger("greenlm")

#: Modules that add sub-commands: ``register(subparsers)`` each.
PLUGINS = (
    "greenlm.estimate.cli",
    "greenlm.optimize.cli",
    "greenlm.report.cli",
    "greenlm.server.cli",
    "greenlm.integrations.cli",
    "greenlm.serving.cli",
)


def _tracker_args(p: argparse.ArgumentParser) -> None:
    from greenlm import argtypes as t

    t.add_tracker_options(p)


def _meta(items: list[str]) -> dict[str, Any]:
    from greenlm.argtypes import meta_items

    return meta_items(items)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (core commands + registered plugins)."""
    from greenlm import __version__
    from greenlm import argtypes as t

    parser = t.Parser(
        prog="greenlm",
        description="Measure, predict and cut the energy and carbon of language models.",
    )
    parser.add_argument("--version", action="version", version=f"greenlm {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what greenlm does")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "track",
        help="run a command and measure its energy and carbon",
        description="Run COMMAND, measure its process tree, store the run, and exit with COMMAND's exit code.",
    )
    _tracker_args(p)
    p.add_argument(
        "--output",
        type=t.OutputFile(example="emissions.csv"),
        metavar="PATH",
        help="append a row to this CSV (CodeCarbon emissions.csv layout)",
    )
    p.add_argument(
        "--json", action="store_true", help="print the result as one JSON object on stdout (shared with COMMAND's)"
    )
    p.add_argument(
        "--json-file",
        type=t.OutputFile(example="run.json"),
        metavar="PATH",
        help="write the result as one JSON object to PATH",
    )
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="COMMAND", help="-- command and its arguments")
    p.set_defaults(func=cmd_track)

    p = sub.add_parser("runs", help="list, show and export stored runs")
    rs = p.add_subparsers(dest="runs_command", metavar="ACTION", required=True)
    q = rs.add_parser("list", help="stored runs, newest first")
    q.add_argument("--project", type=t.PROJECT, help="only runs of this project")
    q.add_argument(
        "--status", choices=["running", "completed", "failed", "interrupted"], help="only runs in this state"
    )
    q.add_argument("--limit", type=t.Whole(1, 10**9, what="of runs"), help="newest N runs only (1 or more)")
    q.add_argument("--store", type=t.STORE_URL, help=STORE_HELP)
    q.add_argument("--json", action="store_true", help="print the runs as JSON (every field, full precision)")
    q.set_defaults(func=cmd_runs_list)
    q = rs.add_parser("show", help="one run in full")
    q.add_argument("run_id", type=t.RUN_ID, metavar="RUN_ID", help="run id or a unique prefix of it")
    q.add_argument("--store", type=t.STORE_URL, help=STORE_HELP)
    q.add_argument("--json", action="store_true", help="print the run as one JSON object")
    q.add_argument("--timeline", action="store_true", help="include stored samples in --json")
    q.set_defaults(func=cmd_runs_show)
    q = rs.add_parser("export", help="all runs as CSV (CodeCarbon layout) or JSON")
    q.add_argument("--format", choices=["csv", "json"], default="csv", help="output format: csv or json (default csv)")
    q.add_argument("--project", type=t.PROJECT, help="only runs of this project")
    q.add_argument("--store", type=t.STORE_URL, help=STORE_HELP)
    q.add_argument(
        "-o",
        "--output",
        type=t.OutputFile(example="runs.csv"),
        metavar="PATH",
        help="file to write (default: stdout)",
    )
    q.set_defaults(func=cmd_runs_export)
    q = rs.add_parser("sync", help="write runs still waiting in the spool (after a store outage) to the store")
    q.add_argument("--store", type=t.STORE_URL, help=STORE_HELP)
    q.add_argument("--timeout", type=t.SECONDS, default=30.0, help="seconds to keep trying (default 30)")
    q.set_defaults(func=cmd_runs_sync)

    p = sub.add_parser("detect", help="which meters this machine has, and why not the others")
    p.add_argument("--json", action="store_true", help="print the verdicts and meters as JSON")
    p.add_argument(
        "--rapl-root",
        type=t.Text(t.PATH_CHARS, example="/sys/class/powercap"),
        metavar="PATH",
        help="the powercap sysfs tree to read RAPL counters from (default: $GREENLM_RAPL_ROOT or /sys/class/powercap)",
    )
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("locations", help="list known grid locations (or search them)")
    p.add_argument("query", nargs="?", type=t.Text(100, example="virginia"), help="filter by code or name")
    p.add_argument("--json", action="store_true", help="print the locations as JSON")
    p.set_defaults(func=cmd_locations)

    p = sub.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh or fish)",
        description="Print a completion script for SHELL, generated from greenlm's own parser. "
        'bash: eval "$(greenlm completion bash)" in ~/.bashrc; zsh: eval "$(greenlm completion zsh)" in '
        "~/.zshrc; fish: greenlm completion fish > ~/.config/fish/completions/greenlm.fish",
    )
    p.add_argument("shell", choices=["bash", "zsh", "fish"], help="the shell to complete in")
    p.set_defaults(func=cmd_completion)

    for mod in PLUGINS:
        try:
            importlib.import_module(mod).register(sub)
        except ModuleNotFoundError as e:
            if e.name and (e.name == mod or mod.startswith(e.name + ".")):
                continue  # that part of greenlm is not built (yet)
            log.debug("plugin %s unavailable: %s", mod, e)
        except Exception as e:  # a broken plugin must not break the core commands
            log.debug("plugin %s failed to register: %s", mod, e)
    return parser


# ---------------------------------------------------------------------------- track
def cmd_track(args: argparse.Namespace) -> int:
    """Run the command under a tracker; exit with its exit code.

    The window opens before the command starts and closes when it has been reaped, so the
    run's duration is the command's life; the command's CPU time is exact (``wait4``). The
    command's exit code always wins: a greenlm-side failure after it ran (a CSV that cannot
    be written, a store that is down) is a warning on stderr, never a new exit code.
    """
    from greenlm.redact import redact_text
    from greenlm.tracking.tracker import EnergyTracker

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise GreenlmError("greenlm track needs a command: greenlm track [options] -- python train.py")
    if not shutil.which(cmd[0]):  # before the window opens: nothing is measured or stored for a typo
        raise GreenlmError(
            f"COMMAND {cmd[0][:200]!r} cannot be run: it is neither a program on PATH nor an executable file"
        )
    for flag, path in (("--output", args.output), ("--json-file", args.json_file)):
        if path:
            check_output_path(flag, path)
    tracker = EnergyTracker(
        project=args.project,
        location=args.location,
        pue=args.pue,
        pue_setting=args.pue_setting,
        price_per_kwh=args.price_per_kwh,
        currency=args.currency,
        interval_s=args.interval_s,
        cpu_tdp_w=args.cpu_tdp_w,
        attribution=args.attribution,
        store=args.store,
        # recorded, stored and sent: credentials in URLs on the command line are masked
        metadata={"command": [redact_text(a) for a in cmd], **_meta(args.meta)},
        handle_signals=False,
    )
    got_signal: list[int] = []
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: Any) -> None:
        got_signal.append(signum)
        if child is not None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        tracker.start()  # this process's tree: the command and all it starts, from its first instant
        env = None
        if tracker.config.distributed is True or (tracker.config.distributed is None and _one_rank_of_several()):
            # this process is the task's rank: a tracker inside the command must not join the run again
            env = {**os.environ, "GREENLM_DISTRIBUTED": "false"}
        try:
            child = subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        except OSError as e:
            tracker.stop("failed", f"cannot start {cmd[0]!r}: {e}")
            raise GreenlmError(f"cannot start {cmd[0]!r}: {e.strerror or e}") from e
        rc = _wait_child(child)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if got_signal:
        status, err = "interrupted", f"signal {got_signal[0]} forwarded to the command"
    elif rc == 0:
        status, err = "completed", None
    else:
        status, err = "failed", f"command exited with code {rc}"
    _slurm_accounting(tracker)
    result = tracker.stop(status, err)
    d = result.to_dict()
    try:
        _report_track(args, tracker, result, d)
    except BrokenPipeError:  # `greenlm track -- cmd | head`: the command's code still wins
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the final flush
    except Exception as e:  # never let reporting change the command's exit code
        with contextlib.suppress(Exception):
            print(f"greenlm: warning: {e}", file=sys.stderr)
    return rc


def _report_track(args: argparse.Namespace, tracker: Any, result: Any, d: dict[str, Any]) -> None:
    from greenlm import humanize
    from greenlm.report.codecarbon_csv import append_csv
    from greenlm.report.summary import run_summary

    if args.output:
        try:
            append_csv(args.output, [d])
        except (GreenlmError, OSError) as e:
            print(f"greenlm: warning: could not append the run to {args.output}: {e}", file=sys.stderr)
    if args.json_file:
        from greenlm._files import write_text_atomic

        try:
            write_text_atomic(args.json_file, json.dumps(d, indent=2, default=str) + "\n")
        except OSError as e:
            print(f"greenlm: warning: could not write {args.json_file}: {e.strerror or e}", file=sys.stderr)
    dist = tracker.distributed
    if args.json:
        print(json.dumps(d, indent=2, default=str))
    elif dist:  # one task of a job: its share; the job's run is assembled from every task's
        print(
            f"greenlm: task {dist['rank']} of {dist['world_size']} ({dist['node']}): "
            f"{humanize.energy(result.energy_j)} measured here; the job's run is {result.run_id[:12]} "
            f"(greenlm runs show {result.run_id[:12]})",
            file=sys.stderr,
        )
    else:
        print(run_summary(d), file=sys.stderr)
    from greenlm.report.summary import delivery_lines

    for line in delivery_lines(tracker.delivery, result.run_id):
        print(line, file=sys.stderr)


def _one_rank_of_several() -> bool:
    from greenlm.tracking.ranks import detect

    try:
        return detect().distributed
    except Exception:  # a launcher environment greenlm cannot read: not distributed
        return False


def _slurm_accounting(tracker: Any) -> None:
    """Inside a Slurm job: what Slurm says of the step (allocation, its own ConsumedEnergy as
    an independent cross-check), read once per step (task 0) before the run closes.
    """
    facts = tracker.metadata.get("slurm")
    dist = tracker.distributed
    if not isinstance(facts, dict) or (dist and dist.get("rank") != 0):
        return
    try:
        from greenlm.integrations import slurm

        acc = slurm.read_accounting(facts)
        check = slurm.cross_check(acc)
    except Exception as e:  # never fail the command over a cross-check
        log.debug("reading Slurm's accounting failed: %s", e, exc_info=True)
        return
    tracker.set_metadata(slurm={**facts, "accounting": acc})
    if check is not None:
        tracker.set_metadata(cross_checks=[*(tracker.metadata.get("cross_checks") or []), check])


def check_output_path(flag: str, path: str) -> None:
    """A file greenlm will write must be writable before any work starts (exit 2 otherwise)."""
    from greenlm.argtypes import check_output_file

    try:
        check_output_file(path)
    except ValueError as e:
        raise GreenlmError(f"{flag} {e}") from None


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if greenlm dies (even by SIGKILL) — Linux prctl."""
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() == 1:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)


def _wait_child(child: subprocess.Popen[bytes]) -> int:
    """Wait with wait4() (the child's CPU time lands in this process's children_* times)."""
    while True:
        try:
            _pid, status, _ru = os.wait4(child.pid, 0)
            break
        except InterruptedError:
            continue
        except ChildProcessError:
            return child.wait()
    child.returncode = os.waitstatus_to_exitcode(status)
    rc = child.returncode
    return 128 + (-rc) if rc < 0 else rc


# ---------------------------------------------------------------------------- runs
def open_store_synced(url: str | None) -> Any:
    """The store at ``url``, after writing what earlier runs left spooled for it.

    "The next greenlm command that opens the store" writes the runs a store outage left
    waiting; a store that is still down or read-only is read as it is, with a note. Only a
    store that has runs waiting is written; reading itself never writes (opened read-only).
    """
    from greenlm.store import open_store, replay

    try:
        rep = replay(url)
    except Exception as e:  # reading must work even when the spool cannot be written out
        log.debug("spool replay failed: %s", e, exc_info=True)
    else:
        if rep.delivered:
            print(f"greenlm: wrote {rep.delivered} waiting event(s) of earlier runs to the store", file=sys.stderr)
        if rep.pending:
            print(
                f"greenlm: {rep.pending} event(s) of earlier runs still wait for the store ({rep.error})",
                file=sys.stderr,
            )
    return open_store(url, read_only=True)


def cmd_runs_sync(args: argparse.Namespace) -> int:
    """Write the runs waiting in the spool; exit 1 while some still wait."""
    from greenlm.config import default_store_url
    from greenlm.redact import redact_url
    from greenlm.store import replay

    url = args.store or default_store_url()
    rep = replay(url, timeout_s=args.timeout)
    line = f"{redact_url(url)}: wrote {rep.delivered} event(s) ({rep.runs_done} run(s) complete)"
    if rep.rejected:
        line += f", {rep.rejected} refused (kept aside in the spool's rejected/ folder)"
    if rep.pending:
        line += f", {rep.pending} still waiting ({rep.error or 'not written'})"
    print(line)
    return 1 if rep.pending else 0


def _note_damaged(runs: Sequence[Any]) -> None:
    bad = [r for r in runs if r.damaged]
    for r in bad:
        print(f"greenlm: run {r.run_id} is damaged: {r.damaged}", file=sys.stderr)


def cmd_runs_list(args: argparse.Namespace) -> int:
    """Print the stored runs (damaged ones with their id and reason)."""
    from greenlm.report.summary import runs_table

    runs = open_store_synced(args.store).list_runs(project=args.project, status=args.status, limit=args.limit)
    if args.json:
        print(json.dumps([r.to_dict() for r in runs], indent=2, default=str))
        _note_damaged(runs)
    else:
        # the terminal's width; a pipe or a file gets every column (COLUMNS still applies)
        fit = sys.stdout.isatty() or "COLUMNS" in os.environ
        width = shutil.get_terminal_size((10_000, 24)).columns if fit else None
        sys.stdout.write(runs_table(runs, width))
    return 0


def cmd_runs_show(args: argparse.Namespace) -> int:
    """Print one run; exit 1 (with the reason) when its stored record is damaged."""
    from greenlm.report.summary import run_summary

    st = open_store_synced(args.store)
    run = st.get_run(args.run_id)
    if args.json:
        d = run.to_dict()
        if args.timeline:
            d["samples"] = [dataclasses.asdict(s) for s in st.get_samples(run.run_id)]
        print(json.dumps(d, indent=2, default=str))
    else:
        sys.stdout.write(run_summary(run))
    if run.damaged:
        print(f"error: run {run.run_id} is damaged: {run.damaged}", file=sys.stderr)
        return 1
    return 0


def cmd_runs_export(args: argparse.Namespace) -> int:
    """Write every run as CSV or JSON (damaged runs are included, marked as damaged)."""
    from greenlm.report.codecarbon_csv import to_csv

    runs = open_store_synced(args.store).list_runs(project=args.project)
    text = (
        to_csv(runs) if args.format == "csv" else json.dumps([r.to_dict() for r in runs], indent=2, default=str) + "\n"
    )
    _note_damaged(runs)
    if args.output:
        from greenlm._files import write_text_atomic

        try:
            out = write_text_atomic(args.output, text)
        except OSError as e:
            raise GreenlmError(f"--output {args.output}: cannot write it ({e.strerror or e})") from None
        print(f"wrote {len(runs)} runs to {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


# ---------------------------------------------------------------------------- detect
def cmd_detect(args: argparse.Namespace) -> int:
    from greenlm.config import TrackerConfig
    from greenlm.meters.detect import detect

    cfg = TrackerConfig.resolve(rapl_root=args.rapl_root)
    det = detect(rapl_root=cfg.rapl_root, cpu_tdp_w=cfg.cpu_tdp_w, attribution=cfg.attribution, gpus=cfg.gpus)
    if args.json:
        print(
            json.dumps(
                {
                    "report": [r.__dict__ for r in det.report],
                    "meters": [m.describe() for m in det.meters],
                    "warnings": det.warnings,
                },
                indent=2,
                default=str,
            )
        )
        return 0
    for r in det.report:
        mark = "use " if r.used else ("ok  " if r.available else "no  ")
        print(f"{mark} {r.backend:<10} {r.detail}")
    print("\nmeters used:")
    for m in det.meters:
        print(f"  {m.name:<16} {m.kind:<4} {m.provenance}")
    for w in det.warnings:
        print(f"warning: {w}")
    return 0


def cmd_locations(args: argparse.Namespace) -> int:
    from greenlm.carbon.intensity import known_locations

    locs = known_locations()
    if args.query:
        q = args.query.lower()
        locs = [g for g in locs if q in g.code.lower() or q in g.name.lower()]
        if not locs:
            print(f"no known location matches {args.query!r}; `greenlm locations` lists them all", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps([g.to_dict() for g in locs], indent=2))
    else:
        for g in locs:
            print(f"{g.code:<22} {g.intensity_g_per_kwh:>8.1f} g/kWh  {g.year or '':<5} {g.region_type:<22} {g.name}")
    return 0


def cmd_completion(args: argparse.Namespace) -> int:
    """Print the completion script for ``args.shell``, generated from this parser."""
    from greenlm import __version__
    from greenlm.completion import script

    sys.stdout.write(script(args.shell, build_parser(), __version__))
    return 0


# ---------------------------------------------------------------------------- main
def _check_home() -> None:
    """``GREENLM_HOME`` must be a folder (or not exist yet): a clear error, not a traceback later."""
    from greenlm.config import greenlm_home

    home = greenlm_home()
    if home.exists() and not home.is_dir():
        raise GreenlmError(
            f"GREENLM_HOME={home} is a file; it must be a folder where greenlm keeps its run store and "
            "caches (or unset it to use ~/.greenlm)"
        )


#: Longest error message printed: a message quoting a 5,000-character value is cut.
ERROR_CHARS = 2000


def _bounded(text: str) -> str:
    if len(text) <= ERROR_CHARS:
        return text
    return f"{text[: ERROR_CHARS - 40]}... ({len(text) - ERROR_CHARS + 40} characters cut)"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for a user error, 1 for a failure, 130 for Ctrl-C).

    No traceback reaches the user: a ``GreenlmError`` is a one-line error (exit 2), an error of
    the environment (a full disk, a permission) names the file and the reason (exit 1), and
    anything else is reported as a bug in one line (``-v`` prints its traceback).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # a usage error (2, already printed) or --help/--version (0)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        _check_home()
        return int(args.func(args) or 0)
    except GreenlmError as e:
        print(f"error: {_bounded(str(e))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `greenlm runs list | head`
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the final flush
        return 0
    except KeyboardInterrupt:
        print("greenlm: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {_bounded(where + (e.strerror or str(e)))}", file=sys.stderr)
        return 1
    except Exception as e:
        if args.verbose:
            import traceback

            traceback.print_exc()
        print(
            f"error: greenlm failed unexpectedly ({type(e).__name__}: {_bounded(str(e))}). This is a bug: "
            f"please report it with the output of `greenlm -v {args.command} ...`",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
