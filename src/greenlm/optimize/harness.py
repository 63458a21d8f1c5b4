"""The measuring harness: warm-up, repeated tracker windows, medians and spread.

For each model variant: one warm-up pass (not measured; peak memory is sampled during it),
then windows, each around one pass over the same pre-tokenised inputs (the runner takes one
window of every variant per round, see :mod:`greenlm.optimize.stats`). A window's energy
comes from a *measure* function, by default greenlm's :class:`~greenlm.EnergyTracker`
(tests pass a fake one). Per window we get the energy per inference and per generated
token; the reported figure is the median over windows, the spread their min and max.
Latency is the wall-clock time of each inference call (``time.perf_counter``), pooled over
all windows, p50 and p95.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from greenlm.optimize import _arch
from greenlm.optimize.base import model_device
from greenlm.optimize.errors import TrackerUnavailableError


@dataclass(frozen=True)
class Window:
    """What one measuring window reports: energy, wall time and how the energy was got."""

    energy_j: float
    duration_s: float
    provenance: str  # counter | sampled | modeled
    detail: str = ""
    energy_low_j: float | None = None
    energy_high_j: float | None = None


Measure = Callable[[Callable[[], Any]], Window]


def tracker_measure(
    location: str | None = None,
    *,
    interval_s: float = 0.1,
    metadata: dict[str, Any] | None = None,
    cpu_tdp_w: float | None = None,
) -> Measure:
    """A measure function backed by :class:`greenlm.EnergyTracker` (nothing is stored)."""
    try:
        from greenlm.tracking import EnergyTracker
    except ImportError as e:  # pragma: no cover - only in a partial build
        raise TrackerUnavailableError("greenlm.tracking.EnergyTracker is not available in this build") from e

    def measure(fn: Callable[[], Any]) -> Window:
        tracker = EnergyTracker(
            project="optimize",
            location=location,
            interval_s=interval_s,
            store=False,
            metadata=dict(metadata or {}),
            cpu_tdp_w=cpu_tdp_w,
        )
        with tracker, tracker.phase("infer"):
            fn()
        r = tracker.result
        detail = "; ".join(
            f"{c.name}: {c.provenance} ({c.detail})" if c.detail else f"{c.name}: {c.provenance}" for c in r.components
        )
        return Window(r.energy_j, r.duration_s, r.provenance, detail, r.energy_low_j, r.energy_high_j)

    return measure


@dataclass
class Measurement:
    """Medians and spread of one variant's measured windows."""

    energy_j_per_1k: float
    energy_j_per_token: float | None
    latency_p50_ms: float
    latency_p95_ms: float
    throughput_per_s: float
    peak_memory_mb: float
    peak_memory_source: str
    size_mb: float
    parameter_count: int
    provenance: str
    provenance_detail: str
    repeats: int
    spread: dict[str, float] = field(default_factory=dict)
    # raw material, so that two measurements of the same model can be pooled
    window_j_per_1k: list[float] = field(default_factory=list, repr=False)
    window_j_per_token: list[float] = field(default_factory=list, repr=False)
    window_busy_s: list[float] = field(default_factory=list, repr=False)
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    n_items: int = 0
    window_bounds_j_per_1k: list[tuple[float, float]] = field(default_factory=list, repr=False)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 100]."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


class _RssSampler:
    """Peak resident memory of this process while the block runs (psutil, every 5 ms)."""

    def __init__(self, period_s: float = 0.005) -> None:
        import psutil

        self._proc = psutil.Process()
        self._period_s = period_s
        self._stop = threading.Event()
        self.start_bytes = 0
        self.peak_bytes = 0

    def _loop(self) -> None:
        while not self._stop.wait(self._period_s):
            self.peak_bytes = max(self.peak_bytes, self._proc.memory_info().rss)

    def __enter__(self) -> _RssSampler:
        self.start_bytes = self.peak_bytes = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._proc.memory_info().rss)


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


@dataclass
class Timed:
    """One measured pass: the window, each call's latency and the tokens generated."""

    window: Window
    latencies_ms: list[float]
    tokens: int
    busy_s: float


def warm_up(model: Any, run: Callable[[Any, Any], int], batches: Sequence[Any]) -> tuple[float, str]:
    """One unmeasured pass (kernels, allocator, caches); returns ``(peak_memory_mb, how)``."""
    import torch

    device = model_device(model)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        for b in batches:
            run(model, b)
        _sync(device)
        return torch.cuda.max_memory_allocated() / 1e6, "torch.cuda.max_memory_allocated during the warm-up pass"
    with _RssSampler() as rss:
        for b in batches:
            run(model, b)
    weights = _arch.memory_bytes(model)
    return (weights + max(0, rss.peak_bytes - rss.start_bytes)) / 1e6, (
        "weights held in memory + growth of the process RSS during the warm-up pass (psutil, sampled every 5 ms)"
    )


