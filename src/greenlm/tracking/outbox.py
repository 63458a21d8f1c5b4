"""Send runs to a team server without ever losing one: :class:`HttpSink` and its outbox.

The team server is a window's destination like the run store, so the sending side lives in
``tracking``; the ``server`` package only receives. Events are spooled on disk first
(:mod:`greenlm.tracking.spool`) under ``$GREENLM_HOME/outbox/<server key>/<run_id>/`` and
posted in order by a background courier (one per process, server and token) with a timeout
on every request and exponential backoff while the server is unreachable. ``finish()`` also
tries to deliver the run's last events itself, for a bounded time, so a short script's run is
on the server when it exits.

What is still in the outbox when the process ends is delivered later: by the next tracker
that reports to the same server, or by ``greenlm server push``. The server is idempotent by
run id and by batch number, so sending an event twice is harmless. Answers:

* 2xx: delivered. 401/403: the token is refused; events wait (``push --token``), one warning.
* 413/422 (and 404 for samples of a run the server never got): refused as invalid, moved to
  ``rejected/`` with the reason, at once.
* 5xx: counted; after ``MAX_TRIES`` the event is moved aside so it cannot block the run or
  the outbox; the other runs go on meanwhile.
* no answer (refused, timeout, DNS): the server is down; everything waits, with backoff.

A token is only ever sent to the server it was given for: :func:`push` without a URL delivers
each server's events with the token recorded for that server, never with another.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from greenlm.config import greenlm_home
from greenlm.tracking.spool import (
    MAX_SAMPLES_PER_EVENT,
    MAX_TRIES,
    STALE_RUN_DIR_S,
    Courier,
    DrainReport,
    Outcome,
    Spool,
    SpooledSink,
    courier_for,
    destination_key,
    drain,
)
from greenlm.tracking.spool import deliver_run as _deliver_run

log = logging.getLogger(__name__)

__all__ = [
    "MAX_SAMPLES_PER_EVENT",
    "MAX_TRIES",
    "STALE_RUN_DIR_S",
    "Delivery",
    "DrainReport",
    "HttpSink",
    "Outbox",
    "normalise_url",
    "open_destination",
    "outbox_root",
    "push",
    "server_key",
]


def normalise_url(url: str) -> str:
    """``host:8787`` -> ``http://host:8787``; no trailing slash."""
    u = url.strip().rstrip("/")
    if "://" not in u:
        u = "http://" + u
    return u


def outbox_root() -> Path:
    """``$GREENLM_HOME/outbox``."""
    return greenlm_home() / "outbox"


def server_key(url: str) -> str:
    """The outbox folder name of a server (a hash of its URL)."""
    return destination_key(normalise_url(url))


class Outbox(Spool):
    """The events of one server that are not yet acknowledged, one folder per run."""

    def __init__(self, url: str, root: Path | None = None) -> None:
        self.url = normalise_url(url)
        super().__init__(server_key(self.url), root or outbox_root(), {"url": self.url})


