"""The state of one measuring window, pure: samples, interpolation, marks, phases, steps, timeline.

No threads, no clocks, no meters: the tracker feeds it readings (``add_sample``) and times
(``mark``), and asks for figures. That is what makes it testable on its own and reusable
(the tracker, the distributed tracker and the serving proxy all read energies through it).

How a moment's energy is known
------------------------------
Meters are read at sample times; between two samples the cumulative energy ``E(t)`` is
linear. A moment of interest (a phase's entry or exit, a step's end, a request's start) is
a :class:`Mark`: its time is recorded on the hot path (no meter read), and its energy is
filled in when the next sample is taken (``E(t)`` of the interval that holds it). So
phases and steps never need the whole sample history: once resolved, a phase's energy is
folded into a per-path aggregate, and a step's into the forecaster. Memory is bounded:

* per phase *path*, one aggregate (not one entry per entry: a million steps through 4 nested
  phases cost 4 aggregates), plus the marks still waiting for a sample;
* per step, nothing but a counter (and, with ``total_steps``, O(1) in the forecaster);
* samples: full resolution for the last :data:`HISTORY_SAMPLES` samples; beyond that, older
  samples are thinned (every other one dropped), so ``energy_at`` of long-past moments and
  the timeline lose resolution but never exactness at the kept sample times. The
  components' totals are exact always.
"""

from __future__ import annotations

import bisect
import itertools
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from greenlm.tracking.forecast import StepForecaster
from greenlm.tracking.result import PhaseEnergy, TimelinePoint

#: Samples kept at full resolution before the oldest half is thinned (see module docstring).
HISTORY_SAMPLES = 1 << 17
#: Points in a result's timeline.
TIMELINE_POINTS = 600


class Mark:
    """A moment of the window whose cumulative energy is filled in at the next sample."""

    __slots__ = ("energy_j", "t_s")

    def __init__(self, t_s: float) -> None:
        self.t_s = t_s
        self.energy_j: float | None = None


@dataclass
class _PhaseAgg:
    energy_j: float = 0.0
    duration_s: float = 0.0
    steps: int = 0
    entries: int = 0
    first_s: float = float("inf")


@dataclass
class OpenPhase:
    """A phase that was entered and not yet left: its path, entry mark and steps so far."""

    path: str
    start: Mark
    steps: int = 0


@dataclass
class _Ended:
    path: str
    start: Mark
    end: Mark
    steps: int


