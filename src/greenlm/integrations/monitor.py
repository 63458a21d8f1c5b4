"""Live energy of deployed inference: per request, per token, in Prometheus and the run store.

Two ways in (extra ``monitor``):

* ``monitored = greenlm.monitor(model.generate, model="gpt2", tokens=count)``: a plain
  wrapper (sync or async, also usable as ``@greenlm.monitor(model="gpt2")``);
* ``app.add_middleware(GreenlmMiddleware, model="minilm")``: ASGI middleware for FastAPI /
  Starlette. It serves ``/metrics`` (Prometheus text format), starts measuring at the app's
  start-up and closes the deployment's run at shutdown. An endpoint reports the tokens it
  produced with :func:`add_tokens`.

Both feed one :class:`Monitor` per process (:func:`get_monitor`; configure it once with
:func:`configure`): it owns an :class:`~greenlm.EnergyTracker` window that is the
deployment's run, and attributes the measured energy to requests.

Attribution rule (conserves energy)
-----------------------------------
The tracker gives the cumulative IT energy ``E(t)`` of the process (linear between samples).
Request start and end times cut the timeline into segments. The energy of a segment,
``E(b) - E(a)``, is split equally among the requests in flight during it; when none is in
flight it is *idle* energy. So overlapping requests share the power measured while they
overlap, each in proportion to its time in flight, and over any window::

    sum(request energies) + idle energy == E(end) - E(start)   (the measured total)

exactly (up to float rounding). A request's energy is final once the tracker has sampled past
its end (at most ``interval_s`` after it): Prometheus counters and the request histogram are
updated then; requests still in flight when the window closes are cut there
(``RequestEnergy.complete`` is False). Energy per token is a request's energy divided by the
tokens it reported.

Prometheus (``prometheus-client``, the default registry unless one is given)
---------------------------------------------------------------------------
``greenlm_energy_joules_total`` and ``greenlm_co2e_grams_total`` (counters; idle energy under
``route="_idle"``, so the sum over labels is the measured total), ``greenlm_power_watts``
(gauge per ``device``), ``greenlm_request_energy_joules`` (histogram), ``greenlm_tokens_total``;
labels ``model`` and ``route``. Label values from user input are sanitised: characters outside
``[A-Za-z0-9_.:/{}-]`` become ``_``, at most 64 characters, and at most 100 distinct values per
label per process (later ones read ``_other``). Unmatched paths are ``_unmatched``; a matched
Starlette / FastAPI route is labelled by its template (``/items/{id}``), never the raw path.

Run store roll-up
-----------------
The deployment is one run (``metadata["kind"] == "serving"``): the tracker flushes its totals
every ``flush_interval_s``, and every ``window_s`` (default 300 s) the monitor saves the run
with ``metadata["serving"]``: totals (requests, tokens, request and idle energy, energy per
request and per token, per route) and the last ``keep_windows`` rolling windows, so the
dashboard and the estimator's calibration can read serving energy while it runs.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextvars
import dataclasses
import functools
import inspect
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from greenlm.carbon.accounting import account
from greenlm.errors import ConfigError
from greenlm.integrations._extras import require
from greenlm.tracking.result import RunResult

log = logging.getLogger(__name__)

#: Buckets of the per-request energy histogram, in joules.
ENERGY_BUCKETS_J = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)
IDLE_ROUTE = "_idle"
UNMATCHED_ROUTE = "_unmatched"
OTHER_LABEL = "_other"
MAX_LABEL_CHARS = 64
MAX_LABEL_VALUES = 100

_LABEL_BAD = re.compile(r"[^A-Za-z0-9_.:/{}\-]")


def sanitize_label(value: object, max_chars: int = MAX_LABEL_CHARS) -> str:
    """A Prometheus label value safe to expose: allowed characters only, bounded length."""
    s = _LABEL_BAD.sub("_", str(value))[:max_chars]
    return s or "_"


class LabelGuard:
    """Sanitises label values and caps how many distinct ones a label may take (shared with
    ``greenlm serve``'s proxy, :mod:`greenlm.serving.metrics`).
    """

    def __init__(self, max_values: int = MAX_LABEL_VALUES) -> None:
        self.max_values = max_values
        self._seen: dict[str, set[str]] = collections.defaultdict(set)
        self._lock = threading.Lock()

    def __call__(self, label: str, value: object) -> str:
        v = sanitize_label(value)
        with self._lock:
            seen = self._seen[label]
            if v in seen:
                return v
            if len(seen) >= self.max_values:
                return OTHER_LABEL
            seen.add(v)
            return v


@dataclass(frozen=True)
class RequestEnergy:
    """The energy attributed to one request."""

    request_id: int
    model: str
    route: str
    started_s: float  # seconds since the deployment's window opened
    duration_s: float
    energy_j: float
    co2e_g: float
    tokens: int
    complete: bool = True  # False: still in flight when the window closed (cut there)

    @property
    def energy_per_token_j(self) -> float | None:
        return self.energy_j / self.tokens if self.tokens else None


class _Req:
    """A request in flight (mutable; owned by the monitor's lock)."""

    __slots__ = ("energy_j", "id", "model", "route", "t0", "t1", "tokens")

    def __init__(self, rid: int, model: str, route: str, t0: float) -> None:
        self.id, self.model, self.route, self.t0 = rid, model, route, t0
        self.t1: float | None = None
        self.energy_j = 0.0
        self.tokens = 0


class PromMetrics:
    """greenlm's Prometheus metrics in one registry (created once per registry)."""

    def __init__(self, registry: Any) -> None:
        pc = _prometheus()
        labels = ("model", "route")
        self.registry = registry
        self.energy = pc.Counter(
            "greenlm_energy_joules",
            "IT energy attributed to requests (route _idle: while none was in flight), in joules",
            labels,
            registry=registry,
        )
        self.co2e = pc.Counter(
            "greenlm_co2e_grams", "CO2e of that energy (grid intensity x PUE), in grams", labels, registry=registry
        )
        self.power = pc.Gauge(
            "greenlm_power_watts", "IT power over the last sampling interval, in watts", ("device",), registry=registry
        )
        self.request_energy = pc.Histogram(
            "greenlm_request_energy_joules",
            "Energy attributed to one request, in joules",
            labels,
            buckets=ENERGY_BUCKETS_J,
            registry=registry,
        )
        self.tokens = pc.Counter("greenlm_tokens", "Tokens produced by requests", labels, registry=registry)


_METRICS: dict[int, PromMetrics] = {}
_METRICS_LOCK = threading.Lock()


def metrics_for(registry: Any = None) -> PromMetrics:
    """The metrics registered in ``registry`` (default: prometheus_client's REGISTRY)."""
    pc = _prometheus()
    reg = registry if registry is not None else pc.REGISTRY
    with _METRICS_LOCK:
        m = _METRICS.get(id(reg))
        if m is None or m.registry is not reg:
            m = _METRICS[id(reg)] = PromMetrics(reg)
        return m


def _prometheus() -> Any:
    return require("prometheus_client", feature="greenlm.monitor", extra="monitor", package="prometheus-client")


class Monitor:
    """Attributes a process's measured energy to the requests it serves.

    ``model``: default ``model`` label; ``deployment``: name stored with the run (default
    ``host:pid``); ``registry``: Prometheus registry (default: the global one, ``False`` for
    none); ``window_s`` / ``keep_windows``: roll-up windows saved with the run;
    ``on_request``: called with each :class:`RequestEnergy` once final (from the sampling
    thread: keep it quick); ``idle_route``: the ``route`` label of energy measured while no
    request was in flight. Other keyword arguments are ``EnergyTracker`` settings
    (``project``, ``location``, ``interval_s``, ``store``, ``meters``, ...).

    Use one monitor per process: every monitor attributes the whole process's energy.
    """

    def __init__(
        self,
        *,
        model: str = "",
        deployment: str | None = None,
        registry: Any = None,
        window_s: float = 300.0,
        keep_windows: int = 288,
        on_request: Callable[[RequestEnergy], None] | None = None,
        keep_requests: int = 10000,
        idle_route: str = IDLE_ROUTE,
        **tracker_kwargs: Any,
    ) -> None:
        from greenlm._validate import finite

        finite("window_s", window_s, minimum=0.0, strict=True)
        if keep_windows < 0 or keep_requests < 0:
            raise ConfigError("keep_windows and keep_requests must be >= 0.")
        self._labels = LabelGuard()
        self.model = self._labels("model", model) if model else "_"
        self.deployment = deployment or f"{socket.gethostname()}:{os.getpid()}"
        self.metrics = metrics_for(registry) if registry is not False else None
        self.idle_route = sanitize_label(idle_route)
        self.window_s = float(window_s)
        self.keep_windows = keep_windows
        self.on_request = on_request
        self._store_arg = tracker_kwargs.get("store")
        meta = {**dict(tracker_kwargs.pop("metadata", None) or {}), "kind": "serving", "deployment": self.deployment}
        from greenlm.tracking.tracker import EnergyTracker

        listeners = [*tracker_kwargs.pop("listeners", ()), self]
        # a deployment is one process's run, even when a multi-rank launcher started it
        tracker_kwargs.setdefault("distributed", False)
        self.tracker = EnergyTracker(**tracker_kwargs, metadata=meta, listeners=listeners)
        self._lock = threading.RLock()
        self._events: list[tuple[float, bool, _Req]] = []
        self._active: list[_Req] = []
        self._next_id = 0
        self._closing = False
        self._g_per_j = 0.0
        self.recent: collections.deque[RequestEnergy] = collections.deque(maxlen=keep_requests)
        self.windows: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep_windows)
        self._reset_totals()

    def _reset_totals(self) -> None:
        self._cursor = 0.0
        self._cursor_e = 0.0
        self.requests = 0
        self.tokens = 0
        self.requests_energy_j = 0.0
        self.idle_energy_j = 0.0
        self._routes: dict[tuple[str, str], list[float]] = {}
        self._win = self._new_window(0.0, 0.0)

    # ----------------------------------------------------------------- lifecycle
    @property
    def running(self) -> bool:
        return bool(self.tracker.running)

    def start(self) -> Monitor:
        """Open the deployment's window (idempotent; the first request does it if needed)."""
        with self._lock:
            if not self.tracker.running:
                self._closing = False
                self.tracker.start()
                atexit.register(self._atexit)
        return self

    def close(self) -> RunResult:
        """Close the window: settle every request, store the run with its serving summary."""
        with self._lock:
            self._closing = True
        result = self.tracker.stop()  # on_stop settles up to the last sample
        with self._lock:
            result = dataclasses.replace(result, metadata={**result.metadata, "serving": self.summary()})
        self._save(result)
        atexit.unregister(self._atexit)
        return result

    def _atexit(self) -> None:
        if self.tracker.running:
            try:
                self.close()
            except Exception as e:  # pragma: no cover - interpreter shutdown
                log.debug("greenlm monitor close at exit failed: %s", e)

    # ----------------------------------------------------------------- requests (hot path)
    def begin(self, model: str | None = None, route: str = "") -> _Req:
        """A request starts now; pass the returned handle to :meth:`end`."""
        if not self.tracker.running:
            self.start()
        m = self.model if model is None else self._labels("model", model)
        with self._lock:
            self._next_id += 1
            r = _Req(self._next_id, m, route, time.monotonic())
            self._events.append((r.t0, True, r))
        return r

    def end(self, req: _Req, *, tokens: int = 0, route: str | None = None) -> None:
        """The request ``req`` has finished now (its response fully sent)."""
        if route is not None:
            req.route = route
        with self._lock:
            req.tokens += int(tokens)
            req.t1 = time.monotonic()
            self._events.append((req.t1, False, req))

    # ----------------------------------------------------------------- tracker listener
    def on_start(self, tracker: Any) -> None:
        with self._lock:
            self._events.clear()
            self._active.clear()
            self.recent.clear()
            self.windows.clear()
            self._reset_totals()
            self._cursor = float(tracker.started_monotonic)
            self._win = self._new_window(0.0, 0.0)
            self._g_per_j = account(1.0, tracker.carbon).co2e_g

    def on_sample(self, tracker: Any, t_s: float, powers_w: dict[str, float]) -> None:
        m = self.metrics
        if m is not None:
            for device, p in powers_w.items():
                m.power.labels(device=sanitize_label(device)).set(p)
        with self._lock:
            self._settle(tracker.started_monotonic + t_s)
            if t_s - self._win["start_s"] >= self.window_s and not self._closing:
                self._roll(t_s)
                snapshot = self._snapshot()
            else:
                snapshot = None
        if snapshot is not None:
            self._save(snapshot)

    def on_stop(self, result: RunResult) -> None:
        with self._lock:
            t0 = float(self.tracker.started_monotonic or 0.0)
            self._settle(t0 + result.duration_s, final=True)
            if self._win["end_s"] is None and result.duration_s > self._win["start_s"]:
                self._roll(result.duration_s)

    # ----------------------------------------------------------------- attribution
    def _settle(self, t_abs: float, final: bool = False) -> None:
        """Split the energy measured up to ``t_abs`` among the requests in flight (lock held)."""
        energy_at = self.tracker.energy_at
        e_prev, cursor = self._cursor_e, self._cursor
        n_done = 0
        finished: list[_Req] = []
        for t, starts, req in self._events:
            if t > t_abs:
                break
            n_done += 1
            if t > cursor:
                e = energy_at(t)
                self._share(e - e_prev)
                e_prev, cursor = e, t
            if starts:
                self._active.append(req)
            else:
                self._active.remove(req)
                finished.append(req)
        del self._events[:n_done]
        if t_abs > cursor:
            e = energy_at(t_abs)
            self._share(e - e_prev)
            e_prev, cursor = e, t_abs
        self._cursor_e, self._cursor = e_prev, cursor
        for req in finished:
            self._finish(req, complete=True)
        if final:
            for req in self._active:
                req.t1 = t_abs
                self._finish(req, complete=False)
            self._active.clear()
            self._events.clear()

    def _share(self, energy_j: float) -> None:
        if energy_j <= 0.0:
            return
        active = self._active
        if not active:
            self.idle_energy_j += energy_j
            self._win["idle_energy_j"] += energy_j
            if self.metrics is not None:
                lab = {"model": self.model, "route": self.idle_route}
                self.metrics.energy.labels(**lab).inc(energy_j)
                self.metrics.co2e.labels(**lab).inc(energy_j * self._g_per_j)
            return
        part = energy_j / len(active)
        for r in active:
            r.energy_j += part
        self._win["requests_energy_j"] += energy_j

    def _finish(self, req: _Req, complete: bool) -> None:
        route = self._labels("route", req.route or "_")
        t0 = self.tracker.started_monotonic or req.t0
        rec = RequestEnergy(
            req.id,
            req.model,
            route,
            req.t0 - t0,
            (req.t1 or req.t0) - req.t0,
            req.energy_j,
            req.energy_j * self._g_per_j,
            req.tokens,
            complete,
        )
        self.requests += 1
        self.tokens += req.tokens
        self.requests_energy_j += req.energy_j
        agg = self._routes.setdefault((req.model, route), [0, 0, 0.0])
        agg[0] += 1
        agg[1] += req.tokens
        agg[2] += req.energy_j
        self._win["requests"] += 1
        self._win["tokens"] += req.tokens
        self.recent.append(rec)
        m = self.metrics
        if m is not None:
            lab = {"model": req.model, "route": route}
            m.energy.labels(**lab).inc(req.energy_j)
            m.co2e.labels(**lab).inc(rec.co2e_g)
            m.request_energy.labels(**lab).observe(req.energy_j)
            if req.tokens:
                m.tokens.labels(**lab).inc(req.tokens)
        if self.on_request is not None:
            try:
                self.on_request(rec)
            except Exception as e:
                log.debug("greenlm monitor on_request callback failed: %s", e)

    # ----------------------------------------------------------------- roll-up
    @staticmethod
    def _new_window(start_s: float, energy0_j: float) -> dict[str, Any]:
        return {
            "start_s": start_s,
            "end_s": None,
            "energy0_j": energy0_j,
            "requests": 0,
            "tokens": 0,
            "requests_energy_j": 0.0,
            "idle_energy_j": 0.0,
        }

    def _roll(self, t_s: float) -> None:
        w = self._win
        total = self._cursor_e
        energy = total - w.pop("energy0_j")
        w["end_s"] = t_s
        w["energy_j"] = energy
        w["co2e_g"] = energy * self._g_per_j
        w["energy_per_request_j"] = energy / w["requests"] if w["requests"] else None
        w["energy_per_token_j"] = energy / w["tokens"] if w["tokens"] else None
        self.windows.append(w)
        self._win = self._new_window(t_s, total)

    def summary(self) -> dict[str, Any]:
        """What the run store keeps as ``metadata["serving"]``."""
        with self._lock:
            attributed = self.requests_energy_j
            return {
                "deployment": self.deployment,
                "model": self.model,
                "rule": "segment energy split equally among requests in flight; idle otherwise",
                "measured_energy_j": self._cursor_e,
                "requests": self.requests,
                "tokens": self.tokens,
                "requests_energy_j": attributed,
                "idle_energy_j": self.idle_energy_j,
                "in_flight_energy_j": sum(r.energy_j for r in self._active),
                "energy_per_request_j": attributed / self.requests if self.requests else None,
                "energy_per_token_j": attributed / self.tokens if self.tokens else None,
                "routes": [
                    {"model": m, "route": r, "requests": int(a[0]), "tokens": int(a[1]), "energy_j": a[2]}
                    for (m, r), a in sorted(self._routes.items())
                ],
                "window_s": self.window_s,
                "windows": list(self.windows),
            }

    def _snapshot(self) -> RunResult | None:
        """The run so far, with the serving summary (lock held)."""
        if not self.tracker.running:
            return None
        self.tracker.set_metadata(serving=self.summary())
        self.tracker.start()  # nested: stop() returns the result so far without closing
        return self.tracker.stop()

    def _save(self, result: RunResult | None) -> None:
        arg = self._store_arg
        if result is None or arg is False or (arg is not None and not isinstance(arg, str)):
            return
        try:
            from greenlm.store import open_store

            open_store(self.tracker.config.store).save_result(result)
        except Exception as e:
            log.warning("greenlm monitor: could not save the serving roll-up: %s", e)

    # ----------------------------------------------------------------- metrics endpoint
    def serve_metrics(self, port: int = 9464, addr: str = "127.0.0.1") -> Any:
        """Serve ``/metrics`` on ``addr:port`` from a background thread (a sidecar endpoint)."""
        from greenlm import limits

        port = limits.port("port", port)
        addr = limits.text("addr", addr, limits.HOST_CHARS)
        pc = _prometheus()
        if self.metrics is None:
            raise ConfigError("This monitor has no Prometheus registry (registry=False).")
        self.start()
        return pc.start_http_server(port, addr=addr, registry=self.metrics.registry)


# --------------------------------------------------------------------------- process default
_DEFAULT: Monitor | None = None
_DEFAULT_LOCK = threading.Lock()
_CURRENT: contextvars.ContextVar[_Req | None] = contextvars.ContextVar("greenlm_request", default=None)


def configure(**settings: Any) -> Monitor:
    """Create the process's monitor with ``settings`` (see :class:`Monitor`); once only."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is not None and _DEFAULT.running:
            raise ConfigError(
                "The greenlm monitor of this process is already running; "
                "configure() must come before the first monitored request."
            )
        _DEFAULT = Monitor(**settings)
        return _DEFAULT


def get_monitor() -> Monitor:
    """The process's monitor (created with default settings on first use)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = Monitor()
        return _DEFAULT


def add_tokens(n: int) -> None:
    """Report ``n`` tokens produced by the request being served (no-op outside one)."""
    req = _CURRENT.get()
    if req is not None:
        req.tokens += int(n)


def monitor(
    fn: Callable[..., Any] | None = None,
    *,
    model: str | None = None,
    route: str | None = None,
    tokens: Callable[[Any], int] | None = None,
    monitor: Monitor | None = None,
) -> Any:
    """Wrap ``fn`` so that each call is a monitored request.

    ``tokens(result)`` counts the tokens a call produced (or call :func:`add_tokens` inside);
    ``route`` defaults to the function's qualified name. Works on sync and async functions,
    directly (``greenlm.monitor(model.generate)``) or as a decorator
    (``@greenlm.monitor(model="gpt2")``). The wrapper's ``.monitor`` is the monitor used.
    A request ends when the call returns: for a streaming generator, wrap the code that
    consumes it (or use the ASGI middleware, which ends a request with its last body chunk).
    """
    _check_monitor_args(fn, model, route, tokens, monitor)
    if fn is None:
        return functools.partial(_wrap, model=model, route=route, tokens=tokens, mon=monitor)
    return _wrap(fn, model=model, route=route, tokens=tokens, mon=monitor)


def _check_monitor_args(fn: object, model: object, route: object, tokens: object, mon: object) -> None:
    """Refuse a wrong argument of :func:`monitor` where it is given, not at the first request."""
    from greenlm import limits

    if fn is not None and not callable(fn):
        raise ConfigError(f"greenlm.monitor wraps a function; got {type(fn).__name__} {fn!r:.60}.")
    if model is not None:
        limits.text("model", model, 256, allow_empty=True, hint=" Give the model's label, e.g. model='gpt2'.")
    if route is not None:
        limits.text("route", route, 256, hint=" Give the route's label, e.g. route='/v1/chat'.")
    if tokens is not None and not callable(tokens):
        raise ConfigError(f"tokens must be a function of the result returning its token count; got {tokens!r:.60}.")
    if mon is not None and not isinstance(mon, Monitor):
        raise ConfigError(f"monitor must be a greenlm Monitor (greenlm.Monitor(...)); got {type(mon).__name__}.")


def _wrap(
    fn: Callable[..., Any],
    *,
    model: str | None,
    route: str | None,
    tokens: Callable[[Any], int] | None,
    mon: Monitor | None,
) -> Any:
    m = mon or get_monitor()
    r = str(route or getattr(fn, "__qualname__", None) or getattr(fn, "__name__", "call"))

    def _count(out: Any) -> int:
        if tokens is None:
            return 0
        try:
            return int(tokens(out))
        except Exception as e:
            log.debug("greenlm monitor: token count failed: %s", e)
            return 0

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def awrapper(*args: Any, **kwargs: Any) -> Any:
            req = m.begin(model, r)
            tok = _CURRENT.set(req)
            n = 0
            try:
                out = await fn(*args, **kwargs)
                n = _count(out)
                return out
            finally:
                _CURRENT.reset(tok)
                m.end(req, tokens=n)

        awrapper.monitor = m  # type: ignore[attr-defined]
        return awrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        req = m.begin(model, r)
        tok = _CURRENT.set(req)
        n = 0
        try:
            out = fn(*args, **kwargs)
            n = _count(out)
            return out
        finally:
            _CURRENT.reset(tok)
            m.end(req, tokens=n)

    wrapper.monitor = m  # type: ignore[attr-defined]
    return wrapper


# --------------------------------------------------------------------------- ASGI
class GreenlmMiddleware:
    """ASGI middleware: every HTTP request is a monitored request; serves ``metrics_path``.

    ``app.add_middleware(GreenlmMiddleware, model="minilm")``. ``monitor``: the monitor to
    feed (default: the process's, :func:`get_monitor`); ``metrics_path``: where to serve the
    Prometheus text format (``None`` to serve it elsewhere, e.g. ``monitor.serve_metrics()``).
    The app's lifespan start-up opens the deployment's run; its shutdown closes and stores it.
    """

    def __init__(
        self,
        app: Any,
        monitor: Monitor | None = None,
        *,
        model: str | None = None,
        metrics_path: str | None = "/metrics",
    ) -> None:
        self.app = app
        self.monitor = monitor or get_monitor()
        self.model = model
        self.metrics_path = metrics_path

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope.get("type")
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if kind != "http":
            await self.app(scope, receive, send)
            return
        if self.metrics_path is not None and scope.get("path") == self.metrics_path:
            await self._serve_metrics(send)
            return
        req = self.monitor.begin(self.model)
        tok = _CURRENT.set(req)
        try:
            await self.app(scope, receive, send)
        finally:
            _CURRENT.reset(tok)
            self.monitor.end(req, route=route_label(scope))

    async def _lifespan(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        mon = self.monitor

        async def send_wrapper(message: dict[str, Any]) -> None:
            t = message.get("type")
            if t == "lifespan.startup.complete":
                mon.start()
            elif t == "lifespan.shutdown.complete" and mon.running:
                await asyncio.to_thread(mon.close)
            await send(message)

        await self.app(scope, receive, send_wrapper)

    async def _serve_metrics(self, send: Any) -> None:
        pc = _prometheus()
        m = self.monitor.metrics
        body = pc.generate_latest(m.registry) if m is not None else b""
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", pc.CONTENT_TYPE_LATEST.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


def route_label(scope: dict[str, Any]) -> str:
    """The route template Starlette / FastAPI matched, ``_unmatched`` if none (never the raw
    path: unbounded label values would blow up Prometheus).
    """
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    if "endpoint" in scope:  # another router: endpoint known, template not
        ep = scope["endpoint"]
        return str(getattr(ep, "__qualname__", None) or getattr(ep, "__name__", "endpoint"))
    return UNMATCHED_ROUTE
