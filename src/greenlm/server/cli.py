"""``greenlm dashboard`` and ``greenlm server ...`` (serve, token, push, openapi).

Registered by ``greenlm.cli``; cheap to import (fastapi and uvicorn load only when a command
runs, and a missing ``server`` extra is reported with the ``pip install`` to run).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from greenlm import argtypes as at
from greenlm import limits
from greenlm.errors import ConfigError, MissingExtraError
from greenlm.report.loaders import OPTIMIZE_FILES

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787


def register(sub: Any) -> None:
    """Add ``greenlm dashboard`` and ``greenlm server`` to the top-level sub-parsers."""
    p = sub.add_parser(
        "dashboard",
        help="browse runs, estimates and optimizations in a browser",
        description="Serve the dashboard over the run store (loopback by default).",
    )
    _serve_args(p)
    p.add_argument("--open", action="store_true", help="open the dashboard in a web browser")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("server", help="team server: serve, tokens, push buffered runs")
    ss = p.add_subparsers(dest="server_command", metavar="ACTION", required=True)
    q = ss.add_parser(
        "serve",
        help="serve the ingest API and the dashboard to a team",
        description="Trackers report with EnergyTracker(server=URL, token=...) or "
        "GREENLM_SERVER / GREENLM_TOKEN. Reads need a token unless --host is loopback.",
    )
    _serve_args(q)
    q.add_argument(
        "--max-body-mb",
        type=at.Number(0.0, 100_000.0, lo_open=True, unit="MB", example="32"),
        default=32.0,
        help="largest request body (default 32 MB)",
    )
    q.set_defaults(func=cmd_serve, open=False)

    q = ss.add_parser("token", help="create, list or revoke bearer tokens")
    ts = q.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    t = ts.add_parser(
        "create",
        help="make a token (printed once; only its hash is stored)",
        description="Scopes: ingest (send runs; a run can then be changed only by tokens of its owner), "
        "read (read runs and the dashboard where reads need a token), admin (both, and change any run). "
        "Default: ingest and read. A tracker needs only ingest, a dashboard viewer only read.",
    )
    t.add_argument("name", type=at.Text(128, example="alice"), help="who or what uses it (a person, a cluster)")
    t.add_argument(
        "--scope",
        action="append",
        metavar="SCOPE",
        help="ingest, read or admin; repeatable or comma-separated (default: ingest,read)",
    )
    t.add_argument(
        "--owner",
        type=at.Text(128, example="alice"),
        help="whose runs it writes (default: NAME); tokens with one owner may change each other's runs",
    )
    t.add_argument("--store", type=at.STORE_URL, help="store URL of the server")
    t.add_argument("--json", action="store_true", help="print the token as one JSON object")
    t.set_defaults(func=cmd_token_create)
    t = ts.add_parser("revoke", help="revoke a token by id, or every token with a name")
    t.add_argument("id_or_name", type=at.Text(128, example="alice"), metavar="ID|NAME", help="a token's id, or a name")
    t.add_argument("--store", type=at.STORE_URL, help="store URL of the server")
    t.set_defaults(func=cmd_token_revoke)
    t = ts.add_parser("list", help="tokens (ids, names, dates; never the tokens)")
    t.add_argument("--store", type=at.STORE_URL, help="store URL of the server")
    t.add_argument("--json", action="store_true", help="print one JSON array")
    t.set_defaults(func=cmd_token_list)

    q = ss.add_parser("push", help="deliver runs buffered in the outbox ($GREENLM_HOME/outbox)")
    q.add_argument(
        "--server",
        type=at.Url(example="https://greenlm.example.com"),
        help="server URL (default: $GREENLM_SERVER, else every server with runs waiting)",
    )
    q.add_argument("--token", type=at.Text(4096, example="glm_..."), help="bearer token (default: $GREENLM_TOKEN)")
    q.add_argument("--timeout", type=at.SECONDS, default=10.0, help="seconds per request (default 10)")
    q.set_defaults(func=cmd_push)

    q = ss.add_parser("openapi", help="print the API's OpenAPI spec (docs/openapi.json)")
    q.add_argument(
        "-o",
        "--output",
        type=at.OutputFile(example="openapi.json"),
        metavar="FILE",
        help="write to this file instead of stdout",
    )
    q.set_defaults(func=cmd_openapi)


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--host",
        type=at.HOST,
        default=DEFAULT_HOST,
        help=f"address to bind (default {DEFAULT_HOST}: this machine only)",
    )
    p.add_argument("--port", type=at.PORT, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument(
        "--allowed-host",
        type=at.Text(limits.HOST_CHARS, example="greenlm.example.com"),
        action="append",
        default=[],
        metavar="NAME",
        help="a Host name this server answers to besides loopback names (repeatable; *.example.com for "
        "subdomains, * for any; default: $GREENLM_ALLOWED_HOSTS, comma-separated). Requests naming another "
        "host are refused, so a DNS-rebinding page cannot read the dashboard",
    )
    p.add_argument(
        "--read-auth",
        action="store_true",
        default=None,
        help="reads need a token with the read scope even on loopback (behind a reverse proxy); "
        "always on when --host is not loopback (default: $GREENLM_READ_AUTH)",
    )
    p.add_argument(
        "--store",
        type=at.STORE_URL,
        help="store URL (default: $GREENLM_STORE or sqlite in $GREENLM_HOME); "
        "postgresql+psycopg://user:pass@host/db for teams",
    )
    p.add_argument(
        "--optimize",
        type=at.InputFile(example="results/optimize.json", dir_holds=OPTIMIZE_FILES, dir_what="optimize results"),
        action="append",
        default=[],
        metavar="DIR",
        help="optimize results to show (a --report DIR or its optimize.json); repeatable",
    )


def _need_web() -> None:
    for mod, pkg in (("fastapi", "fastapi"), ("uvicorn", "uvicorn"), ("jinja2", "jinja2")):
        try:
            __import__(mod)
        except ImportError as e:
            raise MissingExtraError("The dashboard and the team server", "server", pkg) from e


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the app with uvicorn until interrupted."""
    _need_web()
    import uvicorn

    from greenlm.server.app import ALLOWED_HOSTS_ENV, READ_AUTH_ENV, ServerSettings, create_app, is_loopback
    from greenlm.store import redact_url

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be 1-65535, got {args.port}")
    max_mb = getattr(args, "max_body_mb", 32.0)
    if not max_mb > 0:
        raise ConfigError("--max-body-mb must be positive")
    allowed = tuple(args.allowed_host or _env_list(ALLOWED_HOSTS_ENV))
    read_auth = args.read_auth if args.read_auth is not None else _env_flag(READ_AUTH_ENV)
    settings = ServerSettings.for_host(
        args.host,
        read_auth=read_auth,
        allowed_hosts=allowed,
        store_url=args.store,
        max_body_bytes=int(max_mb * 1024 * 1024),
        optimize_paths=tuple(args.optimize),
        read_only=args.command == "dashboard",  # the dashboard reads; `server serve` also ingests
    )
    app = create_app(settings)
    host_for_url = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host_for_url}:{args.port}/"
    print(f"greenlm dashboard on {url} (store {redact_url(app.state.store.url)})", file=sys.stderr)
    if settings.read_auth:
        n = sum(1 for t in app.state.tokens.list() if t["revoked_at"] is None and set(t["scopes"]) & {"read", "admin"})
        where = "not on loopback" if not is_loopback(args.host) else "--read-auth"
        print(
            f"{where}: reading needs a token with the read scope ({n} active; "
            "`greenlm server token create NAME --scope read`)",
            file=sys.stderr,
        )
    if settings.allowed_hosts == ("*",):
        print(
            "answering to any Host name (reads need a token); pin this server's names with --allowed-host NAME",
            file=sys.stderr,
        )
    else:
        print(f"answering to the host names: {', '.join(settings.allowed_hosts)}", file=sys.stderr)
    if getattr(args, "open", False):
        import threading
        import webbrowser

        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    logging.getLogger("greenlm").setLevel(logging.INFO)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", server_header=False)
    return 0


