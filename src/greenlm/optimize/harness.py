"""The measuring harness: warm-up, repeated tracker windows, medians and spread.

For each model variant: one warm-up pass (not measured; peak memory is sampled during it),
then ``repeats`` windows, each around one pass over the same pre-tokenised inputs. A
window's energy comes from a *measure* function, by default greenlm's
:class:`~greenlm.EnergyTracker` (tests pass a fake one). Per window we get the energy per
inference and per generated token; the reported figure is the median over windows, the
spread their min and max. Latency is the wall-clock time of each inference call
(``time.perf_counter``), pooled over all windows, p50 and p95.
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
    """Warm up, then measure ``repeats`` passes of ``run(model, batch)`` over ``batches``.

    ``run`` returns the number of tokens it generated (0 when not generative).
    """
    import torch

    device = model_device(model)
    # warm-up pass (kernels, allocator, caches); peak memory sampled here, not in the windows
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        for b in batches:
            run(model, b)
        _sync(device)
        activ = torch.cuda.max_memory_allocated()
        peak_mb = activ / 1e6
        peak_source = "torch.cuda.max_memory_allocated during the warm-up pass"
    else:
        with _RssSampler() as rss:
            for b in batches:
                run(model, b)
        weights = _arch.memory_bytes(model)
        peak_mb = (weights + max(0, rss.peak_bytes - rss.start_bytes)) / 1e6
        peak_source = (
            "weights held in memory + growth of the process RSS during the warm-up pass (psutil, sampled every 5 ms)"
        )
    n_items = sum(items_per_batch)
    per_1k: list[float] = []
    per_token: list[float] = []
    durations: list[float] = []
    latencies_ms: list[float] = []
    windows: list[Window] = []
    for _ in range(repeats):
        lat: list[float] = []
        generated: list[int] = []
        w = measure(_timed_pass(model, run, batches, device, lat, generated))
        tokens = sum(generated)
        windows.append(w)
        latencies_ms.extend(lat)
        durations.append(sum(lat) / 1e3)
        per_1k.append(w.energy_j / n_items * 1000.0)
        if tokens:
            per_token.append(w.energy_j / tokens)
        if on_repeat is not None:
            on_repeat()
    bounds = [
        ((w.energy_low_j or 0.0) / n_items * 1000.0, (w.energy_high_j or 0.0) / n_items * 1000.0)
        for w in windows
        if w.energy_low_j is not None and w.energy_high_j is not None
    ]
    return _summarise(
        per_1k,
        per_token,
        durations,
        latencies_ms,
        n_items,
        bounds,
        peak_memory_mb=peak_mb,
        peak_memory_source=peak_source,
        size_mb=_arch.size_bytes(model) / 1e6,
        parameter_count=_arch.parameter_count(model),
        provenance=_weakest([w.provenance for w in windows]),
        provenance_detail=windows[0].detail if windows else "",
    )


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


def pool(first: Measurement, second: Measurement) -> Measurement:
    """One measurement from two of the same model (baseline before and after the variants).

    Medians and percentiles are recomputed over all windows; the spread then shows any
    drift of the machine's load between the two.
    """
    return _summarise(
        first.window_j_per_1k + second.window_j_per_1k,
        first.window_j_per_token + second.window_j_per_token,
        first.window_busy_s + second.window_busy_s,
        first.latencies_ms + second.latencies_ms,
        first.n_items,
        first.window_bounds_j_per_1k + second.window_bounds_j_per_1k,
        peak_memory_mb=max(first.peak_memory_mb, second.peak_memory_mb),
        peak_memory_source=first.peak_memory_source,
        size_mb=first.size_mb,
        parameter_count=first.parameter_count,
        provenance=_weakest([first.provenance, second.provenance]),
        provenance_detail=first.provenance_detail,
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