def measure_pass(model: Any, run: Callable[[Any, Any], int], batches: Sequence[Any], measure: Measure) -> Timed:
    """One measured window around one pass of ``run(model, batch)`` over ``batches``."""
    lat: list[float] = []
    generated: list[int] = []
    w = measure(_timed_pass(model, run, batches, model_device(model), lat, generated))
    return Timed(w, lat, sum(generated), sum(lat) / 1e3)


def summarise(
    passes: Sequence[Timed], n_items: int, model: Any, peak_memory_mb: float, peak_memory_source: str
) -> Measurement:
    """Medians and spread of a model's measured passes."""
    bounds = [
        ((t.window.energy_low_j or 0.0) / n_items * 1000.0, (t.window.energy_high_j or 0.0) / n_items * 1000.0)
        for t in passes
        if t.window.energy_low_j is not None and t.window.energy_high_j is not None
    ]
    return _summarise(
        [t.window.energy_j / n_items * 1000.0 for t in passes],
        [t.window.energy_j / t.tokens for t in passes if t.tokens],
        [t.busy_s for t in passes],
        [x for t in passes for x in t.latencies_ms],
        n_items,
        bounds,
        peak_memory_mb=peak_memory_mb,
        peak_memory_source=peak_memory_source,
        size_mb=_arch.size_bytes(model) / 1e6,
        parameter_count=_arch.parameter_count(model),
        provenance=_weakest([t.window.provenance for t in passes]),
        provenance_detail=passes[0].window.detail if passes else "",
    )


def measure_variant(
    model: Any,
    run: Callable[[Any, Any], int],
    batches: Sequence[Any],
    items_per_batch: Sequence[int],
    measure: Measure,
    *,
    repeats: int,
    on_repeat: Callable[[], None] | None = None,
) -> Measurement:
    """Warm up, then measure ``repeats`` passes of ``run(model, batch)`` over ``batches`` in a row.

    ``run`` returns the number of tokens it generated (0 when not generative). The optimize
    runner interleaves several models' passes instead (:func:`measure_pass` per round).
    """
    peak_mb, peak_source = warm_up(model, run, batches)
    passes = []
    for _ in range(repeats):
        passes.append(measure_pass(model, run, batches, measure))
        if on_repeat is not None:
            on_repeat()
    return summarise(passes, sum(items_per_batch), model, peak_mb, peak_source)


def _summarise(
    per_1k: list[float],
    per_token: list[float],
    durations: list[float],
    latencies_ms: list[float],
    n_items: int,
    bounds: list[tuple[float, float]],
    **fixed: Any,
) -> Measurement:
    spread = {
        "energy_j_per_1k_min": min(per_1k),
        "energy_j_per_1k_max": max(per_1k),
        "latency_iqr_ms": percentile(latencies_ms, 75) - percentile(latencies_ms, 25),
    }
    if bounds and len(bounds) == len(per_1k):
        spread["energy_j_per_1k_model_low"] = statistics.median(b[0] for b in bounds)
        spread["energy_j_per_1k_model_high"] = statistics.median(b[1] for b in bounds)
    return Measurement(
        energy_j_per_1k=statistics.median(per_1k),
        energy_j_per_token=statistics.median(per_token) if per_token else None,
        latency_p50_ms=percentile(latencies_ms, 50),
        latency_p95_ms=percentile(latencies_ms, 95),
        throughput_per_s=n_items / statistics.median(durations) if durations else 0.0,
        repeats=len(per_1k),
        spread=spread,
        window_j_per_1k=per_1k,
        window_j_per_token=per_token,
        window_busy_s=durations,
        latencies_ms=latencies_ms,
        n_items=n_items,
        window_bounds_j_per_1k=bounds,
        **fixed,
    )


def _timed_pass(
    model: Any,
    run: Callable[[Any, Any], int],
    batches: Sequence[Any],
    device: str,
    lat_ms: list[float],
    generated: list[int],
) -> Callable[[], None]:
    """One pass over ``batches``, appending each call's latency and generated tokens."""

    def loop() -> None:
        for b in batches:
            t0 = time.perf_counter()
            generated.append(run(model, b))
            _sync(device)
            lat_ms.append((time.perf_counter() - t0) * 1e3)

    return loop


_TRUST = {"counter": 0, "sampled": 1, "modeled": 2}


def _weakest(provenances: Sequence[str]) -> str:
    return max(provenances, key=lambda p: _TRUST.get(p, 3)) if provenances else "modeled"