def _env_list(var: str) -> list[str]:
    import os

    return [x.strip() for x in (os.environ.get(var) or "").split(",") if x.strip()]


def _env_flag(var: str) -> bool:
    import os

    raw = (os.environ.get(var) or "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{var} must be 1/true/yes or 0/false/no, got {raw[:40]!r}")


def _tokens(store_url: str | None) -> Any:
    from greenlm.server.tokens import TokenStore
    from greenlm.store import open_store

    return TokenStore(open_store(store_url))


def cmd_token_create(args: argparse.Namespace) -> int:
    """Print a new token once."""
    from greenlm.server.tokens import parse_scopes

    scopes = parse_scopes(args.scope)
    tid, token = _tokens(args.store).create(args.name, scopes, args.owner)
    owner = (args.owner or args.name).strip()
    if args.json:
        print(json.dumps({"id": tid, "name": args.name, "owner": owner, "scopes": list(scopes), "token": token}))
    else:
        print(
            f"token {tid} for {args.name!r} (owner {owner!r}, scopes: {' '.join(scopes)}; shown once, only its hash "
            f"is stored):\n{token}"
        )
        if "ingest" in scopes or "admin" in scopes:
            print("use it with GREENLM_TOKEN=... or EnergyTracker(server=URL, token=...)", file=sys.stderr)
        if "read" in scopes or "admin" in scopes:
            print("sign in to the dashboard with it where reads need a token", file=sys.stderr)
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    """Revoke by id or name."""
    n = _tokens(args.store).revoke(args.id_or_name)
    print(f"revoked {n} token{'s' if n != 1 else ''}")
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    """List tokens (never the secrets)."""
    import datetime as dt

    rows = _tokens(args.store).list()
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("no tokens yet: `greenlm server token create NAME`")
        return 0

    def when(t: float | None) -> str:
        return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M") if t else "-"

    for r in rows:
        state = f"revoked {when(r['revoked_at'])}" if r["revoked_at"] else "active"
        owner = "" if r["owner"] == r["name"] else f" (owner {r['owner']})"
        print(
            f"{r['id']}  {r['name'] + owner:<24} {','.join(r['scopes']):<18} created {when(r['created_at'])}  "
            f"last used {when(r['last_used_at'])}  {state}"
        )
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    """Deliver the outbox; exit 1 if something is still waiting."""
    try:
        import httpx  # noqa: F401
    except ImportError as e:
        raise MissingExtraError("Sending runs to a server", "server", "httpx") from e
    from greenlm.config import TrackerConfig
    from greenlm.tracking.outbox import outbox_root, push

    cfg = TrackerConfig.resolve(server=args.server, token=args.token)
    server, token = cfg.server, cfg.token
    if token and not server:
        print(
            "note: --token is sent only to the server given with --server (or $GREENLM_SERVER); without one, "
            "each server's runs go with the token they were tracked with",
            file=sys.stderr,
        )
    if not args.timeout > 0:
        raise ConfigError("--timeout must be positive")
    reports = push(server, token, timeout_s=args.timeout)
    if not reports:
        print(f"nothing to push: the outbox {outbox_root()} is empty")
        return 0
    from greenlm.redact import redact_url

    waiting = 0
    for url, rep in reports.items():
        line = f"{redact_url(url)}: delivered {rep.delivered} events ({rep.runs_done} runs complete)"
        if rep.rejected:
            line += f", {rep.rejected} rejected (kept under {outbox_root()}/*/rejected)"
        if rep.pending:
            line += f", {rep.pending} still waiting ({rep.error or 'not delivered'})"
        waiting += rep.pending
        print(line)
    if waiting and not token:
        print("hint: give --token or set GREENLM_TOKEN", file=sys.stderr)
    return 1 if waiting else 0


def openapi_spec() -> dict[str, Any]:
    """The app's OpenAPI document (in-memory store; the spec does not depend on data)."""
    _need_web()
    from greenlm.server.app import create_app
    from greenlm.store import RunStore

    return dict(create_app(store=RunStore("sqlite://")).openapi())


def cmd_openapi(args: argparse.Namespace) -> int:
    """Print or write the OpenAPI spec."""
    text = json.dumps(openapi_spec(), indent=2, sort_keys=True) + "\n"
    if args.output:
        from greenlm._files import write_text_atomic

        try:
            write_text_atomic(args.output, text)
        except OSError as e:
            raise ConfigError(
                f"-o {args.output}: cannot write it ({e.strerror or e}); give a path in a folder that exists "
                "and is writable"
            ) from None
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0
