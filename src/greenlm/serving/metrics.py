"""The Prometheus metrics of ``greenlm serve`` (one registry per proxy).

Label values are sanitised and capped the way the in-process monitor does it
(:func:`greenlm.integrations.monitor.sanitize_label`, :class:`LabelGuard`); the names and
the idle route are the monitor's, so one dashboard reads both:

* ``greenlm_energy_joules_total{model,route}`` and ``greenlm_co2e_grams_total`` (counters):
  energy attributed to requests, and under ``route="_idle"`` the energy measured while none
  was in flight, labelled with the configured model name. The sum over every label is the
  measured energy settled so far.
* ``greenlm_tokens_total{model,route}`` (output tokens), ``greenlm_prompt_tokens_total``,
  ``greenlm_requests_total{model,route,status}``.
* ``greenlm_request_energy_joules{model,route}`` (histogram, J per request) and
  ``greenlm_output_token_energy_joules{model,route}`` (histogram, J per output token of
  each request).
* ``greenlm_power_watts{device}`` (gauge, IT power over the last sampling interval).
* ``greenlm_engine_requests_running``, ``greenlm_engine_requests_waiting``,
  ``greenlm_engine_kv_cache_usage_ratio`` (gauges) when the engine publishes vLLM-style
  metrics.
"""

from __future__ import annotations

import importlib
from typing import Any

from greenlm.errors import MissingExtraError
from greenlm.integrations.monitor import ENERGY_BUCKETS_J, IDLE_ROUTE, LabelGuard, sanitize_label

#: Buckets of the J-per-output-token histogram.
TOKEN_ENERGY_BUCKETS_J = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)

__all__ = ["IDLE_ROUTE", "TOKEN_ENERGY_BUCKETS_J", "LabelGuard", "ServeMetrics", "sanitize_label"]


def prometheus() -> Any:
    """prometheus_client, or the error naming the extra to install."""
    try:
        return importlib.import_module("prometheus_client")
    except ImportError as e:
        raise MissingExtraError("greenlm serve", "serve", "prometheus-client") from e


class ServeMetrics:
    """The proxy's metrics, in their own registry (``registry``; a new one by default)."""

    def __init__(self, registry: Any = None) -> None:
        pc = prometheus()
        reg = registry if registry is not None else pc.CollectorRegistry()
        self.registry = reg
        labels = ("model", "route")
        self.energy = pc.Counter(
            "greenlm_energy_joules",
            "IT energy attributed to requests (route _idle: while none was in flight), in joules",
            labels,
            registry=reg,
        )
        self.co2e = pc.Counter(
            "greenlm_co2e_grams", "CO2e of that energy (grid intensity x PUE), in grams", labels, registry=reg
        )
        self.tokens = pc.Counter("greenlm_tokens", "Output tokens produced by requests", labels, registry=reg)
        self.prompt_tokens = pc.Counter("greenlm_prompt_tokens", "Prompt tokens of requests", labels, registry=reg)
        self.requests = pc.Counter(
            "greenlm_requests", "Requests served, by how they ended", (*labels, "status"), registry=reg
        )
        self.request_energy = pc.Histogram(
            "greenlm_request_energy_joules",
            "Energy attributed to one request, in joules",
            labels,
            buckets=ENERGY_BUCKETS_J,
            registry=reg,
        )
        self.token_energy = pc.Histogram(
            "greenlm_output_token_energy_joules",
            "Energy per output token of one request (its energy / its output tokens), in joules",
            labels,
            buckets=TOKEN_ENERGY_BUCKETS_J,
            registry=reg,
        )
        self.power = pc.Gauge(
            "greenlm_power_watts", "IT power over the last sampling interval, in watts", ("device",), registry=reg
        )
        self.engine_running = pc.Gauge(
            "greenlm_engine_requests_running",
            "Requests the engine is running (its batch), from its /metrics",
            registry=reg,
        )
        self.engine_waiting = pc.Gauge(
            "greenlm_engine_requests_waiting", "Requests waiting in the engine's queue, from its /metrics", registry=reg
        )
        self.engine_kv = pc.Gauge(
            "greenlm_engine_kv_cache_usage_ratio", "The engine's KV-cache use (0-1), from its /metrics", registry=reg
        )
        self._pc = pc
        self._children: dict[tuple[str, str], tuple[Any, ...]] = {}

    def children(self, model: str, route: str) -> tuple[Any, ...]:
        """The per-(model, route) series a finished request updates, looked up once."""
        key = (model, route)
        c = self._children.get(key)
        if c is None:
            lab = {"model": model, "route": route}
            c = self._children[key] = (
                self.energy.labels(**lab),
                self.co2e.labels(**lab),
                self.request_energy.labels(**lab),
                self.tokens.labels(**lab),
                self.token_energy.labels(**lab),
                self.prompt_tokens.labels(**lab),
            )
        return c

    def exposition(self) -> tuple[bytes, str]:
        """The text format of every metric, and its content type."""
        return self._pc.generate_latest(self.registry), self._pc.CONTENT_TYPE_LATEST
