"""Engine-specific figures recorded beside the energy: vLLM-style Prometheus metrics.

An engine that serves ``/metrics`` with vLLM's names (``vllm:num_requests_running``,
``vllm:num_requests_waiting``, ``vllm:kv_cache_usage_perc`` or the older
``vllm:gpu_cache_usage_perc``) tells what the proxy cannot see: how many requests it batches
and how full its KV cache is. :class:`EngineMetrics` parses that page and keeps
time-weighted integrals, so any window's mean batch size and KV-cache use can be read as
``(integral(b) - integral(a)) / (b - a)``. Other engines' pages are ignored (their metrics
stay theirs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: vLLM metric names -> what greenlm calls them (several names for one across versions).
VLLM_NAMES: dict[str, str] = {
    "vllm:num_requests_running": "requests_running",
    "vllm:num_requests_waiting": "requests_waiting",
    "vllm:kv_cache_usage_perc": "kv_cache_usage",
    "vllm:gpu_cache_usage_perc": "kv_cache_usage",
}
SUM = ("requests_running", "requests_waiting")  # summed over label sets (several engines / models)


def parse_vllm(text: str) -> dict[str, float]:
    """The vLLM figures in a Prometheus text page (empty when it has none).

    Request counts are summed over label sets; KV-cache use is their mean, as a 0-1 ratio.
    """
    from prometheus_client.parser import text_string_to_metric_families

    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    try:
        families = list(text_string_to_metric_families(text))
    except Exception:  # not a Prometheus page
        return {}
    for fam in families:
        for s in fam.samples:
            key = VLLM_NAMES.get(s.name)
            if key is None:
                continue
            sums[key] = sums.get(key, 0.0) + float(s.value)
            counts[key] = counts.get(key, 0) + 1
    return {k: (v if k in SUM else v / counts[k]) for k, v in sums.items()}


@dataclass
class EngineMetrics:
    """Latest values and time integrals of the engine's figures (``t`` in monotonic seconds)."""

    source: str = "vllm /metrics"
    latest: dict[str, float] = field(default_factory=dict)
    integral: dict[str, float] = field(default_factory=dict)
    maximum: dict[str, float] = field(default_factory=dict)
    samples: int = 0
    first_t: float | None = None
    last_t: float | None = None

    def add(self, t: float, values: dict[str, float]) -> None:
        """A scrape at ``t``: the previous values held since the previous scrape."""
        if self.last_t is not None and t > self.last_t:
            dt = t - self.last_t
            for k, v in self.latest.items():
                self.integral[k] = self.integral.get(k, 0.0) + v * dt
        if self.first_t is None:
            self.first_t = t
        self.last_t = t
        self.latest = dict(values)
        for k, v in values.items():
            self.maximum[k] = max(self.maximum.get(k, v), v)
        self.samples += 1

    def summary(self) -> dict[str, Any]:
        """Means over the scraped span, maxima and the latest values."""
        span = (self.last_t - self.first_t) if self.first_t is not None and self.last_t is not None else 0.0
        return {
            "source": self.source,
            "samples": self.samples,
            "span_s": span,
            "mean": {k: v / span for k, v in self.integral.items()} if span > 0 else dict(self.latest),
            "max": dict(self.maximum),
            "latest": dict(self.latest),
            "integral": dict(self.integral),
        }
