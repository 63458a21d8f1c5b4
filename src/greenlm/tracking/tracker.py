"""EnergyTracker: a measuring window over a block of code, with phases and steps.

``with EnergyTracker(...) as t:``, ``t.start()`` / ``t.stop()``, or ``@EnergyTracker(...)``
(reentrant: nested calls of a decorated function share the outermost window).

How energy becomes per-phase and per-step figures: a background thread reads every meter at
``interval_s`` and keeps the cumulative energy at each sample time. Phases and steps only
record timestamps on the hot path (no meter reads). When the window closes, each phase gets
``E(t_exit) - E(t_enter)`` where ``E`` is the cumulative energy interpolated linearly
between samples. Phases shorter than the interval thus get a time-proportional share of the
surrounding interval: the resolution of per-phase energy is the sampling interval.
"""

from __future__ import annotations

import atexit
import bisect
import contextlib
import datetime as dt
import functools
import itertools
import logging
import os
import socket
import sys
import threading
import time
import uuid
import weakref
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from greenlm.carbon.accounting import CarbonConfig, account
from greenlm.config import TrackerConfig
from greenlm.errors import ConfigError, ResultNotReadyError
from greenlm.meters.base import Meter, weakest
from greenlm.tracking._signals import redeliver_sigterm, restore_sigterm, take_sigterm
from greenlm.tracking.result import ComponentEnergy, PhaseEnergy, RunResult, TimelinePoint, totals_from_components
from greenlm.tracking.sink import Progress, RunSink, RunStart, SampleRow

if TYPE_CHECKING:
    from greenlm.estimate.forecast import StepForecaster

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: Points kept in ``RunResult.timeline`` (the store keeps every sample).
TIMELINE_POINTS = 600


@dataclass
class _Slot:
    """One component's meter, and what is carried over if it had to fall back."""

    meter: Meter
    offset_j: float = 0.0
    offset_low_j: float = 0.0
    offset_high_j: float = 0.0
    last_j: float = 0.0
    provenances: list[str] = field(default_factory=list)
    failed: bool = False

    def bounds_j(self) -> tuple[float, float]:
        lo, hi = self.meter.bounds_j(self.last_j - self.offset_j)
        return self.offset_low_j + lo, self.offset_high_j + hi


