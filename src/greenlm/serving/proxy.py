"""An OpenAI-compatible reverse proxy that gives every response the energy it took.

:class:`ServingProxy` listens on a port, forwards every request to the engine (the
*upstream*) unchanged, and measures the engine's process tree with an
:class:`~greenlm.EnergyTracker` whose window is the serving run. On the two generation
routes, ``POST /v1/chat/completions`` and ``POST /v1/completions``, it follows each request
(arrival, streamed chunks, usage counts, end) and splits the measured energy among requests
with :mod:`greenlm.serving.attribution`; every other path (``/v1/models``, ``/health``, the
engine's own ``/metrics`` under ``/v1/...`` or elsewhere) is passed through untouched and not
attributed.

What a response carries
-----------------------
* Non-streamed JSON: headers ``x-greenlm-energy-j``, ``x-greenlm-co2e-g``,
  ``x-greenlm-provenance``, ``x-greenlm-request-id``, and an object ``"greenlm"`` next to
  ``"usage"`` (energy and band, CO2e, J per output token, tokens, TTFT, the split method).
* Streamed (SSE): headers cannot carry a figure known only at the end, so the same object
  rides in the stream's last chunk (the one with ``finish_reason`` or ``usage``, held back
  until the engine closes the stream; if the engine sent no such chunk, one chunk with empty
  ``choices`` is added before ``[DONE]``). Clients that do not know the key ignore it.

The figures are final when the response ends: the proxy reads the meters at the request's
end (``tracker.sample_now()``) or, with a tracker that cannot, waits for the next periodic
sample (:func:`measured_point_after`, the one adapter).

Also served by the proxy itself: ``/metrics`` (Prometheus text, :mod:`greenlm.serving.metrics`)
and ``/greenlm/stats`` (JSON: what was measured so far, for ``greenlm bench serve``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from greenlm.carbon.accounting import account
from greenlm.errors import ConfigError, MissingExtraError
from greenlm.serving.attribution import DEFAULT_PREFILL_WEIGHT, Attribution, RequestEnergy, Status
from greenlm.serving.extras import EngineMetrics, parse_vllm
from greenlm.serving.ledger import Ledger
from greenlm.serving.metrics import IDLE_ROUTE, LabelGuard, ServeMetrics, sanitize_label
from greenlm.tracking.result import RunResult

log = logging.getLogger(__name__)

GENERATION_ROUTES = ("/v1/chat/completions", "/v1/completions")
STATS_PATH = "/greenlm/stats"
METRICS_PATH = "/metrics"
#: Headers that describe one hop, never forwarded (RFC 9110 section 7.6.1), and ones aiohttp sets.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
#: Characters per token for the prompt-size estimate used until the engine's usage arrives.
CHARS_PER_TOKEN = 4.0


_AIOHTTP: Any = None
#: A plain content chunk's bytes before and after its text, their length, and the parsed chunk.
_Shape = tuple[bytes, bytes, int, dict[str, Any]]


def _aiohttp() -> Any:
    global _AIOHTTP
    if _AIOHTTP is None:
        try:
            import aiohttp
            from aiohttp import web  # noqa: F401
        except ImportError as e:
            raise MissingExtraError("greenlm serve", "serve", "aiohttp") from e
        _AIOHTTP = aiohttp
    return _AIOHTTP


async def measured_point_after(
    tracker: Any, t_mono: float, next_sample: Callable[[float], Awaitable[tuple[float, float]]]
) -> tuple[float, float]:
    """``(t, cumulative IT energy)`` measured at or after ``t_mono``.

    ``tracker.sample_now()`` when the tracker has it (every meter read now: the figure is
    final at once), else the next periodic sample past ``t_mono`` (``next_sample``; at most
    one sampling interval later).
    """
    sample_now = getattr(tracker, "sample_now", None)
    if callable(sample_now):
        t, e = sample_now()
        return float(t), float(e)
    return await next_sample(t_mono)


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    """Rough prompt size in tokens (characters / 4; token-id lists counted), for the prefill weight."""
    chars = 0
    ids = 0
    msgs = body.get("messages")
    if isinstance(msgs, list):
        for m in msgs:
            if not isinstance(m, dict):
                continue
            chars += 16  # role and template tokens
            c = m.get("content")
            if isinstance(c, str):
                chars += len(c)
            elif isinstance(c, list):
                for part in c:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        chars += len(part["text"])
    p = body.get("prompt")
    if isinstance(p, str):
        chars += len(p)
    elif isinstance(p, list):
        for x in p:
            if isinstance(x, str):
                chars += len(x)
            elif isinstance(x, int):
                ids += 1
            elif isinstance(x, list):
                ids += len(x)
    return ids + int(chars / CHARS_PER_TOKEN + 0.5)


def chunk_tokens(obj: dict[str, Any]) -> int:
    """Output tokens in one streamed chunk: one per choice that carries new text or a tool call."""
    return _choice_tokens(obj.get("choices"))


def _choice_tokens(choices: Any) -> int:
    if type(choices) is not list:
        return 0
    n = 0
    for c in choices:
        if type(c) is not dict:
            continue
        d = c.get("delta")
        if type(d) is dict:
            if d.get("content") or d.get("reasoning_content") or d.get("reasoning") or d.get("tool_calls"):
                n += 1
        elif c.get("text"):
            n += 1
    return n


def _content_shape(data: bytes, obj: dict[str, Any], choices: list[Any]) -> _Shape | None:
    """The bytes around the text of a plain one-choice content chunk: ``(before, after, their length, obj)``.

    A later chunk made of the same ``before`` and ``after`` with other text in between is the
    same object with other text (one token, not a tail): read without parsing it. ``None``
    when the chunk is not that plain (several choices, other delta keys, escapes in the text).
    """
    if len(choices) != 1 or type(choices[0]) is not dict:
        return None
    c = choices[0]
    d = c.get("delta")
    if type(d) is not dict or not set(d) <= {"content", "role"} or d.get("role") not in (None, "assistant"):
        return None
    text = d.get("content")
    if type(text) is not str or not text or c.get("finish_reason"):
        return None
    raw = text.encode()
    key = data.find(b'"content"')
    if key < 0 or data.find(b'"content"', key + 1) >= 0:
        return None  # absent as written, or twice: not sure which is the text
    start = data.find(b'"', key + 9) + 1
    if start <= 0 or data[start : start + len(raw)] != raw or data[start + len(raw) : start + len(raw) + 1] != b'"':
        return None  # the text is escaped in the chunk (quotes, newlines, \\u): no shortcut
    if data[key + 9 : start - 1].strip(b" :\t") != b"":
        return None
    before, after = data[:start], data[start + len(raw) :]
    return before, after, len(before) + len(after), obj


def _utf8(b: bytes) -> bool:
    if b.isascii():
        return True
    try:
        b.decode()
    except UnicodeDecodeError:
        return False
    return True


def _any_finish(choices: list[Any]) -> bool:
    for c in choices:  # noqa: SIM110 (a loop: any() over a generator costs more per chunk)
        if type(c) is dict and c.get("finish_reason"):
            return True
    return False


def _usage(obj: Any) -> tuple[int | None, int | None]:
    u = obj.get("usage") if isinstance(obj, dict) else None
    if not isinstance(u, dict):
        return None, None

    def num(k: str) -> int | None:
        v = u.get(k)
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 else None

    return num("prompt_tokens"), num("completion_tokens")


def _error_body(message: str, kind: str, code: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind, "code": code, "param": None}}).encode()


class _Waiters:
    """Futures waiting for the first measured point at or after a time (event-loop side)."""

    def __init__(self) -> None:
        self.items: list[tuple[float, asyncio.Future[tuple[float, float]]]] = []

    def wake(self, t: float, e: float, everyone: bool = False) -> None:
        keep = []
        for need, fut in self.items:
            if everyone or need <= t:
                if not fut.done():
                    fut.set_result((t, e))
            else:
                keep.append((need, fut))
        self.items = keep


class ServingProxy:
    """The proxy and its serving run.

    ``upstream``: the engine's base URL; ``model``: the configured model name (labels idle
    energy and requests that name no model); ``engine``: what the engine is, for the run's
    metadata; ``prefill_weight``: decode-token equivalents of one prompt token;
    ``window_s`` / ``keep_windows``: roll-up windows saved with the run;
    ``upstream_timeout_s``: longest wait for the engine's next byte;
    ``engine_metrics_interval_s``: how often a vLLM-style ``/metrics`` page is read (0: never).
    Other keyword arguments are ``EnergyTracker`` settings (``project``, ``location``,
    ``interval_s``, ``store``, ``meters``, ``attribution``, ``metadata``, ...).
    """

    def __init__(
        self,
        upstream: str,
        *,
        model: str = "",
        engine: str = "",
        prefill_weight: float = DEFAULT_PREFILL_WEIGHT,
        window_s: float = 300.0,
        keep_windows: int = 288,
        upstream_timeout_s: float = 600.0,
        engine_metrics_interval_s: float = 2.0,
        registry: Any = None,
        **tracker_kwargs: Any,
    ) -> None:
        from greenlm._validate import finite
        from greenlm.tracking.tracker import EnergyTracker

        finite("window_s", window_s, minimum=0.0, strict=True)
        finite("upstream_timeout_s", upstream_timeout_s, minimum=0.0, strict=True)
        finite("prefill_weight", prefill_weight, minimum=0.0)
        _aiohttp()
        self.upstream = upstream.rstrip("/")
        self._labels = LabelGuard()
        self.model = self._model_label(model) if model else "_"
        self.engine = engine
        self.prefill_weight = float(prefill_weight)
        self.upstream_timeout_s = float(upstream_timeout_s)
        self.engine_metrics_interval_s = float(engine_metrics_interval_s)
        self.metrics = ServeMetrics(registry)
        self._store_arg = tracker_kwargs.get("store")
        meta = {
            **dict(tracker_kwargs.pop("metadata", None) or {}),
            "kind": "serving",
            "deployment": f"{socket.gethostname()}:{os.getpid()}",
            "upstream": self.upstream,
            "engine": engine,
        }
        listeners = [*tracker_kwargs.pop("listeners", ()), self]
        tracker_kwargs.setdefault("handle_signals", False)  # greenlm serve stops the run itself
        self.tracker = EnergyTracker(**tracker_kwargs, metadata=meta, listeners=listeners)
        self._lock = threading.Lock()
        # a roll-up snapshot (a nested start/stop of the tracker) and the final stop exclude each other
        self._snap_lock = threading.Lock()
        self._attr: Attribution | None = None
        self._ledger = Ledger(self.model, 0.0, window_s, keep_windows)
        self._final: dict[str, RequestEnergy] = {}
        self._ids = itertools.count(1)
        self._prefix = os.urandom(3).hex()
        self._idle_seen = 0.0
        self._g_per_j = 0.0
        self._device_j: dict[str, float] = {}
        self._last_t_s = 0.0
        self._power_w = 0.0
        self.engine_metrics: EngineMetrics | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters = _Waiters()
        self._runner: Any = None
        self._session: Any = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._closing = False
        self._named = bool(model)
        self._provenance: str | None = None
        self._band = (1.0, 1.0)
        self._grid = ""
        self.result: RunResult | None = None
        self.port: int | None = None
        self.host: str | None = None
        self.stop_reason: str | None = None

    # ------------------------------------------------------------------ lifecycle
    def open_run(self, *, pid: int | None = None) -> None:
        """Open the serving run, measuring ``pid``'s process tree (the engine; None: see ``attribution``)."""
        self.tracker.start(pid=pid)

    def set_model(self, model: str) -> None:
        """The model name that labels idle energy and requests naming no model."""
        self.model = self._model_label(model) if model else "_"
        self._ledger.model = self.model
        self._named = True

    def _model_label(self, model: str) -> str:
        """A model's label: its name, or the last part of a long path (``/srv/models/x`` -> ``x``)."""
        m = model.strip()
        if len(m) > 64 and "/" in m.rstrip("/"):
            m = m.rstrip("/").rsplit("/", 1)[-1]
        return self._labels("model", m)

    async def listen(self, host: str = "127.0.0.1", port: int = 8000) -> None:
        """Accept requests on ``host:port`` (0: any free port)."""
        aiohttp = _aiohttp()
        from aiohttp import web

        self._loop = asyncio.get_running_loop()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=self.upstream_timeout_s)
        self._session = aiohttp.ClientSession(
            timeout=timeout,
            auto_decompress=False,
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as e:
            with contextlib.suppress(Exception):
                await self._runner.cleanup()
            with contextlib.suppress(Exception):
                await self._session.close()
            self._runner = self._session = None
            raise ConfigError(f"greenlm serve cannot listen on {host}:{port}: {e.strerror or e}.") from e
        addrs = self._runner.addresses
        self.port = int(addrs[0][1]) if addrs else port
        self.host = host
        self._named = True  # whatever the model label is now, it is the one
        if self.engine_metrics_interval_s > 0:
            self._tasks.append(asyncio.create_task(self._watch_engine_metrics()))

    async def start(self, host: str = "127.0.0.1", port: int = 8000, *, pid: int | None = None) -> ServingProxy:
        """Open the serving run (measuring ``pid``'s process tree) and listen on ``host:port``."""
        self.open_run(pid=pid)
        try:
            await self.listen(host, port)
        except BaseException:
            self.tracker.stop("failed", "greenlm serve could not listen")
            raise
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def drain(self, grace_s: float = 10.0) -> None:
        """Stop accepting connections; give requests in flight up to ``grace_s`` to finish."""
        self._closing = True
        if self._runner is not None:
            for site in list(self._runner.sites):
                with contextlib.suppress(Exception):
                    await site.stop()
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            with self._lock:
                busy = self._attr is not None and self._attr.in_flight > 0
            if not busy:
                break
            await asyncio.sleep(0.05)

    async def stop(self, status: str = "completed", error: str | None = None) -> RunResult:
        """Close the serving run (requests still in flight are cut) and store it with its summary."""
        with self._snap_lock:
            self._closing = True
        for t in self._tasks:
            t.cancel()
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.shutdown()
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        result = await asyncio.to_thread(self.tracker.stop, status, error)
        with self._lock:
            summary = self.summary()
        result = dataclasses.replace(result, metadata={**result.metadata, "serving": summary})
        if not self._save(result):
            result = dataclasses.replace(result, warnings=(*result.warnings, "serving summary not stored"))
        self.result = result
        self._waiters.wake(0.0, 0.0, everyone=True)
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.cleanup()
        if self._session is not None:
            with contextlib.suppress(Exception):
                await self._session.close()
        return result

    def _save(self, result: RunResult) -> bool:
        arg = self._store_arg
        if arg is False or (arg is not None and not isinstance(arg, str)):
            return True  # the caller's own sink has the run; nothing for us to write
        try:
            from greenlm.store import open_store

            open_store(self.tracker.config.store).save_result(result)
            return True
        except Exception as e:
            log.warning("greenlm serve: could not store the serving summary: %s", e)
            return False

    # ------------------------------------------------------------------ tracker listener
    def on_start(self, tracker: Any) -> None:
        with self._lock:
            self._attr = Attribution(float(tracker.started_monotonic), 0.0, prefill_weight=self.prefill_weight)
            self._g_per_j = account(1.0, tracker.carbon).co2e_g
            self._ledger.g_per_j = self._g_per_j
            self._idle_seen = 0.0
            self._device_j = {}
            self._last_t_s = 0.0

    def on_sample(self, tracker: Any, t_s: float, powers_w: dict[str, float]) -> None:
        m = self.metrics
        dt = t_s - self._last_t_s
        self._last_t_s = t_s
        for device, p in powers_w.items():
            m.power.labels(device=sanitize_label(device)).set(p)
            if dt > 0:
                self._device_j[device] = self._device_j.get(device, 0.0) + p * dt
        self._power_w = sum(powers_w.values())
        self._refresh_provenance()  # a meter may have fallen back since the last sample
        self._band = self._compute_band()
        t_abs = float(tracker.started_monotonic) + t_s
        e = float(tracker.energy_at(t_abs))
        snapshot = None
        with self._lock:
            self._advance(t_abs, e)
            if self._ledger.roll_due(t_s) and not self._closing:
                self._ledger.roll(t_s, self._measured())
                snapshot = self.summary()
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(self._waiters.wake, t_abs, e)
        if snapshot is not None:
            self._save_snapshot(snapshot)

    def on_stop(self, result: RunResult) -> None:
        t0 = float(self.tracker.started_monotonic or 0.0)
        with self._lock:
            attr = self._attr
            if attr is None:
                return
            self._named = True
            self._publish(attr.close(t0 + result.duration_s, result.energy_j))
            self._publish_idle()
            self._ledger.roll(result.duration_s, self._measured())

    def _save_snapshot(self, summary: dict[str, Any]) -> None:
        """The run so far, with its serving summary, into the store (every ``window_s``)."""
        with self._snap_lock:
            if self._closing or not self.tracker.running:
                return
            self.tracker.set_metadata(serving=summary)
            self.tracker.start()  # nested: stop() returns the result so far without closing
            snap = self.tracker.stop()
        self._save(snap)

    # ------------------------------------------------------------------ attribution (lock held)
    def _advance(self, t: float, e: float) -> None:
        if self._attr is None:
            return
        self._publish(self._attr.advance(t, e))
        self._publish_idle()

    def _measured(self) -> float:
        return self._attr.measured_energy_j if self._attr is not None else 0.0

    def _publish_idle(self) -> None:
        attr = self._attr
        if attr is None or not self._named:  # idle waits for its model label (known once the engine answers)
            return
        d = attr.idle_energy_j - self._idle_seen
        if d > 0:
            self._idle_seen = attr.idle_energy_j
            self._ledger.idle(d)
            lab = {"model": self.model, "route": IDLE_ROUTE}
            self.metrics.energy.labels(**lab).inc(d)
            self.metrics.co2e.labels(**lab).inc(d * self._g_per_j)

    def _publish(self, done: list[RequestEnergy]) -> None:
        m = self.metrics
        for r in done:
            self._final[r.request_id] = r
            self._ledger.add(r)
            energy, co2e, req_energy, tokens, token_energy, prompt_tokens = m.children(r.model, r.route)
            energy.inc(r.energy_j)
            co2e.inc(r.energy_j * self._g_per_j)
            m.requests.labels(model=r.model, route=r.route, status=r.status).inc()
            req_energy.observe(r.energy_j)
            if r.output_tokens:
                tokens.inc(r.output_tokens)
                token_energy.observe(r.energy_j / r.output_tokens)
            if r.prompt_tokens:
                prompt_tokens.inc(r.prompt_tokens)
        if len(self._final) > 10000:  # records nobody collected (handler gone): keep memory bounded
            for k in list(itertools.islice(self._final, len(self._final) - 10000)):
                del self._final[k]

    def band_ratio(self) -> tuple[float, float]:
        """Low and high bound of the measured energy, relative to it (the meters' bands, as of the last sample)."""
        return self._band

    def _compute_band(self) -> tuple[float, float]:
        total = sum(self._device_j.values())
        if total <= 0:
            return 1.0, 1.0
        lo = hi = 0.0
        by_name = {mt.name: mt for mt in self.tracker.meters}
        for name, e in self._device_j.items():
            mt = by_name.get(name)
            if mt is None:
                lo += e
                hi += e
                continue
            try:
                a, b = mt.bounds_j(e)
            except Exception:
                a, b = e, e
            lo += min(a, e)
            hi += max(b, e)
        return lo / total, hi / total

    def provenance(self) -> str:
        """How the energy was obtained: the weakest of the meters' provenances (as of the last sample)."""
        if self._provenance is None:
            self._refresh_provenance()
        return self._provenance or "modeled"

    def _refresh_provenance(self) -> None:
        from greenlm.meters.base import weakest

        self._provenance = weakest([m.provenance for m in self.tracker.meters])
        loc = self.tracker.carbon.location
        self._grid = f"{loc.code}{' ' + str(loc.year) if loc.year else ''} {loc.intensity_g_per_kwh:g} g/kWh"

    # ------------------------------------------------------------------ one request's figures
    async def _next_sample(self, t: float) -> tuple[float, float]:
        assert self._loop is not None
        with self._lock:
            attr = self._attr
            if attr is None or attr.cursor >= t or not self.tracker.running:
                return (attr.cursor, attr.cursor_e) if attr is not None else (t, 0.0)
        fut: asyncio.Future[tuple[float, float]] = self._loop.create_future()
        self._waiters.items.append((t, fut))
        # the sampler may have passed t between the check and the append
        with self._lock:
            if self._attr is not None and self._attr.cursor >= t:
                self._waiters.wake(self._attr.cursor, self._attr.cursor_e)
        return await fut

    async def settle(self, t: float) -> None:
        """Make every request that ended at or before ``t`` final."""
        pt, pe = await measured_point_after(self.tracker, t, self._next_sample)
        with self._lock:
            self._advance(pt, pe)

    async def _finish(self, rid: str, status: Status, prompt: int | None, output: int | None) -> RequestEnergy | None:
        t_end = time.monotonic()
        with self._lock:
            if self._attr is not None:
                self._attr.usage(rid, prompt, output)
                self._attr.end(rid, t_end, status)
        if self.tracker.running:
            await self.settle(t_end)
        return self._final.pop(rid, None)

    def extension(self, r: RequestEnergy | None) -> dict[str, Any]:
        """The ``"greenlm"`` object of a response."""
        if r is None:
            return {"energy_j": None, "note": "the serving run closed before this request's energy was settled"}
        lo, hi = self.band_ratio()
        c = self.tracker.carbon
        prov = self.provenance()
        return {
            "request_id": r.request_id,
            "energy_j": r.energy_j,
            "energy_low_j": r.energy_j * lo,
            "energy_high_j": r.energy_j * hi,
            "co2e_g": r.energy_j * self._g_per_j,
            "j_per_output_token": r.j_per_output_token,
            "prompt_tokens": r.prompt_tokens,
            "output_tokens": r.output_tokens,
            "duration_s": r.duration_s,
            "ttft_s": r.ttft_s,
            "method": r.method,
            "provenance": prov,
            "location": c.location.code,
            "intensity_g_per_kwh": c.location.intensity_g_per_kwh,
            "pue": c.pue.value,
        }

    def _headers(self, r: RequestEnergy | None, rid: str) -> dict[str, str]:
        h = {"x-greenlm-request-id": rid}
        prov = self.provenance()
        grid = self._grid
        if r is not None:
            h["x-greenlm-energy-j"] = repr(r.energy_j)
            h["x-greenlm-co2e-g"] = repr(r.energy_j * self._g_per_j)
            h["x-greenlm-provenance"] = f"energy={prov}; split={r.method}; grid={grid}"
        else:
            h["x-greenlm-provenance"] = f"energy={prov}; grid={grid}"
        return h

    # ------------------------------------------------------------------ HTTP
    async def _handle(self, request: Any) -> Any:
        from aiohttp import web

        path = request.path
        if path == METRICS_PATH and request.method == "GET":
            body, ctype = self.metrics.exposition()
            return web.Response(body=body, headers={"content-type": ctype})
        if path == STATS_PATH and request.method == "GET":
            return web.json_response(await self.stats())
        if request.method == "POST" and path in GENERATION_ROUTES:
            return await self._generate(request, path)
        return await self._passthrough(request)

    def _upstream_headers(self, request: Any, generation: bool) -> dict[str, str]:
        out = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        if generation:
            out = {k: v for k, v in out.items() if k.lower() != "accept-encoding"}
            out["accept-encoding"] = "identity"  # the proxy edits the body
        return out

    @staticmethod
    def _client_headers(resp: Any, drop: tuple[str, ...] = ()) -> dict[str, str]:
        return {k: v for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP and k.lower() not in drop}

    def _proxy_error(self, status: int, message: str, kind: str, code: str, extra: dict[str, str] | None = None) -> Any:
        from aiohttp import web

        headers = {"content-type": "application/json", "x-greenlm-error": code, **(extra or {})}
        return web.Response(status=status, body=_error_body(message, kind, code), headers=headers)

    def _upstream_failure(self, e: BaseException) -> tuple[int, str, str]:
        aiohttp = _aiohttp()
        if isinstance(e, asyncio.TimeoutError):
            return (
                504,
                f"greenlm serve: the engine at {self.upstream} sent nothing for {self.upstream_timeout_s:g} s.",
                "upstream_timeout",
            )
        if isinstance(e, aiohttp.ClientConnectorError):
            why = e.os_error.strerror if getattr(e, "os_error", None) and e.os_error.strerror else str(e)
            return (
                502,
                f"greenlm serve: the engine at {self.upstream} is not answering ({why}). "
                "Is it running, and on that port?",
                "upstream_unavailable",
            )
        return 502, f"greenlm serve: the connection to the engine at {self.upstream} failed ({e}).", "upstream_failed"

    async def _passthrough(self, request: Any) -> Any:
        from aiohttp import web

        aiohttp = _aiohttp()
        url = self.upstream + request.rel_url.path_qs
        body = await request.read()
        try:
            up = await self._session.request(
                request.method, url, headers=self._upstream_headers(request, False), data=body or None
            )
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            status, msg, code = self._upstream_failure(e)
            return self._proxy_error(status, msg, "upstream_error", code)
        try:
            resp = web.StreamResponse(status=up.status, reason=up.reason, headers=self._client_headers(up))
            if up.headers.get("content-length"):
                resp.content_length = int(up.headers["content-length"])
            await resp.prepare(request)
            async for chunk in up.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp
        except (ConnectionResetError, aiohttp.ClientError, asyncio.TimeoutError):
            return resp
        finally:
            up.release()

    async def _generate(self, request: Any, route: str) -> Any:
        aiohttp = _aiohttp()
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError as e:
            return self._proxy_error(
                400,
                f"greenlm serve: the request body is not valid JSON ({e}); {route} takes a JSON object "
                'such as {"model": "...", "messages": [{"role": "user", "content": "Hello"}]}.',
                "invalid_request_error",
                "invalid_json",
            )
        if not isinstance(body, dict):
            return self._proxy_error(
                400,
                f"greenlm serve: {route} takes a JSON object, got {type(body).__name__}.",
                "invalid_request_error",
                "invalid_body",
            )
        stream = body.get("stream", False)
        if stream is not None and not isinstance(stream, bool):
            return self._proxy_error(
                400,
                f'greenlm serve: "stream" must be true or false, got {stream!r}.',
                "invalid_request_error",
                "invalid_stream",
            )
        model = body.get("model")
        label = self._model_label(model) if isinstance(model, str) and model else self.model
        rid = f"glm-{self._prefix}-{next(self._ids)}"
        with self._lock:
            attr = self._attr
            if attr is None or not self.tracker.running:
                return self._proxy_error(
                    503, "greenlm serve is stopping; not accepting requests.", "unavailable", "stopping"
                )
            attr.begin(
                rid,
                time.monotonic(),
                model=label,
                route=route,
                stream=bool(stream),
                prompt_tokens=estimate_prompt_tokens(body),
            )
        finished = False
        try:
            try:
                up = await self._session.post(
                    self.upstream + request.rel_url.path_qs, data=raw, headers=self._upstream_headers(request, True)
                )
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
                status, msg, code = self._upstream_failure(e)
                finished = True
                rec = await self._finish(rid, "upstream-error", None, None)
                return self._proxy_error(status, msg, "upstream_error", code, self._headers(rec, rid))
            try:
                ctype = up.headers.get("content-type", "")
                if up.status < 300 and ctype.startswith("text/event-stream"):
                    finished = True
                    return await self._relay_stream(request, up, rid)
                finished = True
                return await self._relay_json(request, up, rid, route)
            finally:
                up.release()
        finally:
            if not finished:  # cancelled (server shutdown) before the request was settled
                with self._lock:
                    if self._attr is not None:
                        self._attr.end(rid, time.monotonic(), "disconnected")

    async def _relay_json(self, request: Any, up: Any, rid: str, route: str) -> Any:
        from aiohttp import web

        aiohttp = _aiohttp()
        try:
            data = await up.read()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            status, msg, code = self._upstream_failure(e)
            rec = await self._finish(rid, "upstream-error", None, None)
            return self._proxy_error(status, msg, "upstream_error", code, self._headers(rec, rid))
        ctype = up.headers.get("content-type", "")
        try:
            obj = json.loads(data) if data else None
        except ValueError:
            obj = None
        if up.status >= 300:  # the engine's own error: passed through, with the energy it cost
            rec = await self._finish(rid, "rejected" if up.status < 500 else "upstream-error", None, None)
            headers = {**self._client_headers(up), **self._headers(rec, rid)}
            return web.Response(status=up.status, reason=up.reason, body=data, headers=headers)
        if not isinstance(obj, dict) or not isinstance(obj.get("choices"), list):
            rec = await self._finish(rid, "upstream-error", None, None)
            shown = data[:120].decode("utf-8", "replace")
            return self._proxy_error(
                502,
                f"greenlm serve: the engine at {self.upstream} answered {route} with "
                f"{ctype or 'no content type'} ({shown!r}), not an OpenAI response with choices. "
                "Is --upstream the engine's OpenAI-compatible API?",
                "upstream_error",
                "upstream_not_openai",
                self._headers(rec, rid),
            )
        prompt, output = _usage(obj)
        rec = await self._finish(rid, "ok", prompt, output)
        obj["greenlm"] = self.extension(rec)
        body = json.dumps(obj, separators=(",", ":")).encode()
        headers = {**self._client_headers(up, ("content-type",)), **self._headers(rec, rid)}
        resp = web.Response(status=up.status, body=body, headers=headers, content_type="application/json")
        try:
            await resp.prepare(request)
            await resp.write_eof()
        except (ConnectionResetError, aiohttp.ClientError):
            log.debug("client gone before the response of %s was sent", rid)
        return resp

    async def _relay_stream(self, request: Any, up: Any, rid: str) -> Any:
        from aiohttp import web

        aiohttp = _aiohttp()
        headers = {**self._client_headers(up), **self._headers(None, rid)}
        resp = web.StreamResponse(status=up.status, reason=up.reason, headers=headers)
        sse = _SseState()
        status: Status = "ok"
        if not await _send(resp, request=request):
            await self._finish(rid, "disconnected", None, None)
            return resp
        buf = b""
        attr_lock = self._lock
        try:
            # the largest pieces the engine's writes arrive in; each piece is split into whole
            # SSE events, forwarded in one write (a partial event waits for its end)
            async for piece in up.content.iter_any():
                if b"\r" in piece:
                    piece = piece.replace(b"\r\n", b"\n")
                if buf:
                    piece = buf + piece
                start = 0
                out: list[bytes] = []
                while True:
                    cut = piece.find(b"\n\n", start)
                    if cut < 0:
                        break
                    self._on_event(piece[start : cut + 2], sse, out)
                    start = cut + 2
                buf = piece[start:] if start else piece
                if sse.new_tokens:  # one record per piece: its events arrived together
                    n, sse.new_tokens = sse.new_tokens, 0
                    t = time.monotonic()
                    with attr_lock:
                        if self._attr is not None:
                            self._attr.tokens(rid, t, n)
                if out and not await _send(resp, out[0] if len(out) == 1 else b"".join(out)):
                    status = "disconnected"
                    break
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            status = "upstream-error"
        if status == "disconnected":
            up.close()  # the engine sees its client go away (engines stop generating then)
            await self._finish(rid, "disconnected", sse.prompt, sse.output)
            return resp
        out = []
        if buf.strip():  # a last event without its blank line
            self._on_event(buf.rstrip(b"\n") + b"\n\n", sse, out)
        if sse.new_tokens:
            with self._lock:
                if self._attr is not None:
                    self._attr.tokens(rid, time.monotonic(), sse.new_tokens)
            sse.new_tokens = 0
        if sse.error:
            status = "upstream-error"
        rec = await self._finish(rid, status, sse.prompt, sse.output)
        if sse.held is not None:
            obj = sse.held[0]
        else:
            base = sse.last or {}
            obj = {k: base[k] for k in ("id", "object", "created", "model") if k in base}
            obj["choices"] = []
        obj["greenlm"] = self.extension(rec)
        out.append(b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n")
        if sse.done:
            out.append(b"data: [DONE]\n\n")
        if await _send(resp, b"".join(out)):
            await _send(resp, eof=True)
        return resp

    @staticmethod
    def _on_event(event: bytes, sse: _SseState, out: list[bytes]) -> None:
        """One SSE event from the engine: count its tokens, forward it (or hold a possible last one).

        The tokens are added to ``sse.new_tokens``; the caller records them with their time.
        """
        if event.startswith(b"data: ") and event.find(b"\n", 6) == len(event) - 2:
            data: bytes | None = event[6:-2].strip()  # the usual event: one data line
        else:
            data = _sse_data(event)
        if data is None:
            out.append(event)
            return
        if data == b"[DONE]":
            sse.done = True  # re-sent after the chunk that carries the energy
            return
        shape = sse.shape
        if shape is not None and len(data) > shape[2] and data.startswith(shape[0]) and data.endswith(shape[1]):
            body = data[len(shape[0]) : len(data) - len(shape[1])]
            if b'"' not in body and b"\\" not in body and min(body) >= 0x20 and _utf8(body):
                # the same bytes as the first plain content chunk but for a non-empty text without
                # quotes, escapes or control characters: the same object with other text, so
                # one token and not a tail (what the full parse would find)
                sse.new_tokens += 1
                sse.last = shape[3]  # as the parse would: the same id, object, created, model
                if sse.held is not None:
                    out.append(sse.held[1])
                    sse.held = None
                out.append(event)
                return
        try:
            obj = json.loads(data)
        except ValueError:
            obj = None
        if type(obj) is not dict:
            out.append(event)
            return
        choices = obj.get("choices")
        if "error" in obj and "choices" not in obj:
            sse.error = True
        sse.last = obj
        sse.new_tokens += _choice_tokens(choices)
        usage = obj.get("usage")
        if usage:
            p, o = _usage(obj)
            if p is not None:
                sse.prompt = p
            if o is not None:
                sse.output = o
        held = sse.held
        if held is not None:
            out.append(held[1])
            sse.held = None
        if usage or not isinstance(choices, list) or not choices or _any_finish(choices):
            sse.held = (obj, event)  # it may be the stream's last chunk
        else:
            out.append(event)
            if sse.shape is None:
                sse.shape = _content_shape(data, obj, choices)

    # ------------------------------------------------------------------ stats and engine extras
    async def stats(self) -> dict[str, Any]:
        """What was measured so far (settled to now), JSON-ready: ``GET /greenlm/stats``."""
        if self.tracker.running:
            await self.settle(time.monotonic())
        lo, hi = self.band_ratio()
        with self._lock:
            attr = self._attr
            measured = self._measured()
            t = self._ledger.total
            out = {
                "kind": "greenlm.serve.stats",
                "version": 1,
                "run_id": self.tracker.run_id,
                "model": self.model,
                "engine": self.engine,
                "upstream": self.upstream,
                "t_s": (attr.cursor - attr.t0) if attr is not None else 0.0,
                "measured_energy_j": measured,
                "energy_low_j": measured * lo,
                "energy_high_j": measured * hi,
                "requests_energy_j": t.energy_j,
                "idle_energy_j": self._ledger.idle_energy_j,
                "in_flight_energy_j": attr.in_flight_energy_j if attr is not None else 0.0,
                "in_flight": attr.in_flight if attr is not None else 0,
                "requests": t.requests,
                "statuses": dict(t.statuses),
                "status_energy_j": dict(t.status_energy_j),
                "prompt_tokens": t.prompt_tokens,
                "output_tokens": t.output_tokens,
                "power_w": self._power_w,
                "provenance": self.provenance(),
                "prefill_weight": self.prefill_weight,
                "hardware": self.hardware(),
                "engine_metrics": self.engine_metrics.summary() if self.engine_metrics else None,
            }
        return out

    def hardware(self) -> dict[str, Any]:
        """What the engine runs on, from the meters in use."""
        from greenlm.meters.cpu_model import read_model_name

        gpus = [m.describe() for m in self.tracker.meters if m.kind == "gpu"]
        names = sorted({str(g.get("model") or g.get("name")) for g in gpus})
        return {
            "accelerator": ", ".join(names) if names else None,
            "accelerator_count": len(gpus),
            "cpu": read_model_name(),
            "cpu_threads": os.cpu_count() or 1,
        }

    def summary(self) -> dict[str, Any]:
        """``metadata["serving"]`` of the run (lock held)."""
        attr = self._attr
        s = self._ledger.summary(self._measured(), attr.in_flight_energy_j if attr is not None else 0.0)
        s.update(
            {
                "proxy": "greenlm serve",
                "upstream": self.upstream,
                "engine": self.engine,
                "rule": (
                    "piece energy between measured points split by work in flight (streamed tokens; "
                    "first token + prefill_weight x prompt tokens; non-streamed at the streamed rate); "
                    "time share when no work was seen; idle otherwise"
                ),
                "prefill_weight": self.prefill_weight,
                "time_share_energy_j": attr.time_share_energy_j if attr is not None else 0.0,
                "engine_metrics": self.engine_metrics.summary() if self.engine_metrics else None,
                "stop_reason": self.stop_reason,
            }
        )
        return s

    async def _watch_engine_metrics(self) -> None:
        """Read the engine's ``/metrics`` while it publishes vLLM-style figures."""
        aiohttp = _aiohttp()
        url = self.upstream + METRICS_PATH
        misses = 0
        while not self._closing:
            try:
                async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as r:
                    text = await r.text() if r.status == 200 else ""
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, UnicodeDecodeError):
                text = ""
            values = parse_vllm(text) if text else {}
            if values:
                misses = 0
                if self.engine_metrics is None:
                    self.engine_metrics = EngineMetrics()
                    log.info("greenlm serve: recording the engine's vLLM metrics from %s", url)
                with self._lock:
                    self.engine_metrics.add(time.monotonic(), values)
                m = self.metrics
                if "requests_running" in values:
                    m.engine_running.set(values["requests_running"])
                if "requests_waiting" in values:
                    m.engine_waiting.set(values["requests_waiting"])
                if "kv_cache_usage" in values:
                    m.engine_kv.set(values["kv_cache_usage"])
            else:
                misses += 1
                if self.engine_metrics is None and misses >= 3:
                    return  # this engine has no such page: stop asking
            await asyncio.sleep(self.engine_metrics_interval_s)


class _SseState:
    """What a relayed stream has shown so far."""

    __slots__ = ("done", "error", "held", "last", "new_tokens", "output", "prompt", "shape")

    def __init__(self) -> None:
        self.held: tuple[dict[str, Any], bytes] | None = None  # a chunk that may be the last
        self.last: dict[str, Any] | None = None
        self.prompt: int | None = None
        self.output: int | None = None
        self.new_tokens = 0  # counted, not yet recorded with their time
        self.shape: _Shape | None = None  # see _content_shape
        self.done = False
        self.error = False


async def _send(resp: Any, data: bytes = b"", *, request: Any = None, eof: bool = False) -> bool:
    """Prepare, write to or end a streamed response; False when the client has gone."""
    try:
        if request is not None:
            await resp.prepare(request)
        elif eof:
            await resp.write_eof()
        else:
            await resp.write(data)
        return True
    except (ConnectionResetError, ConnectionError):
        return False
    except Exception as e:  # aiohttp's client-side errors when the peer vanished
        log.debug("greenlm serve: write to the client failed: %s", e)
        return False


def _sse_data(event: bytes) -> bytes | None:
    """The data of one SSE event (``None`` if it has no data field: a comment or keep-alive)."""
    parts = []
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            v = line[5:]
            parts.append(v[1:] if v.startswith(b" ") else v)
    if not parts:
        return None
    return b"\n".join(parts).strip()
