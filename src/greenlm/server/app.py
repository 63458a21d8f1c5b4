"""The FastAPI application: dashboard pages, the ingest and read API, auth and limits.

``create_app(ServerSettings(...))`` builds one app for both ``greenlm dashboard`` (loopback,
reads open) and ``greenlm server serve`` (a team server: reads need a token unless it binds
loopback; ``read_auth=True`` asks for one on loopback too). Ingest always needs a bearer
token with the ``ingest`` scope, and a run can be changed only by its owner's tokens.

Every request passes, in order: the Host and same-origin guard (:class:`auth.RequestGuard`:
400 for a Host that is not this server's, 403 for a cross-site state change), the security
headers, and the body limit (413 before parsing); then pydantic validation (422). Every error
message the server returns is bounded (:func:`public_message`: at most
:data:`MAX_MESSAGE_CHARS` characters, credentials in URLs masked), so no input comes back
expanded or whole.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from greenlm.errors import ConfigError, RunNotFoundError, RunOwnedError, StoreError
from greenlm.store import RunStore, open_store, redact_text

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
TEMPLATES_DIR = Path(__file__).parent / "templates"
#: Default cap on a request body (a long run's final result with its timeline fits easily).
MAX_BODY_BYTES = 32 * 1024 * 1024
#: The longest error message (or validation message) the server sends back.
MAX_MESSAGE_CHARS = 500
#: How many validation errors a 422 lists (the rest are counted).
MAX_ERRORS_LISTED = 20
#: Environment variables read by ``greenlm dashboard`` / ``greenlm server serve``.
ALLOWED_HOSTS_ENV = "GREENLM_ALLOWED_HOSTS"
READ_AUTH_ENV = "GREENLM_READ_AUTH"
#: The ``reason`` of a 403 for a run that belongs to another owner.
NOT_OWNER = "not_owner"


def public_message(text: Any, limit: int = MAX_MESSAGE_CHARS) -> str:
    """An error message as the server sends it: credentials masked, at most ``limit`` characters."""
    s = redact_text(str(text))
    if len(s) > limit:
        s = s[: limit - 40].rstrip() + f"... ({len(s) - limit + 40} more characters not shown)"
    return s


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
    #: The Host names this server answers to (``auth.host_allowed``): loopback names by
    #: default, so a DNS-rebinding page cannot read a loopback dashboard; ``*`` for any.
    allowed_hosts: tuple[str, ...] = ("loopback",)
    #: Open the store for reading only (``greenlm dashboard``): nothing is created, migrated
    #: or written; ingest answers 503.
    read_only: bool = False
    max_body_bytes: int = MAX_BODY_BYTES
    optimize_paths: tuple[str, ...] = ()
    title: str = "greenlm"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from greenlm.server.auth import check_allowed_hosts

        object.__setattr__(self, "allowed_hosts", check_allowed_hosts(self.allowed_hosts))
        if not self.allowed_hosts:
            raise ConfigError("allowed_hosts is empty: give host names, 'loopback' or '*'")

    @classmethod
    def for_host(
        cls, host: str, *, read_auth: bool = False, allowed_hosts: tuple[str, ...] = (), **kw: Any
    ) -> ServerSettings:
        """Settings for binding ``host``.

        Reads need a token unless ``host`` is loopback (or ``read_auth``). Hosts: loopback
        names plus ``allowed_hosts``; a server whose reads need a token answers to any Host
        unless ``allowed_hosts`` are given (a rebinding page has no token to read with).
        """
        need_auth = read_auth or not is_loopback(host)
        if allowed_hosts:
            hosts: tuple[str, ...] = ("loopback", *allowed_hosts)
        elif need_auth and not is_loopback(host):
            hosts = ("*",)
        else:
            hosts = ("loopback",)
        return cls(read_auth=need_auth, allowed_hosts=hosts, **kw)


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
    from greenlm.server.auth import RequestGuard
    from greenlm.server.tokens import TokenStore

    settings = settings or ServerSettings()
    st = store or open_store(settings.store_url, read_only=settings.read_only)
    app = FastAPI(
        title="greenlm team server",
        version=str(__version__),
        description=(
            "Collects runs measured by greenlm trackers on many machines and serves "
            "them back. Ingest needs a bearer token with the `ingest` scope "
            "(`greenlm server token create NAME --scope ingest`), and a run can be changed "
            "only by tokens of the owner that created it (or an `admin` token); reads need a "
            "token with the `read` scope when the server is not bound to loopback (or runs "
            "with `--read-auth`). Units are in the field names (`energy_j`, `co2e_g`, `duration_s`)."
        ),
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.store = st
    app.state.tokens = TokenStore(st)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")

    @app.get("/api/docs", include_in_schema=False)
    def api_docs() -> HTMLResponse:
        """The API's documentation (Swagger UI, vendored: no CDN, within the page's own CSP)."""
        return HTMLResponse((TEMPLATES_DIR / "api_docs.html").read_text(encoding="utf-8"))

    def _error(request: Request, status: int, detail: Any) -> Any:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": detail}, status_code=status)
        return pages.error_page(request, status, str(detail))

    @app.exception_handler(RunNotFoundError)
    async def _not_found(request: Request, exc: RunNotFoundError) -> Any:
        return _error(request, 404, public_message(exc))

    @app.exception_handler(RunOwnedError)
    async def _not_yours(request: Request, exc: RunOwnedError) -> Any:
        # "reason" tells a tracker's outbox that this event can never be stored with this token
        # (it is moved aside), unlike a token without the ingest scope (it waits for a new token)
        return JSONResponse({"detail": public_message(exc), "reason": NOT_OWNER}, status_code=403)

    @app.exception_handler(ConfigError)
    async def _bad_input(request: Request, exc: ConfigError) -> Any:
        return _error(request, 422, public_message(exc))

    @app.exception_handler(StoreError)
    async def _store_down(request: Request, exc: StoreError) -> Any:
        log.error("store error on %s: %s", request.url.path, redact_text(str(exc)))
        return JSONResponse({"detail": public_message(f"run store unavailable: {exc}")}, status_code=503)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Any:
        detail = public_message(exc.detail) if isinstance(exc.detail, str) else exc.detail
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)
        return pages.error_page(request, exc.status_code, str(detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Any:
        every = exc.errors()
        errors = [
            {
                "loc": [public_message(x, 100) if isinstance(x, str) else x for x in e.get("loc", ())][:10],
                "msg": public_message(e.get("msg", ""), 300),
                "type": str(e.get("type", ""))[:60],
            }
            for e in every[:MAX_ERRORS_LISTED]
        ]
        if len(every) > MAX_ERRORS_LISTED:
            errors.append(
                {"loc": [], "msg": f"... and {len(every) - MAX_ERRORS_LISTED} more errors", "type": "truncated"}
            )
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": errors}, status_code=422)
        return pages.error_page(
            request, 422, "; ".join(f"{'.'.join(str(x) for x in e['loc'][1:])}: {e['msg']}" for e in errors)
        )

    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestGuard, allowed_hosts=settings.allowed_hosts)  # outermost: runs first
    return app