class EnergyTracker:
    """Measure the energy, CO2e and cost of the code inside the window."""

    def __init__(
        self,
        project: str | None = None,
        *,
        location: str | None = None,
        pue: float | None = None,
        pue_setting: str | None = None,
        price_per_kwh: float | None = None,
        currency: str | None = None,
        interval_s: float | None = None,
        flush_interval_s: float | None = None,
        store: Any = None,
        meters: Sequence[Meter] | None = None,
        metadata: dict[str, Any] | None = None,
        total_steps: int | None = None,
        warmup_steps: int = 1,
        pid: int | None = None,
        cpu_tdp_w: float | None = None,
        attribution: str | None = None,
        gpus: bool | None = None,
        tensorboard_dir: str | None = None,
        listeners: Sequence[Any] = (),
        server: str | None = None,
        token: str | None = None,
        config: TrackerConfig | None = None,
        handle_signals: bool = True,
        sync_cuda: bool = True,
    ) -> None:
        self.config = config or TrackerConfig.resolve(
            project=project,
            location=location,
            pue=pue,
            pue_setting=pue_setting,
            price_per_kwh=price_per_kwh,
            currency=currency,
            interval_s=interval_s,
            flush_interval_s=flush_interval_s,
            store=store if isinstance(store, str) else None,
            cpu_tdp_w=cpu_tdp_w,
            attribution=attribution,
            gpus=gpus,
            tensorboard_dir=tensorboard_dir,
            metadata=dict(metadata or {}) or None,
        )
        c = self.config
        self.carbon = CarbonConfig.build(
            location=c.location,
            pue=c.pue,
            pue_setting=c.pue_setting,
            price_per_kwh=c.price_per_kwh,
            currency=c.currency,
        )
        if total_steps is not None and (not isinstance(total_steps, int) or total_steps <= 0):
            raise ConfigError(f"total_steps must be a positive integer, got {total_steps!r}.")
        if not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be an integer >= 0, got {warmup_steps!r}.")
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self._store_arg = store
        self._given_meters = list(meters) if meters is not None else None
        self._pid = pid
        self._listeners = list(listeners)
        if self.config.tensorboard_dir:
            from greenlm.integrations.tensorboard import TensorBoardListener

            self._listeners.append(TensorBoardListener(self.config.tensorboard_dir))
        self._server = server or os.environ.get("GREENLM_SERVER") or None
        self._token = token or os.environ.get("GREENLM_TOKEN") or None
        self._handle_signals = handle_signals
        self._sync_cuda = sync_cuda
        self.metadata: dict[str, Any] = dict(c.metadata)
        self._lock = threading.RLock()
        self._depth = 0
        self._result: RunResult | None = None
        self._running = False
        self._tls = threading.local()
        self._intervals: list[tuple[str, float, float, int]] = []
        self.forecast: dict[str, Any] | None = None

    # ----------------------------------------------------------------- public API
    @property
    def result(self) -> RunResult:
        """The frozen result of the last closed window."""
        if self._result is None or self._running:
            raise ResultNotReadyError(
                "EnergyTracker.result is only available after the window closed "
                "(after the `with` block, the decorated call, or stop())."
            )
        return self._result

    @property
    def run_id(self) -> str | None:
        """Id of the current (or last) run."""
        return getattr(self, "_run_id", None)

    @property
    def running(self) -> bool:
        return self._running

    @property
    def steps(self) -> int:
        """Steps marked so far in the current (or last) window."""
        return getattr(self, "_steps", 0)

    @property
    def meters(self) -> list[Meter]:
        """The meters of the current (or last) window."""
        return [s.meter for s in getattr(self, "_slots", [])]

    @property
    def started_monotonic(self) -> float | None:
        """``time.monotonic()`` at the window's start."""
        return getattr(self, "_t0", None)

    def energy_at(self, t_monotonic: float) -> float:
        """Cumulative IT energy (J) of the window at ``time.monotonic()`` value ``t_monotonic``.

        Linear between samples, clamped to the samples taken so far; energy between two
        instants is ``energy_at(b) - energy_at(a)`` (used to attribute energy to requests).
        """
        with self._lock:
            return self._energy_at(t_monotonic)

    def energy_j_so_far(self) -> float:
        """IT energy up to the latest sample."""
        return self._total[-1] if getattr(self, "_total", None) else 0.0

    def set_metadata(self, **items: Any) -> None:
        """Record facts about the workload (``params``, ``tokens``, ``hardware``...) with the run."""
        self.metadata.update(items)

    def start(self, *, pid: int | None = None) -> EnergyTracker:
        """Open the window (no-op while one is open: nested use shares the outer window).

        ``pid`` attributes CPU energy to that process tree instead of the one given when the
        tracker was built (for a command spawned after the tracker was configured, as
        ``greenlm track`` does).
        """
        if pid is not None and (not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0):
            raise ConfigError(f"pid must be a positive process id, got {pid!r}.")
        with self._lock:
            self._depth += 1
            if self._depth > 1:
                return self
            if pid is not None:
                self._pid = pid
            self._open()
        return self

    def stop(self, status: str = "completed", error: str | None = None) -> RunResult:
        """Close the window and return its result (inner calls of nested use return the
        result so far without closing).

        ``status`` is how the work ended: ``completed``, ``failed`` or ``interrupted``, with
        ``error`` saying why for the last two (a wrapped command's exit code, a signal).
        """
        if status not in _END_STATUSES:
            raise ConfigError(f"status must be one of {', '.join(_END_STATUSES)}, got {status!r}.")
        return self._close(status, error)

    def __enter__(self) -> EnergyTracker:
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self._close("completed", None)
        elif issubclass(exc_type, KeyboardInterrupt):
            self._close("interrupted", "KeyboardInterrupt")
        else:
            self._close("failed", f"{exc_type.__name__}: {exc}")

    def __call__(self, func: F) -> F:
        """Use the tracker as a decorator: each outermost call is one run."""

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return func(*args, **kwargs)

        wrapper.tracker = self  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Attribute the energy of the enclosed block to phase ``name`` (nestable)."""
        if not name or "/" in name:
            raise ConfigError(f"phase name must be non-empty and contain no '/', got {name!r}.")
        stack = self._stack()
        parent = stack[-1][0] if stack else None
        path = f"{parent}/{name}" if parent else name
        t0 = time.monotonic()
        stack.append([path, 0])
        try:
            yield
        finally:
            t1 = time.monotonic()
            _, steps = stack.pop()
            if self._running:
                self._intervals.append((path, t0, t1, steps))

    def step(self, n: int = 1) -> None:
        """Mark ``n`` completed steps (in every open phase of this thread, and the run)."""
        if not self._running:
            return
        for entry in self._stack():
            entry[1] += n
        self._steps += n
        self._step_times.append(time.monotonic())

    # ----------------------------------------------------------------- internals
    def _stack(self) -> list[list[Any]]:
        local = self._tls
        st = getattr(local, "stack", None)
        if st is None:
            st = local.stack = []
        return st  # type: ignore[no-any-return,unused-ignore]

    def _open(self) -> None:
        self._result = None
        self._run_id = uuid.uuid4().hex
        self._warnings: list[str] = list(self.carbon.warnings())
        self._intervals = []
        self._steps = 0
        self._step_times: array[float] = array("d")
        self._forecaster: StepForecaster | None = None  # fed each step once its energy is final
        self._sink: _Tee | None = None
        self._sink_ready = threading.Event()
        self.forecast = None
        _sync_cuda(self._sync_cuda)
        self._slots = [_Slot(m, provenances=[m.provenance]) for m in self._build_meters()]
        self._meter_info = [m.describe() for m in (s.meter for s in self._slots)]
        self._owner_pid = os.getpid()  # a forked child must never close the parent's run
        self._t0 = time.monotonic()
        self._wall0 = dt.datetime.now(dt.timezone.utc)
        for s in list(self._slots):
            try:
                s.meter.start()
            except Exception as e:  # a meter that cannot start is dropped, with a warning
                self._warnings.append(f"{s.meter.name}: failed to start ({e}); not measured")
                self._slots.remove(s)
        self._times: array[float] = array("d", [0.0])
        self._cum: list[array[float]] = [array("d", [0.0]) for _ in self._slots]
        self._total: array[float] = array("d", [0.0])
        self._pending: list[SampleRow] = []
        self._stop_evt = threading.Event()
        self._running = True
        for lst in self._listeners:
            _safe(self._warnings, "listener", getattr(lst, "on_start", None), self)
        threading.Thread(target=self._open_sink, name="greenlm-store", daemon=True).start()
        self._thread = threading.Thread(target=self._loop, name="greenlm-sampler", daemon=True)
        self._thread.start()
        self._install_signals()
        _OPEN.add(self)

    def _build_meters(self) -> list[Meter]:
        if self._given_meters is not None:
            return list(self._given_meters)
        from greenlm.meters.detect import detect

        c = self.config
        det = detect(
            pid=self._pid, rapl_root=c.rapl_root, cpu_tdp_w=c.cpu_tdp_w, attribution=c.attribution, gpus=c.gpus
        )
        self._warnings += det.warnings
        return det.meters

    def _sink_factories(self) -> list[tuple[str, str, Callable[[], RunSink]]]:
        """The run's destinations (local store, team server), each opened on its own:
        (label, what is lost if it cannot be opened, factory).
        """
        unstored = "the result is returned but not stored"
        out: list[tuple[str, str, Callable[[], RunSink]]] = []
        arg = self._store_arg
        if arg is not None and arg is not False and not isinstance(arg, str):
            given: RunSink = arg
            out.append(("run store", unstored, lambda: given))
        elif arg is not False:

            def local() -> RunSink:
                from greenlm.store import StoreSink, open_store

                return StoreSink(open_store(self.config.store))

            out.append(("run store", unstored, local))
        if self._server:
            server, token = self._server, self._token

            def remote() -> RunSink:
                # Team server: runs are buffered locally and retried until the server has them.
                from greenlm.server.client import HttpSink

                return HttpSink(server, token)

            out.append((f"team server {server}", "not sent there", remote))
        return out

    def _open_sink(self) -> None:
        """Open the store and record the run as running (own thread: sampling starts at once).

        Each destination is opened and fed on its own: a local store that cannot be opened
        does not keep the run from the team server, and the other way round.
        """
        try:
            opened: list[tuple[str, RunSink]] = []
            for label, consequence, factory in self._sink_factories():
                try:
                    sink = factory()
                    sink.begin(self._run_start())
                except Exception as e:
                    self._warnings.append(f"{label} unavailable ({e}); {consequence}")
                    log.warning("greenlm: %s unavailable: %s", label, e)
                    continue
                opened.append((label, sink))
            self._sink = _Tee(opened, self._warnings) if opened else None
        except Exception as e:  # never raise into the user's job
            self._warnings.append(f"run store unavailable ({e}); the result is returned but not stored")
            self._sink = None
        finally:
            self._sink_ready.set()

    def _read(self) -> None:
        """Read every meter once (sampling thread, or stop())."""
        now = time.monotonic() - self._t0
        total = 0.0
        for i, s in enumerate(self._slots):
            try:
                e = s.offset_j + s.meter.energy_j()
            except Exception as ex:
                e = self._fail_over(s, ex)
            prev = self._cum[i][-1]
            e = max(e, prev)  # cumulative energy never decreases
            s.last_j = e
            self._cum[i].append(e)
            total += e
            dt_s = now - self._times[-1]
            p = (e - prev) / dt_s if dt_s > 0 else s.meter.last_power_w
            self._pending.append(SampleRow(now, s.meter.name, e, p))
        self._times.append(now)
        self._total.append(total)

    def _fail_over(self, s: _Slot, ex: Exception) -> float:
        """A meter failed mid-run: keep what it measured, switch to its fallback if any."""
        lo, hi = s.bounds_j()
        s.offset_j, s.offset_low_j, s.offset_high_j = s.last_j, lo, hi
        new: Meter | None = None
        try:
            new = s.meter.fallback()
            if new is not None:
                new.start()
        except Exception:
            new = None
        if new is not None:
            self._warnings.append(f"{s.meter.name}: meter failed ({ex}); continued with {new.provenance} readings")
            s.meter = new
            s.provenances.append(new.provenance)
        elif not s.failed:
            self._warnings.append(f"{s.meter.name}: meter failed ({ex}); energy after this point is not counted")
            s.failed = True
            s.meter = _Frozen(s.meter)
        return s.last_j

    def _loop(self) -> None:
        c = self.config
        next_flush = time.monotonic() + c.flush_interval_s
        on_sample = [fn for fn in (getattr(lst, "on_sample", None) for lst in self._listeners) if fn is not None]
        while not self._stop_evt.wait(c.interval_s):
            try:
                with self._lock:
                    if not self._running:
                        break
                    self._read()
                if on_sample:
                    t_s, powers = self._times[-1], self._last_powers()  # once per tick, for every listener
                    for fn in on_sample:
                        _safe(self._warnings, "listener", fn, self, t_s, powers)
                if time.monotonic() >= next_flush:
                    next_flush = time.monotonic() + c.flush_interval_s
                    self._flush()
            except Exception as e:  # never raise into the user's job
                log.debug("greenlm sampler error: %s", e, exc_info=True)

    def _last_powers(self) -> dict[str, float]:
        out: dict[str, float] = {}
        n = len(self._times)
        if n < 2:
            return out
        dt_s = self._times[-1] - self._times[-2]
        for i, s in enumerate(self._slots):
            if dt_s > 0:
                out[s.meter.name] = (self._cum[i][-1] - self._cum[i][-2]) / dt_s
        return out

    def _flush(self) -> None:
        if not self._sink_ready.is_set():  # the store is still opening: keep the rows for later
            with self._lock:
                self._update_forecast()
            return
        with self._lock:
            rows, self._pending = self._pending, []
            progress = self._progress()
            self._update_forecast()
        if self._sink is not None and rows:
            self._sink.flush(self._run_id, rows, progress)  # each destination isolates its own failure

    def _progress(self) -> Progress:
        e = self._total[-1]
        fp = account(e, self.carbon)
        return Progress(
            self._times[-1], e, fp.facility_energy_j, fp.co2e_g, {s.meter.name: s.last_j for s in self._slots}
        )

    def _energy_at(self, t_abs: float) -> float:
        """Cumulative IT energy at monotonic time ``t_abs`` (linear between samples)."""
        t = t_abs - self._t0
        times, total = self._times, self._total
        if t <= times[0]:
            return total[0]
        if t >= times[-1]:
            return total[-1]
        i = bisect.bisect_right(times, t)
        t0, t1 = times[i - 1], times[i]
        e0, e1 = total[i - 1], total[i]
        return e0 + (e1 - e0) * (t - t0) / (t1 - t0) if t1 > t0 else e1

    def _update_forecast(self) -> None:
        """Predict the whole run's energy from the steps so far (needs ``total_steps``)."""
        if self.total_steps is None:
            return
        times = self._step_times
        n = len(times)
        if n < self.warmup_steps + 2 or n > self.total_steps:
            return
        from greenlm.estimate.forecast import StepForecaster

        if self._forecaster is None:
            self._forecaster = StepForecaster(self.warmup_steps)
        fcst = self._forecaster
        # A step's energy is final once a sample was taken after it ended: each step is added
        # once, so a flush costs the same at step 10 and at step 10 million.
        last_sample = self._t0 + self._times[-1]
        try:
            while fcst.steps < n and times[fcst.steps] <= last_sample:
                i = fcst.steps
                a = times[i - 1] if i else self._t0
                fcst.add(max(0.0, self._energy_at(times[i]) - self._energy_at(a)), times[i] - a)
            if fcst.steps < self.warmup_steps + 2:
                return
            fc = fcst.forecast(self.total_steps)
        except Exception as e:
            log.debug("forecast failed: %s", e)
            return
        g_per_j = account(1.0, self.carbon).co2e_g
        d: dict[str, Any] = {
            **fc.to_dict(),
            "co2e_g": fc.energy_j * g_per_j,
            "co2e_low_g": fc.low_j * g_per_j,
            "co2e_high_g": fc.high_j * g_per_j,
            "steps_done": len(times),
            "total_steps": self.total_steps,
        }
        self.forecast = d
        log.info(
            "greenlm forecast: %.0f J (%.3g-%.3g J), %.3g gCO2e for %d steps",
            fc.energy_j,
            fc.low_j,
            fc.high_j,
            d["co2e_g"],
            self.total_steps,
        )

    def _close(self, status: str, error: str | None) -> RunResult:
        with self._lock:
            if self._depth == 0:
                if self._result is not None:
                    return self._result
                raise ResultNotReadyError("stop() called on a tracker that was never started.")
            self._depth -= 1
            if self._depth > 0:
                return self._snapshot("running", None)
            self._stop_evt.set()
        self._thread.join(timeout=max(5.0, 3 * self.config.interval_s))
        _sync_cuda(self._sync_cuda)
        with self._lock:
            self._read()
            self._update_forecast()
            result = self._snapshot(status, error)
            self._running = False
            self._result = result
        self._restore_signals()
        _OPEN.discard(self)
        self._sink_ready.wait(timeout=30)
        if self._sink is not None:
            known = len(self._warnings)
            try:
                rows, self._pending = self._pending, []
                if rows:
                    self._sink.flush(self._run_id, rows, self._progress())
                self._sink.finish(result)
            except Exception as e:
                log.warning("greenlm: could not store run %s: %s", self._run_id, e)
                self._warnings.append(f"run store write failed ({e}); run not stored")
            for w in self._warnings[known:]:  # a destination that failed at the end
                result = _with_warning(result, w)
            self._result = result
        for lst in self._listeners:
            _safe([], "listener", getattr(lst, "on_stop", None), result)
        for s in self._slots:
            with contextlib.suppress(Exception):
                s.meter.close()
        return result

    def _snapshot(self, status: str, error: str | None) -> RunResult:
        duration = self._times[-1]
        comps = []
        for i, s in enumerate(self._slots):
            lo, hi = s.bounds_j()
            e = self._cum[i][-1]
            info = s.meter.describe()
            comps.append(
                ComponentEnergy(
                    name=s.meter.name,
                    kind=s.meter.kind,
                    energy_j=e,
                    provenance=weakest(s.provenances),
                    low_j=min(lo, e),
                    high_j=max(hi, e),
                    scope=str(info.get("scope", "device")),
                    detail=s.meter.band.source,
                )
            )
        totals, g_per_j = totals_from_components(comps, self.carbon)
        return RunResult(
            run_id=self._run_id,
            project=self.config.project,
            status=status,
            started_at=self._wall0.isoformat(),
            ended_at=None if status == "running" else (self._wall0 + dt.timedelta(seconds=duration)).isoformat(),
            duration_s=duration,
            **totals,
            components=tuple(comps),
            phases=self._phases(g_per_j),
            steps=self._steps,
            warnings=tuple(self._warnings),
            timeline=self._timeline(),
            metadata=dict(self.metadata),
            host=socket.gethostname(),
            error=error,
            forecast=self.forecast,
            meters=tuple(self._meter_info),
        )

    def _phases(self, g_per_j: float) -> tuple[PhaseEnergy, ...]:
        agg: dict[str, list[float]] = {}
        first: dict[str, float] = {}
        for path, t0, t1, steps in self._intervals:
            a = agg.get(path)
            if a is None:
                a = agg[path] = [0.0, 0.0, 0.0, 0.0]
            first[path] = min(first.get(path, t0), t0)
            a[0] += self._energy_at(t1) - self._energy_at(t0)
            a[1] += t1 - t0
            a[2] += steps
            a[3] += 1
        out: list[PhaseEnergy] = []

        def visit(parent: str | None) -> None:  # parents first, then children, by start time
            kids = [p for p in agg if (p.rpartition("/")[0] or None) == parent]
            for path in sorted(kids, key=first.__getitem__):
                e, d, st, n = agg[path]
                out.append(
                    PhaseEnergy(
                        name=path.rpartition("/")[2],
                        parent=parent,
                        energy_j=e,
                        duration_s=d,
                        steps=int(st),
                        entries=int(n),
                        co2e_g=e * g_per_j,
                    )
                )
                visit(path)

        visit(None)
        seen = {p.path for p in out}
        for path in sorted(set(agg) - seen, key=first.__getitem__):  # parent still open at stop
            e, d, st, n = agg[path]
            parent, _, name = path.rpartition("/")
            out.append(
                PhaseEnergy(
                    name=name,
                    parent=parent or None,
                    energy_j=e,
                    duration_s=d,
                    steps=int(st),
                    entries=int(n),
                    co2e_g=e * g_per_j,
                )
            )
        return tuple(out)

    def _timeline(self) -> tuple[TimelinePoint, ...]:
        n = len(self._times)
        if n < 2:
            return ()
        stride = max(1, (n - 1 + TIMELINE_POINTS - 1) // TIMELINE_POINTS)
        idx = list(range(0, n, stride))
        if idx[-1] != n - 1:
            idx.append(n - 1)
        pts = []
        for a, b in itertools.pairwise(idx):
            dt_s = self._times[b] - self._times[a]
            if dt_s <= 0:
                continue
            pts.append(
                TimelinePoint(
                    self._times[b],
                    {s.meter.name: (self._cum[i][b] - self._cum[i][a]) / dt_s for i, s in enumerate(self._slots)},
                )
            )
        return tuple(pts)

    def _run_start(self) -> RunStart:
        import psutil

        pid = self._pid or os.getpid()
        try:
            ct = psutil.Process(pid).create_time()
        except psutil.Error:
            ct = 0.0
        return RunStart(
            run_id=self._run_id,
            project=self.config.project,
            started_at=self._wall0.isoformat(),
            pid=pid,
            host=socket.gethostname(),
            process_start_time=ct,
            location=self.carbon.location.to_dict(),
            pue=self.carbon.pue.value,
            metadata=dict(self.metadata),
            meters=[
                {**m, "band": s.meter.band.source, "band_low": s.meter.band.low, "band_high": s.meter.band.high}
                for m, s in zip(self._meter_info, self._slots)
            ],
            pue_source=self.carbon.pue.source,
            price_per_kwh=self.carbon.price.per_kwh,
            currency=self.carbon.price.currency,
            price_source=self.carbon.price.source,
        )

    # ----------------------------------------------------------------- signals
    def _install_signals(self) -> None:
        self._prev_term: Any = take_sigterm(self._on_sigterm) if self._handle_signals else None

    def _restore_signals(self) -> None:
        restore_sigterm(self._prev_term)
        self._prev_term = None

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        prev = self._prev_term
        if os.getpid() == self._owner_pid:
            with contextlib.suppress(Exception):
                self._depth = 1
                self._close("interrupted", "SIGTERM")
        redeliver_sigterm(prev, frame)


class _Tee:
    """Send a run to each of its sinks (local store, team server), isolating their failures.

    A sink that raises is dropped for the rest of the run, with a warning on the result that
    names it; the others keep receiving the run.
    """

    def __init__(self, sinks: list[tuple[str, RunSink]], warnings: list[str]) -> None:
        self.sinks = list(sinks)
        self._warnings = warnings

    def _each(self, what: str, call: Callable[[RunSink], None]) -> None:
        for label, sink in list(self.sinks):
            try:
                call(sink)
            except Exception as e:
                self.sinks.remove((label, sink))
                self._warnings.append(f"{label} write failed ({e}); the run's later {what} are not sent there")
                log.warning("greenlm: %s write failed: %s", label, e)

    def begin(self, run: RunStart) -> None:
        self._each("events", lambda s: s.begin(run))

    def flush(self, run_id: str, samples: list[SampleRow], progress: Progress) -> None:
        self._each("samples", lambda s: s.flush(run_id, samples, progress))

    def finish(self, result: RunResult) -> None:
        self._each("result", lambda s: s.finish(result))


class _Frozen(Meter):
    """Stands in for a failed meter with no fallback: no more energy."""

    def __init__(self, failed: Meter) -> None:
        super().__init__()
        self.name, self.kind, self.provenance, self.band = failed.name, failed.kind, failed.provenance, failed.band

    def start(self) -> None:
        pass

    def energy_j(self) -> float:
        return 0.0

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "failed": True}


