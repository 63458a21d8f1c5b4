"""EnergyTracker: a measuring window over a block of code, with phases and steps.

``with EnergyTracker(...) as t:``, ``t.start()`` / ``t.stop()``, or ``@EnergyTracker(...)``
(reentrant: nested calls of a decorated function share the outermost window).

This class is the window's life cycle and nothing else: it resolves its configuration
(:class:`~greenlm.config.TrackerConfig`), runs a sampling thread that reads the
:class:`~greenlm.tracking.meterset.MeterSet` every ``interval_s``, feeds the readings to the
pure :class:`~greenlm.tracking.window.Window` (interpolation, phases, steps, forecast,
timeline), hands samples to its destinations (:mod:`greenlm.tracking.destinations`: the run
store, a team server) every ``flush_interval_s`` and tells its listeners
(:mod:`greenlm.tracking.listeners`). Phases and steps record only times on the hot path;
their energy is known once the next sample is taken, so the resolution of per-phase energy
is the sampling interval.
"""

from __future__ import annotations

import atexit
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
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from greenlm import limits
from greenlm.carbon.accounting import CarbonConfig, account
from greenlm.config import TrackerConfig
from greenlm.errors import ConfigError, ResultNotReadyError
from greenlm.meters.base import Meter
from greenlm.tracking import ranks, signals
from greenlm.tracking.destinations import Destinations
from greenlm.tracking.forecast import StepForecaster
from greenlm.tracking.group import GroupMember
from greenlm.tracking.listeners import hooks
from greenlm.tracking.meterset import MeterSet
from greenlm.tracking.result import RunResult, totals_from_components
from greenlm.tracking.sink import Progress, RunSink, RunStart, SampleRow
from greenlm.tracking.window import OpenPhase, Window

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from greenlm.config import TrackerSettings

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

END_STATUSES = ("completed", "failed", "interrupted")
#: How long ``stop()`` waits for the destinations to finish opening. Opening touches no
#: database or network (the store's and server's couriers do that, in the background): it
#: imports the store's code and spools the run's start, which can take seconds only on a
#: machine so loaded that the import is starved. A store that is busy or down does not delay it.
OPEN_WAIT_S = 30.0


