"""The FastAPI application: dashboard pages, the ingest and read API, auth and limits.

``create_app(ServerSettings(...))`` builds one app for both ``greenlm dashboard`` (loopback,
reads open) and ``greenlm server serve`` (a team server: reads need a token unless it binds
loopback). Ingest always needs a bearer token. Request bodies are capped in bytes before
they are parsed (413), then validated by pydantic (422).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from greenlm.errors import ConfigError, RunNotFoundError, StoreError
from greenlm.store import RunStore, open_store

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
TEMPLATES_DIR = Path(__file__).parent / "templates"
#: Default cap on a request body (a long run's final result with its timeline fits easily).
MAX_BODY_BYTES = 32 * 1024 * 1024


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine (127.0.0.0/8, ::1, localhost)."""
    h = host.strip().strip("[]").lower()
    if h in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerSettings:
    """How the app runs: its store, whether reads need a token, limits, extra data to show."""

    store_url: str | None = None
    read_auth: bool = False
    #: Open the store for reading only (``greenlm dashboard``): nothing is created, migrated
    #: or written; ingest answers 503.
    read_only: bool = False
    max_body_bytes: int = MAX_BODY_BYTES
    optimize_paths: tuple[str, ...] = ()
    title: str = "greenlm"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_host(cls, host: str, **kw: Any) -> ServerSettings:
        """Settings for binding ``host``: reads need a token unless it is loopback."""
        return cls(read_auth=not is_loopback(host), **kw)


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with 413, before parsing."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                n = int(declared)
            except ValueError:
                await _send_json(send, 400, {"detail": "invalid Content-Length header"})
                return
            if n > self.max_bytes:
                await _send_json(send, 413, {"detail": self._msg()})
                return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await _send_json(send, 413, {"detail": self._msg()})
                return
            chunks.append(body)
            more = bool(message.get("more_body", False))
        full = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": full, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _msg(self) -> str:
        return (
            f"request body larger than {self.max_bytes} bytes; send samples in batches "
            "(POST /api/v1/runs/{run_id}/samples)"
        )


async def _send_json(send: Send, status: int, obj: dict[str, Any]) -> None:
    import json

    body = json.dumps(obj).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class SecurityHeaders:
    """ASGI middleware: a strict Content-Security-Policy and friends on every response."""

    CSP = (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'"
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                headers += [
                    (b"content-security-policy", self.CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"x-frame-options", b"DENY"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, wrapped)


def create_app(settings: ServerSettings | None = None, store: RunStore | None = None) -> FastAPI:
    """The app over ``settings.store_url`` (or an open ``store``)."""
    from greenlm import __version__
    from greenlm.server import api, pages
    from greenlm.server.tokens import TokenStore

    settings = settings or ServerSettings()
    st = store or open_store(settings.store_url, read_only=settings.read_only)
    app = FastAPI(
        title="greenlm team server",
        version=str(__version__),
        description=(
            "Collects runs measured by greenlm trackers on many machines and serves "
            "them back. Ingest needs a bearer token (`greenlm server token create`); "
            "reads need one too when the server is not bound to loopback. Units are "
            "in the field names (`energy_j`, `co2e_g`, `duration_s`)."
        ),
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.store = st
    app.state.tokens = TokenStore(st)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")

    @app.exception_handler(RunNotFoundError)
    async def _not_found(request: Request, exc: RunNotFoundError) -> Any:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": str(exc)}, status_code=404)
        return pages.error_page(request, 404, str(exc))

    @app.exception_handler(ConfigError)
    async def _bad_input(request: Request, exc: ConfigError) -> Any:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": str(exc)}, status_code=422)
        return pages.error_page(request, 422, str(exc))

    @app.exception_handler(StoreError)
    async def _store_down(request: Request, exc: StoreError) -> Any:
        log.error("store error on %s: %s", request.url.path, exc)
        return JSONResponse({"detail": f"run store unavailable: {exc}"}, status_code=503)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Any:
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": errors}, status_code=422)
        return pages.error_page(
            request, 422, "; ".join(f"{'.'.join(str(x) for x in e['loc'][1:])}: {e['msg']}" for e in errors)
        )

    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app