def _safe(warnings: list[str], what: str, fn: Callable[..., Any] | None, *args: Any) -> None:
    if fn is None:
        return
    try:
        fn(*args)
    except Exception as e:
        msg = f"{what} {getattr(fn, '__qualname__', fn)} failed: {e}"
        if msg not in warnings:
            warnings.append(msg)


def _sync_cuda(enabled: bool) -> None:
    """Wait for queued CUDA kernels so they are counted in the window they belong to."""
    if not enabled or "torch" not in sys.modules:
        return
    torch = sys.modules["torch"]
    try:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
    except Exception as e:  # pragma: no cover - depends on the CUDA runtime
        log.debug("cuda synchronize failed: %s", e)


_END_STATUSES = ("completed", "failed", "interrupted")


def _with_warning(r: RunResult, w: str) -> RunResult:
    import dataclasses

    return dataclasses.replace(r, warnings=(*r.warnings, w))


# Windows still open when the interpreter exits are closed as interrupted.
_OPEN: weakref.WeakSet[EnergyTracker] = weakref.WeakSet()


@atexit.register
def _close_open_windows() -> None:
    for t in list(_OPEN):
        if getattr(t, "_owner_pid", None) != os.getpid():
            continue  # inherited through fork: the parent owns that run
        with contextlib.suppress(Exception):
            t._depth = 1
            t._close("interrupted", "interpreter exited with the window open")


def track_energy(func: F | None = None, /, **kwargs: Any) -> Any:
    """Decorator form: ``@track_energy`` or ``@track_energy(project="x", location="FRA")``.

    Each outermost call of the decorated function is one run; nested and recursive calls
    share it. The tracker is reachable as ``decorated.tracker`` (``.tracker.result``).
    """
    if func is not None:
        return EnergyTracker()(func)
    tracker = EnergyTracker(**kwargs)
    return tracker