class EnergyTracker:
    """Measure the energy, CO2e and cost of the code inside the window.

    Settings (``project``, ``location``, ``interval_s``, ``pue``, ... every field of
    :class:`~greenlm.config.TrackerConfig`) are keyword arguments, or a ``config``; given
    both, the keywords override the config's values (never silently dropped). The other
    arguments are about this window, not settings: ``store`` (a store URL, ``False`` for
    none, or a :class:`~greenlm.tracking.sink.RunSink`), ``meters`` (instead of detecting
    this machine's), ``listeners``, ``total_steps`` / ``warmup_steps`` (the in-run forecast),
    ``pid`` (the process tree to charge), ``handle_signals`` and ``sync_cuda``.
    """

    def __init__(
        self,
        project: str | None = None,
        *,
        config: TrackerConfig | None = None,
        store: Any = None,
        meters: Sequence[Meter] | None = None,
        listeners: Sequence[Any] = (),
        metadata: dict[str, Any] | None = None,
        total_steps: int | None = None,
        warmup_steps: int = 1,
        pid: int | None = None,
        handle_signals: bool = True,
        sync_cuda: bool = True,
        **settings: Unpack[TrackerSettings],
    ) -> None:
        if "tensorboard_dir" in settings:
            raise ConfigError(
                "tensorboard_dir is no longer a tracker setting: TensorBoard is a listener like MLflow. "
                "Use EnergyTracker(listeners=[TensorBoardListener(log_dir)]) with "
                "`from greenlm.integrations.tensorboard import TensorBoardListener`."
            )
        given: dict[str, Any] = dict(settings)
        given["project"] = project
        if isinstance(store, (str, os.PathLike)):
            given["store"] = os.fspath(store)
        if metadata is not None:
            if not isinstance(metadata, dict):
                raise ConfigError(f"metadata must be a dict of names to values, got {type(metadata).__name__}.")
            given["metadata"] = dict(metadata)
        self.config = config.merged(**given) if config is not None else TrackerConfig.resolve(**given)
        c = self.config
        self.carbon = CarbonConfig.build(
            location=c.location,
            pue=c.pue,
            pue_setting=c.pue_setting,
            price_per_kwh=c.price_per_kwh,
            currency=c.currency,
        )
        if total_steps is not None and (
            isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps <= 0
        ):
            raise ConfigError(f"total_steps must be a positive integer, got {total_steps!r}.")
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be an integer >= 0, got {warmup_steps!r}.")
        if pid is not None:
            _check_pid(pid)
        custom = store is not None and store is not False and not isinstance(store, (str, os.PathLike))
        if custom and not all(callable(getattr(store, m, None)) for m in ("begin", "flush", "finish")):
            raise ConfigError(
                "store must be a store URL, False, or a RunSink (with begin, flush and finish), "
                f"got {type(store).__name__}."
            )
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self._store_arg = store
        self._given_meters = list(meters) if meters is not None else None
        self._pid = pid
        self._listeners = list(listeners)
        self._handle_signals = handle_signals
        self._sync_cuda = sync_cuda
        self.metadata: dict[str, Any] = dict(c.metadata)
        self._lock = threading.RLock()
        self._depth = 0
        self._result: RunResult | None = None
        self._running = False
        self._tls = threading.local()
        self._window: Window | None = None
        self._meterset: MeterSet | None = None
        self._run_id: str | None = None
        self._destinations: Destinations | None = None
        self._member: GroupMember | None = None  # one rank of a distributed run (tracking/group.py)
        self._closing = False
        self._held_signal: int | None = None
        self._keys = itertools.count()
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
        return self._run_id

    @property
    def running(self) -> bool:
        return self._running

    @property
    def steps(self) -> int:
        """Steps marked so far in the current (or last) window."""
        return self._window.steps if self._window is not None else 0

    @property
    def meters(self) -> list[Meter]:
        """The meters of the current (or last) window."""
        return self._meterset.meters if self._meterset is not None else []

    @property
    def started_monotonic(self) -> float | None:
        """``time.monotonic()`` at the window's start."""
        return getattr(self, "_t0", None)

    @property
    def delivery(self) -> list[dict[str, Any]]:
        """Where the last run went: per destination, ``stored``, ``waiting`` (spooled on disk,
        written when the destination is back) or ``failed``, with details. For one rank of a
        distributed run: where this node's part went at its last send.
        """
        if self._member is not None:
            return self._member.report()
        return self._destinations.report() if self._destinations is not None else []

    @property
    def distributed(self) -> dict[str, Any] | None:
        """Where this window sits in a distributed run (``metadata["distributed"]`` of the
        result: group run id, rank, world size, node...), or ``None`` for a run of one process.
        """
        return dict(self._member.metadata()) if self._member is not None else None

    def energy_at(self, t_monotonic: float) -> float:
        """Cumulative IT energy (J) of the window at ``time.monotonic()`` value ``t_monotonic``.

        Linear between samples, clamped to the samples taken so far; energy between two
        instants is ``energy_at(b) - energy_at(a)`` (used to attribute energy to requests).
        """
        with self._lock:
            if self._window is None:
                return 0.0
            return self._window.energy_at(t_monotonic - self._t0)

    def sample_now(self) -> tuple[float, float]:
        """Read every meter now; ``(time.monotonic(), cumulative IT energy in J)``.

        For a caller that needs a moment's energy at once (a serving proxy closing a
        response) instead of waiting for the next periodic sample. Thread safe; outside a
        window it returns the last figures.
        """
        with self._lock:
            if not self._running or self._window is None:
                return time.monotonic(), self._window.energy_j if self._window is not None else 0.0
            self._read(store=False)  # a reading for the window, not a stored sample row
            return self._t0 + self._window.duration_s, self._window.energy_j

    def energy_j_so_far(self) -> float:
        """IT energy up to the latest sample."""
        return self._window.energy_j if self._window is not None else 0.0

    def latest_sample(self) -> tuple[float, dict[str, float]]:
        """The latest sample: its time (seconds since the window opened) and each component's
        cumulative IT energy (J) then, read together.

        For listeners that report power over intervals of their own choosing: the mean power
        of a component between two of these is the difference of its energies over the
        difference of the times, whoever took the samples in between.
        """
        with self._lock:
            w = self._window
            if w is None:
                return 0.0, {}
            return w.duration_s, dict(zip(w.components, w.last_j))

    def set_metadata(self, **items: Any) -> None:
        """Record facts about the workload (``params``, ``tokens``, ``hardware``...) with the run."""
        self.metadata.update(items)

    def start(self, *, pid: int | None = None) -> EnergyTracker:
        """Open the window (no-op while one is open: nested use shares the outer window).

        ``pid`` attributes CPU energy to that process tree instead of the one given when the
        tracker was built (for a command spawned after the tracker was configured, as
        ``greenlm track`` does).
        """
        if pid is not None:
            _check_pid(pid)
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
        if status not in END_STATUSES:
            raise ConfigError(f"status must be one of {', '.join(END_STATUSES)}, got {status!r}.")
        return self._close(status, error)

    def __enter__(self) -> EnergyTracker:
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._close(*exit_status(exc_type, exc))

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
        stack = self._stack()
        path = limits.phase_name(name, stack[-1].path if stack else None)
        win = self._window if self._running else None
        key = next(self._keys)
        entry = win.enter(key, path, time.monotonic() - self._t0) if win is not None else OpenPhase(path, None)  # type: ignore[arg-type]
        stack.append(entry)
        try:
            yield
        finally:
            stack.pop()
            if win is not None and self._window is win:
                with self._lock:
                    win.leave(key, time.monotonic() - self._t0)

    def step(self, n: int = 1) -> None:
        """Mark ``n`` completed steps (in every open phase of this thread, and the run)."""
        limits.steps(n)
        win = self._window
        if not self._running or win is None:
            return
        with self._lock:
            win.add_steps(n, self._stack(), time.monotonic() - self._t0)

    # ----------------------------------------------------------------- internals
    def _stack(self) -> list[OpenPhase]:
        st: list[OpenPhase] | None = getattr(self._tls, "stack", None)
        if st is None:
            st = self._tls.stack = []
        return st

    def _open(self) -> None:
        self._result = None
        self._run_id = uuid.uuid4().hex
        self._warnings: list[str] = list(self.carbon.warnings())
        self.forecast = None
        self._member = self._join_group()
        if self._member is not None:
            self._run_id = self._member.group_run_id
        elif isinstance(self.metadata.get("distributed"), dict) and self.metadata["distributed"].get("role") == "rank":
            del self.metadata["distributed"]  # set by an earlier distributed window of this tracker
        _sync_cuda(self._sync_cuda)
        self._meterset = MeterSet(self._build_meters(), self._warnings)
        self._owner_pid = os.getpid()  # a forked child must never close the parent's run
        self._t0 = time.monotonic()
        self._wall0 = dt.datetime.now(dt.timezone.utc)
        self._meterset.start()
        if self._member is not None:
            self._member.remember_meters(self._meterset.info)
            self.metadata["distributed"] = self._member.metadata()
        self._window = Window(self._meterset.names)
        if self.total_steps is not None:
            self._window.forecaster = StepForecaster(self.warmup_steps)
        self._pending: list[SampleRow] = []
        self._last_stored: tuple[float, list[float]] = (0.0, [0.0] * len(self._window.components))
        self._stop_evt = threading.Event()
        self._running = True
        self.metadata.setdefault("hardware", _hardware(self._meterset))
        self.metadata.pop("utilization", None)  # measured again for this window, at its close
        self._busy0 = _machine_busy()
        for fn in hooks(self._listeners, "on_start"):
            _safe(self._warnings, "listener", fn, self)
        if self._member is not None:  # the node's part goes to the destinations, not this rank's run
            self._destinations = None
            self._member.start_writer(self._snapshot("running", None))
        else:
            self._destinations = Destinations(
                self.config, self._store_arg, self._warnings, flush_interval_s=self.config.flush_interval_s
            )
            self._destinations.open(self._run_start)  # in a thread of its own: sampling starts at once
        self._thread = threading.Thread(target=self._loop, name="greenlm-sampler", daemon=True)
        self._thread.start()
        self._install_signals()
        _OPEN.add(self)

    def _join_group(self) -> GroupMember | None:
        """Join the job's run if this process is one rank of a distributed job (tracking/group.py)."""
        if self.config.distributed is False:
            return None
        try:
            info = ranks.detect()
            if info.slurm is not None:
                self.metadata.setdefault("slurm", info.slurm)
            return GroupMember.join(self.config, self._store_arg, self._warnings, info)
        except Exception as e:  # never raise into the user's job: measure this process alone
            self._warnings.append(f"distributed: could not join the job's run ({e}); this process is a run of its own")
            log.debug("greenlm: joining the distributed run failed", exc_info=True)
            return None

    def _build_meters(self) -> list[Meter]:
        member = self._member
        if self._given_meters is not None:
            given = list(self._given_meters)
            return member.select(given) if member is not None else given
        from greenlm.meters.detect import detect

        c = self.config
        pid = self._pid
        if member is not None:  # node-level meters charge every rank of the node: the launcher's tree
            pid = member.tree_pid() or pid
        det = detect(pid=pid, rapl_root=c.rapl_root, cpu_tdp_w=c.cpu_tdp_w, attribution=c.attribution, gpus=c.gpus)
        if member is None:
            self._warnings += det.warnings
            return det.meters
        chosen = member.select(det.meters)
        self._warnings += member.keep_warnings(det.warnings, chosen)
        return chosen

    def _read(self, store: bool = True) -> None:
        """Read every meter once (sampling thread, sample_now() or stop()); under the lock.

        Only periodic readings become stored sample rows (``store``): ``sample_now()`` at every
        request end of a busy server must not make the stored samples grow with the request
        rate. The stored rows stay exact: each is the cumulative energy at its time.
        """
        assert self._window is not None and self._meterset is not None
        now = time.monotonic() - self._t0
        energies = self._meterset.read()
        powers = self._window.add_sample(now, energies)
        if store:
            t = self._window.duration_s
            last = self._last_stored
            for i, (name, e) in enumerate(zip(self._window.components, energies)):
                dt = t - last[0]
                p = (e - last[1][i]) / dt if dt > 0 else powers[i]
                self._pending.append(SampleRow(t, name, e, p))
            self._last_stored = (t, list(energies))
        self._update_forecast()

    def _loop(self) -> None:
        c = self.config
        next_flush = time.monotonic() + c.flush_interval_s
        on_sample = hooks(self._listeners, "on_sample")
        while not self._stop_evt.wait(c.interval_s):
            try:
                with self._lock:
                    if not self._running:
                        break
                    self._read()
                    assert self._window is not None
                    t_s, powers = self._window.duration_s, self._window.last_powers()
                for fn in on_sample:  # powers computed once per tick, for every listener
                    _safe(self._warnings, "listener", fn, self, t_s, powers)
                if time.monotonic() >= next_flush:
                    next_flush = time.monotonic() + c.flush_interval_s
                    self._flush()
            except Exception as e:  # never raise into the user's job
                log.debug("greenlm sampler error: %s", e, exc_info=True)

    def _flush(self) -> None:
        if self._member is not None:
            with self._lock:
                snapshot = self._snapshot("running", None)
            self._member.flush(snapshot)
            return
        dest = self._destinations
        if dest is None or not dest.ready:  # still opening: keep the rows for later
            return
        with self._lock:
            rows, self._pending = self._pending, []
            progress = self._progress()
        if rows and self._run_id is not None:
            dest.flush(self._run_id, rows, progress)  # each destination isolates its own failure

    def _progress(self) -> Progress:
        assert self._window is not None and self._meterset is not None
        w = self._window
        fp = account(w.energy_j, self.carbon)
        return Progress(
            w.duration_s,
            w.energy_j,
            fp.facility_energy_j,
            fp.co2e_g,
            dict(zip(w.components, w.last_j)),
        )

    def _update_forecast(self) -> None:
        """Predict the whole run's energy from the steps so far (needs ``total_steps``)."""
        w = self._window
        if self.total_steps is None or w is None or w.forecaster is None:
            return
        fcst = w.forecaster
        if fcst.steps < self.warmup_steps + 2 or fcst.steps > self.total_steps:
            return
        try:
            fc = fcst.forecast(self.total_steps)
        except Exception as e:
            log.debug("forecast failed: %s", e)
            return
        g_per_j = account(1.0, self.carbon).co2e_g
        self.forecast = {
            **fc.to_dict(),
            "co2e_g": fc.energy_j * g_per_j,
            "co2e_low_g": fc.low_j * g_per_j,
            "co2e_high_g": fc.high_j * g_per_j,
            "steps_done": w.steps,
            "total_steps": self.total_steps,
        }

    def _close(self, status: str, error: str | None) -> RunResult:
        with self._lock:
            if self._depth == 0:
                if self._result is not None:
                    return self._result
                raise ResultNotReadyError("stop() called on a tracker that was never started.")
            self._depth -= 1
            if self._depth > 0:
                return self._snapshot("running", None)
            self._closing = True  # a stop signal from here on is held until the run is stored
            self._stop_evt.set()
        self._thread.join(timeout=max(5.0, 3 * self.config.interval_s))
        _sync_cuda(self._sync_cuda)
        assert self._window is not None and self._meterset is not None
        with self._lock:
            self._read()
            stopped_s = self._window.duration_s
            still_open = self._window.close_open_phases(stopped_s)
            if still_open and status != "completed":
                self._warnings.append(
                    f"phases still open when the window closed ({status}): {', '.join(sorted(set(still_open)))}; "
                    "closed at the stop time"
                )
            self._window.resolve_all()
            self._update_forecast()
            _safe(self._warnings, "utilization", self._record_utilization, stopped_s)
            result = self._snapshot(status, error)
            self._running = False
            self._result = result
        _OPEN.discard(self)
        try:
            if self._member is not None:
                result = self._member.finish(result)
                self._result = result
            elif self._destinations is not None:
                rows, self._pending = self._pending, []
                result = self._destinations.finish(result, rows, self._progress(), wait_open_s=OPEN_WAIT_S)
                self._result = result
        finally:
            held, self._held_signal = self._held_signal, None
            prev = self._prev_term
            self._closing = False
            self._restore_signals()
        for fn in hooks(self._listeners, "on_stop"):
            _safe([], "listener", fn, result)
        self._meterset.close()
        if held is not None:
            signals.redeliver(held, prev)
        return result

    def _record_utilization(self, duration_s: float) -> None:
        """The machine's mean CPU utilisation over the window and its memory in use at the end
        (``metadata["utilization"]``; what CodeCarbon's CSV columns of that name hold).
        """
        import psutil

        vm = psutil.virtual_memory()
        busy0, busy1 = self._busy0, _machine_busy()
        cpus = psutil.cpu_count() or 1
        util: dict[str, float] = {"ram_percent": float(vm.percent), "ram_used_gb": vm.used / 1024**3}
        if busy0 is not None and busy1 is not None and duration_s > 0:
            util["cpu_percent"] = min(100.0, max(0.0, 100.0 * (busy1 - busy0) / (duration_s * cpus)))
        self.metadata["utilization"] = util

    def _snapshot(self, status: str, error: str | None) -> RunResult:
        assert self._window is not None and self._meterset is not None and self._run_id is not None
        w = self._window
        duration = w.duration_s
        comps = self._meterset.components(w.last_j)
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
            phases=w.phases(g_per_j),
            steps=w.steps,
            warnings=tuple(self._warnings),
            timeline=w.timeline(),
            metadata=dict(self.metadata),
            host=socket.gethostname(),
            error=error,
            forecast=self.forecast,
            meters=tuple(self._meterset.info),
        )

    def _run_start(self) -> RunStart:
        import psutil

        assert self._meterset is not None and self._run_id is not None
        pid = self._pid or os.getpid()
        try:
            ct = psutil.Process(pid).create_time()
        except psutil.Error:
            ct = 0.0
        bands = {b["name"]: b for b in self._meterset.bands()}
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
                {**m, "band": s.band.source, **{k: v for k, v in bands.get(s.name, {}).items() if k != "name"}}
                for m, s in zip(self._meterset.info, self._meterset.meters)
            ],
            pue_source=self.carbon.pue.source,
            price_per_kwh=self.carbon.price.per_kwh,
            currency=self.carbon.price.currency,
            price_source=self.carbon.price.source,
        )

    # ----------------------------------------------------------------- signals
    def _install_signals(self) -> None:
        self._prev_term: Any = signals.take(self._on_signal) if self._handle_signals else None

    def _restore_signals(self) -> None:
        signals.restore(self._prev_term)
        self._prev_term = None

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._closing:  # the run is being stored: finish that first, then do what the signal does
            self._held_signal = signum
            return
        prev = self._prev_term
        if os.getpid() == self._owner_pid:
            with contextlib.suppress(Exception):
                self._depth = 1
                self._close("interrupted", signals.name(signum))
        signals.redeliver(signum, prev, frame)