@dataclass
class Window:
    """One window's figures. Times are seconds since the window opened."""

    components: Sequence[str]
    history_samples: int = HISTORY_SAMPLES
    times: array[float] = field(init=False)
    cum: list[array[float]] = field(init=False)
    total: array[float] = field(init=False)

    def __post_init__(self) -> None:
        self.components = list(self.components)
        self.times = array("d", [0.0])
        self.cum = [array("d", [0.0]) for _ in self.components]
        self.total = array("d", [0.0])
        self.last_j = [0.0] * len(self.components)
        self._marks: list[Mark] = []
        self._ended: list[_Ended] = []
        self._phases: dict[str, _PhaseAgg] = {}
        self.open_phases: dict[int, OpenPhase] = {}
        self.steps = 0
        self.samples = 0
        #: Set by the tracker when ``total_steps`` is known: fed each step once its energy is final.
        self.forecaster: StepForecaster | None = None
        self._step_marks: list[tuple[Mark, int]] = []
        self._last_step = Mark(0.0)
        self._last_step.energy_j = 0.0

    # ----------------------------------------------------------------- samples
    def add_sample(self, t_s: float, energies_j: Sequence[float]) -> list[float | None]:
        """Record cumulative energies read at ``t_s``; returns each component's mean power
        over the interval since the previous sample (``None`` for a zero-length interval).

        Cumulative energy never decreases: a reading below the previous one is held.
        """
        t_prev = self.times[-1]
        dt = t_s - t_prev
        powers: list[float | None] = []
        total = 0.0
        for i, e in enumerate(energies_j):
            prev = self.last_j[i]
            e = max(float(e), prev)
            self.last_j[i] = e
            self.cum[i].append(e)
            total += e
            powers.append((e - prev) / dt if dt > 0 else None)
        self.times.append(max(t_s, t_prev))
        self.total.append(total)
        self.samples += 1
        self._resolve()
        if len(self.times) > self.history_samples:
            self._thin()
        return powers

    def _thin(self) -> None:
        """Drop every other sample of the older half (first and last sample always kept)."""
        n = len(self.times)
        half = n // 2
        keep = [*range(0, half, 2), *range(half, n)]
        self.times = array("d", (self.times[i] for i in keep))
        self.total = array("d", (self.total[i] for i in keep))
        self.cum = [array("d", (c[i] for i in keep)) for c in self.cum]

    @property
    def duration_s(self) -> float:
        return self.times[-1]

    @property
    def energy_j(self) -> float:
        """Cumulative IT energy at the latest sample."""
        return self.total[-1]

    def energy_at(self, t_s: float) -> float:
        """Cumulative IT energy at ``t_s`` (linear between samples, clamped to the samples)."""
        times, total = self.times, self.total
        if t_s <= times[0]:
            return total[0]
        if t_s >= times[-1]:
            return total[-1]
        i = bisect.bisect_right(times, t_s)
        t0, t1 = times[i - 1], times[i]
        e0, e1 = total[i - 1], total[i]
        return e0 + (e1 - e0) * (t_s - t0) / (t1 - t0) if t1 > t0 else e1

    def last_powers(self) -> dict[str, float]:
        """Each component's mean power over the last sampling interval."""
        if len(self.times) < 2:
            return {}
        dt = self.times[-1] - self.times[-2]
        if dt <= 0:
            return {}
        return {name: (c[-1] - c[-2]) / dt for name, c in zip(self.components, self.cum)}

    # ----------------------------------------------------------------- marks
    def mark(self, t_s: float) -> Mark:
        """A moment whose energy is known at the next sample (or at once, if already sampled)."""
        m = Mark(t_s)
        if t_s <= self.times[-1]:
            m.energy_j = self.energy_at(t_s)
        else:
            self._marks.append(m)
        return m

    def _resolve(self) -> None:
        last = self.times[-1]
        if self._marks:
            waiting = []
            for m in self._marks:
                if m.t_s <= last:
                    m.energy_j = self.energy_at(m.t_s)
                else:
                    waiting.append(m)
            self._marks = waiting
        if self._step_marks and self.forecaster is not None:
            self._feed_forecaster()
        if self._ended:
            still = []
            for ph in self._ended:
                if ph.start.energy_j is not None and ph.end.energy_j is not None:
                    self._fold(ph)
                else:
                    still.append(ph)
            self._ended = still

    def resolve_all(self) -> None:
        """At the window's end: every mark up to the last sample gets its energy."""
        for m in self._marks:
            m.energy_j = self.energy_at(m.t_s)
        self._marks = []
        self._resolve()

    # ----------------------------------------------------------------- phases and steps
    def enter(self, key: int, path: str, t_s: float) -> OpenPhase:
        """A phase entered at ``t_s``; ``key`` identifies this entry until :meth:`leave`."""
        ph = OpenPhase(path, self.mark(t_s))
        self.open_phases[key] = ph
        return ph

    def leave(self, key: int, t_s: float) -> None:
        """The phase entry ``key`` ended at ``t_s``."""
        ph = self.open_phases.pop(key, None)
        if ph is None:
            return
        ended = _Ended(ph.path, ph.start, self.mark(t_s), ph.steps)
        if ended.start.energy_j is not None and ended.end.energy_j is not None:
            self._fold(ended)
        else:
            self._ended.append(ended)

    def close_open_phases(self, t_s: float) -> list[str]:
        """End every phase still open at ``t_s`` (a window stopped by a signal); their paths."""
        paths = []
        for key in list(self.open_phases):
            paths.append(self.open_phases[key].path)
            self.leave(key, t_s)
        return paths

    def _fold(self, ph: _Ended) -> None:
        agg = self._phases.get(ph.path)
        if agg is None:
            agg = self._phases[ph.path] = _PhaseAgg()
        assert ph.start.energy_j is not None and ph.end.energy_j is not None
        agg.energy_j += max(0.0, ph.end.energy_j - ph.start.energy_j)
        agg.duration_s += max(0.0, ph.end.t_s - ph.start.t_s)
        agg.steps += ph.steps
        agg.entries += 1
        agg.first_s = min(agg.first_s, ph.start.t_s)

    def add_steps(self, n: int, open_in_thread: Iterable[OpenPhase], t_s: float | None = None) -> None:
        """``n`` steps completed (at ``t_s``): counted in the run and in each phase open in
        the thread; with a forecaster, their energy is fed to it once it is final.
        """
        self.steps += n
        for ph in open_in_thread:
            ph.steps += n
        if self.forecaster is not None and t_s is not None:
            self._step_marks.append((self.mark(t_s), n))
            if self._step_marks[0][0].energy_j is not None:
                self._feed_forecaster()

    def _feed_forecaster(self) -> None:
        fc = self.forecaster
        assert fc is not None
        done = 0
        for m, n in self._step_marks:
            if m.energy_j is None:
                break
            prev = self._last_step
            assert prev.energy_j is not None
            e = max(0.0, m.energy_j - prev.energy_j) / n
            d = max(0.0, m.t_s - prev.t_s) / n
            fc.add(e, d, count=n)
            self._last_step = m
            done += 1
        if done:
            del self._step_marks[:done]

    def phases(self, g_per_j: float) -> tuple[PhaseEnergy, ...]:
        """Every phase resolved so far, parents first, then children, by first entry."""
        agg = self._phases
        out: list[PhaseEnergy] = []

        def entry(path: str) -> PhaseEnergy:
            a = agg[path]
            parent, _, name = path.rpartition("/")
            return PhaseEnergy(
                name=name,
                parent=parent or None,
                energy_j=a.energy_j,
                duration_s=a.duration_s,
                steps=a.steps,
                entries=a.entries,
                co2e_g=a.energy_j * g_per_j,
            )

        children: dict[str | None, list[str]] = {}
        for path in agg:
            children.setdefault(path.rpartition("/")[0] or None, []).append(path)

        def visit(parent: str | None) -> None:
            for path in sorted(children.get(parent, []), key=lambda p: agg[p].first_s):
                out.append(entry(path))
                visit(path)

        visit(None)
        seen = {p.path for p in out}
        for path in sorted(set(agg) - seen, key=lambda p: agg[p].first_s):  # parent never closed
            out.append(entry(path))
        return tuple(out)

    # ----------------------------------------------------------------- timeline
    def timeline(self, points: int = TIMELINE_POINTS) -> tuple[TimelinePoint, ...]:
        """Mean power of each component over at most ``points`` intervals covering the window."""
        n = len(self.times)
        if n < 2:
            return ()
        stride = max(1, (n - 1 + points - 1) // points)
        idx = list(range(0, n, stride))
        if idx[-1] != n - 1:
            idx.append(n - 1)
        out = []
        for a, b in itertools.pairwise(idx):
            dt = self.times[b] - self.times[a]
            if dt <= 0:
                continue
            out.append(
                TimelinePoint(self.times[b], {name: (c[b] - c[a]) / dt for name, c in zip(self.components, self.cum)})
            )
        return tuple(out)