class Delivery:
    """Posts outbox events to the server (one httpx client, a timeout on every request)."""

    def __init__(self, outbox: Outbox, token: str | None, timeout_s: float = 5.0) -> None:
        import httpx

        self.outbox = outbox
        headers = {"User-Agent": "greenlm-tracker"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.client = httpx.Client(
            base_url=outbox.url, headers=headers, timeout=httpx.Timeout(timeout_s, connect=min(3.0, timeout_s))
        )
        self._warned: set[str] = set()

    def close(self) -> None:
        self.client.close()

    def _warn_once(self, key: str, msg: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(msg, *args)

    @staticmethod
    def _endpoint(run_id: str, kind: str) -> str:
        if kind == "start":
            return f"/api/v1/runs/{run_id}/start"
        if kind == "samples":
            return f"/api/v1/runs/{run_id}/samples"
        return "/api/v1/runs"

    def deliver(self, run_id: str, kind: str, payload: dict[str, Any]) -> Outcome:
        """Post one event; what the server's answer means for it."""
        import httpx

        try:
            r = self.client.post(self._endpoint(run_id, kind), json=payload)
            if r.status_code == 413 and kind == "result" and payload.get("timeline"):
                payload = {k: v for k, v in payload.items() if k != "timeline"}  # the samples carry the trace
                r = self.client.post(self._endpoint(run_id, kind), json=payload)
        except httpx.HTTPError as e:
            return Outcome("down", f"{self.outbox.url} unreachable ({type(e).__name__}: {e})")
        if r.status_code < 300:
            return Outcome.ok()
        reason = f"HTTP {r.status_code}: {r.text[:2000]}"
        if r.status_code in (413, 422) or (r.status_code == 404 and kind == "samples") or _not_owner(r):
            # 403 "not_owner": the run belongs to another owner on the server; this token will
            # never be allowed to write it, so waiting would only block the runs behind it
            # 404 for samples: the server never got this run's start (it was rejected), so
            # these samples cannot be stored; the result can, without them.
            self._warn_once(
                f"rej-{run_id}",
                "greenlm: server %s refused an event of run %s (%s); kept in %s",
                self.outbox.url,
                run_id,
                reason[:200],
                self.outbox.dir / "rejected",
            )
            return Outcome("reject", reason)
        if r.status_code in (401, 403):
            self._warn_once(
                "auth",
                "greenlm: server %s refused the token (HTTP %s); runs stay in %s until "
                "`greenlm server push --server URL --token ...`",
                self.outbox.url,
                r.status_code,
                self.outbox.dir,
            )
            return Outcome("down", f"token refused by {self.outbox.url} (HTTP {r.status_code})")
        if r.status_code >= 500:
            self._warn_once(
                f"5xx-{run_id}",
                "greenlm: server %s failed on an event of run %s (%s); retried, moved aside after %d tries",
                self.outbox.url,
                run_id,
                reason[:200],
                MAX_TRIES,
            )
            return Outcome("retry", reason)
        return Outcome("retry", reason)

    def deliver_run(self, run_dir: Path, wait_s: float = 0.0, deadline: float | None = None) -> DrainReport:
        """Post a run's events in order (see :func:`greenlm.tracking.spool.deliver_run`)."""
        return _deliver_run(self.outbox, self, run_dir, wait_s, deadline)

    def drain(self, deadline: float | None = None) -> DrainReport:
        """Deliver every run in the outbox, oldest first."""
        return drain(self.outbox, self, deadline)


def _not_owner(r: Any) -> bool:
    """A 403 for a run of another owner (the server's ``"reason": "not_owner"``)."""
    if r.status_code != 403:
        return False
    try:
        return bool(r.json().get("reason") == "not_owner")
    except (ValueError, AttributeError):
        return False


def _token_file(outbox: Outbox) -> Path:
    return outbox.dir / "token.json"


def _remember_token(outbox: Outbox, token: str | None) -> None:
    """Record which token this server's events are sent with (0600, in the 0700 outbox)."""
    if not token:
        return
    from greenlm._files import write_text_atomic

    try:
        outbox._ensure()
        write_text_atomic(_token_file(outbox), json.dumps({"token": token}), mode=0o600)
    except OSError as e:
        log.debug("greenlm: cannot record the outbox token: %s", e)


def _recorded_token(outbox: Outbox) -> str | None:
    try:
        return str(json.loads(_token_file(outbox).read_text(encoding="utf-8"))["token"]) or None
    except (OSError, ValueError, KeyError, TypeError):
        return None


class HttpSink(SpooledSink):
    """RunSink that reports to a team server through a durable outbox (never raises)."""

    retry_down_at_finish = False

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        outbox_dir: str | Path | None = None,
        timeout_s: float = 5.0,
        finish_wait_s: float = 10.0,
        background: bool = True,
    ) -> None:
        self.url = normalise_url(url)
        self.label = f"team server {self.url}"
        self.finish_wait_s = finish_wait_s
        self.outbox = self.spool = Outbox(self.url, Path(outbox_dir) if outbox_dir else None)
        self._init_spooled()
        _remember_token(self.outbox, token)
        box = self.outbox
        # Starting the courier also drains what earlier processes left for this server.
        self.courier: Courier = courier_for(
            self.outbox, (token, timeout_s), lambda: Delivery(box, token, timeout_s), background
        )


def push(
    url: str | None = None, token: str | None = None, root: Path | None = None, timeout_s: float = 10.0
) -> dict[str, DrainReport]:
    """Deliver the outbox now: one server (``url``), or every server that has events waiting.

    ``token`` is used only for the server named by ``url``; without ``url`` each server's
    events go with the token recorded for that server (a token is never sent to a server
    it was not given for).
    """
    base = root or outbox_root()
    targets: list[str] = []
    if url:
        targets = [normalise_url(url)]
    elif base.is_dir():
        for d in sorted(base.iterdir()):
            for meta in (d / "destination.json", d / "server.json"):
                if meta.is_file():
                    with contextlib.suppress(OSError, ValueError, KeyError):
                        targets.append(str(json.loads(meta.read_text(encoding="utf-8"))["url"]))
                    break
    out: dict[str, DrainReport] = {}
    for t in targets:
        box = Outbox(t, base)
        tok = (token or _recorded_token(box)) if url else _recorded_token(box)
        delivery = Delivery(box, tok, timeout_s)
        try:
            out[t] = delivery.drain()
        finally:
            delivery.close()
    return out


def open_destination(config: Any) -> HttpSink | None:
    """The team-server destination of a window: an :class:`HttpSink` when ``config.server`` is set."""
    if not config.server:
        return None
    return HttpSink(config.server, config.token)