def exit_status(exc_type: Any, exc: Any) -> tuple[str, str | None]:
    """How a ``with`` block (or decorated call) ended, as (status, error).

    A normal end and ``sys.exit(0)`` / ``sys.exit(None)`` are ``completed``; Ctrl-C is
    ``interrupted``; any other exception, and ``sys.exit`` with another code, ``failed``.
    """
    if exc_type is None:
        return "completed", None
    if issubclass(exc_type, SystemExit):
        code = getattr(exc, "code", None)
        if code is None or code == 0:
            return "completed", None
        return "failed", f"SystemExit: exit code {code}"
    if issubclass(exc_type, KeyboardInterrupt):
        return "interrupted", "KeyboardInterrupt"
    return "failed", f"{exc_type.__name__}: {exc}"


def _check_pid(pid: object) -> None:
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise ConfigError(f"pid must be a positive process id, got {pid!r}.")


def _machine_busy() -> float | None:
    """Busy CPU seconds of the whole machine so far (user, nice, system, irq, softirq)."""
    import psutil

    try:
        t = psutil.cpu_times()
    except Exception:
        return None
    return t.user + getattr(t, "nice", 0.0) + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def _ram_total_gb() -> float | None:
    import psutil

    try:
        return psutil.virtual_memory().total / 1024**3
    except Exception:
        return None


def _hardware(meterset: MeterSet) -> dict[str, Any]:
    """What the run ran on, for calibration and comparison: accelerator model and count, CPU, RAM."""
    gpus = [i for i in meterset.info if i.get("kind") == "gpu"]
    models = sorted({str(i.get("model")) for i in gpus if i.get("model")})
    cpu = next((i for i in meterset.info if i.get("kind") == "cpu"), {})
    out: dict[str, Any] = {
        "accelerator": models[0] if len(models) == 1 else (", ".join(models) or None),
        "accelerator_count": len(gpus),
        "cpu": cpu.get("cpu") or _cpu_name(),
        "cpu_threads": cpu.get("threads_visible") or os.cpu_count(),
        "ram_total_gb": _ram_total_gb(),
    }
    return out


@functools.cache
def _cpu_name() -> str | None:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    import platform

    return platform.processor() or None


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
    return EnergyTracker(**kwargs)


__all__ = ["END_STATUSES", "EnergyTracker", "RunSink", "exit_status", "track_energy"]
