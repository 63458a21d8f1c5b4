"""Who may do what: bearer tokens for ingest, and for reads when not on loopback.

A client proves itself with ``Authorization: Bearer glm_...``. A browser on a team server
signs in once at ``/login``; the token is then kept in an HttpOnly, SameSite=Strict cookie
that is accepted for reads only (pages, GET API), never for ingest, so a cross-site form
cannot post runs with it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

COOKIE = "greenlm_token"

bearer = HTTPBearer(auto_error=False, description="A token from `greenlm server token create`.")


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def token_of(request: Request, creds: HTTPAuthorizationCredentials | None, *, cookie: bool) -> str | None:
    """The presented token: the bearer header, else (for reads) the sign-in cookie."""
    if creds is not None and creds.scheme.lower() == "bearer":
        return creds.credentials
    if cookie:
        return request.cookies.get(COOKIE)
    return None


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def require_writer(request: Request, creds: Credentials) -> str:
    """Ingest: a valid bearer token, always. Returns the token's id."""
    tok = token_of(request, creds, cookie=False)
    if tok is None:
        raise _unauthorized(
            "a bearer token is required to send runs: `greenlm server token create NAME` on the server makes one"
        )
    tid = request.app.state.tokens.verify(tok)
    if tid is None:
        raise _unauthorized("invalid or revoked token")
    return str(tid)


def reader_ok(request: Request, creds: HTTPAuthorizationCredentials | None = None) -> bool:
    """Whether this request may read (always on loopback; with a valid token otherwise)."""
    if not request.app.state.settings.read_auth:
        return True
    tok = token_of(request, creds, cookie=True)
    return tok is not None and request.app.state.tokens.verify(tok) is not None


def require_reader(request: Request, creds: Credentials) -> None:
    """API reads: a valid token when the server is not bound to loopback."""
    if not reader_ok(request, creds):
        raise _unauthorized("this server is not on loopback: reads need a bearer token")
