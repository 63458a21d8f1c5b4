"""Helpers for the server and report tests: real tracked runs, a live server, free ports."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from typing import Any

XSS = "<script>alert(1)</script>"


def burn_cpu(seconds: float) -> int:
    """Real work for the tracker to measure (hashing), for about ``seconds``."""
    end = time.monotonic() + seconds
    n = 0
    h = b"greenlm"
    while time.monotonic() < end:
        for _ in range(200):
            h = hashlib.sha256(h).digest()
        n += 1
    return n


def track_run(
    store_url: str, project: str, location: str = "FRA", seconds: float = 0.3, fail: bool = False, **kw: Any
) -> Any:
    """One real tracked run (two phases, steps) written to ``store_url``; returns the result."""
    from greenlm.tracking import EnergyTracker

    t = EnergyTracker(
        project=project,
        location=location,
        interval_s=0.05,
        flush_interval_s=0.1,
        store=store_url,
        metadata={"model": f"{project}-model", "tags": ["e2e"]},
        handle_signals=False,
        **kw,
    )
    try:
        with t:
            with t.phase("train"):
                for _ in range(3):
                    burn_cpu(seconds / 4)
                    t.step()
            with t.phase("eval"):
                burn_cpu(seconds / 4)
            if fail:
                raise RuntimeError("boom")
    except RuntimeError:
        pass
    return t.result


def seed_store(store_url: str) -> list[Any]:
    """Four real runs: two projects, two locations, one failed, one with a hostile name."""
    return [
        track_run(store_url, "alpha", "FRA"),
        track_run(store_url, "alpha", "DEU", fail=True),
        track_run(store_url, "beta", "USA"),
        track_run(store_url, XSS, "FRA", seconds=0.2),
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """A uvicorn server in a thread, stoppable and restartable on the same port."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.app = app
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> LiveServer:
        import uvicorn

        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=20)
        self._server = self._thread = None

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def csrf_of(client: Any) -> str:
    """The dashboard's CSRF token for ``client`` (a page visit sets its cookie)."""
    if "greenlm_csrf" not in client.cookies:
        client.get("/login")
    return str(client.cookies["greenlm_csrf"])


def login(client: Any, token: str, next_path: str = "/") -> Any:
    """Sign in through the dashboard's form (with its CSRF token, as a browser would)."""
    return client.post(
        "/login", data={"token": token, "next": next_path, "csrf_token": csrf_of(client)}, follow_redirects=False
    )
