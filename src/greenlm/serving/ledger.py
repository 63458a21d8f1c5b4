"""The serving run's roll-up: totals per model and route, and rolling windows (pure bookkeeping).

What the run store keeps as ``metadata["serving"]`` (see :meth:`Ledger.summary`): per model
(the ``model`` of each request, or the configured name), requests by status and by how their
energy was split, prompt and output tokens, energy, CO2e, energy per request and per output
token, per route; the idle energy (labelled with the configured model name); and the last
``keep_windows`` windows of ``window_s`` seconds, each with its energy and per-model figures,
so a dashboard can draw energy per request and per token over time.
"""

from __future__ import annotations

import collections
from typing import Any

from greenlm.serving.attribution import RequestEnergy


def _per(a: float, b: float) -> float | None:
    return a / b if b else None


class _Agg:
    __slots__ = ("energy_j", "methods", "output_tokens", "prompt_tokens", "requests", "status_energy_j", "statuses")

    def __init__(self) -> None:
        self.requests = 0
        self.prompt_tokens = 0
        self.output_tokens = 0
        self.energy_j = 0.0
        self.statuses: collections.Counter[str] = collections.Counter()
        self.methods: collections.Counter[str] = collections.Counter()
        self.status_energy_j: dict[str, float] = {}

    def add(self, r: RequestEnergy) -> None:
        self.requests += 1
        self.prompt_tokens += r.prompt_tokens
        self.output_tokens += r.output_tokens
        self.energy_j += r.energy_j
        self.statuses[r.status] += 1
        self.status_energy_j[r.status] = self.status_energy_j.get(r.status, 0.0) + r.energy_j
        self.methods[r.method] += 1

    def to_dict(self, g_per_j: float) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "energy_j": self.energy_j,
            "co2e_g": self.energy_j * g_per_j,
            "energy_per_request_j": _per(self.energy_j, self.requests),
            "energy_per_output_token_j": _per(self.energy_j, self.output_tokens),
            "statuses": dict(self.statuses),
            "status_energy_j": dict(self.status_energy_j),
            "methods": dict(self.methods),
        }


class Ledger:
    """Totals and windows of the requests made final, and of the idle energy."""

    def __init__(self, model: str, g_per_j: float, window_s: float = 300.0, keep_windows: int = 288) -> None:
        self.model = model
        self.g_per_j = g_per_j
        self.window_s = window_s
        self.total = _Agg()
        self.models: dict[str, _Agg] = {}
        self.routes: dict[tuple[str, str], _Agg] = {}
        self.idle_energy_j = 0.0
        self.windows: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep_windows)
        self._win = self._new_window(0.0, 0.0)

    @staticmethod
    def _new_window(start_s: float, measured0_j: float) -> dict[str, Any]:
        return {"start_s": start_s, "measured0_j": measured0_j, "idle_energy_j": 0.0, "models": {}}

    def add(self, r: RequestEnergy) -> None:
        """A request became final."""
        self.total.add(r)
        self.models.setdefault(r.model, _Agg()).add(r)
        self.routes.setdefault((r.model, r.route), _Agg()).add(r)
        self._win["models"].setdefault(r.model, _Agg()).add(r)

    def idle(self, energy_j: float) -> None:
        """Energy measured while no request was in flight."""
        self.idle_energy_j += energy_j
        self._win["idle_energy_j"] += energy_j

    def roll_due(self, t_s: float) -> bool:
        """Whether the current window (started at its ``start_s``) has lasted ``window_s``."""
        return t_s - self._win["start_s"] >= self.window_s

    def roll(self, t_s: float, measured_j: float) -> None:
        """Close the current window at ``t_s`` (seconds since the run's start)."""
        w = self._win
        if t_s <= w["start_s"]:
            return
        energy = measured_j - w["measured0_j"]
        models = {m: a.to_dict(self.g_per_j) for m, a in sorted(w["models"].items())}
        requests = sum(a["requests"] for a in models.values())
        out_tokens = sum(a["output_tokens"] for a in models.values())
        self.windows.append(
            {
                "start_s": w["start_s"],
                "end_s": t_s,
                "energy_j": energy,
                "co2e_g": energy * self.g_per_j,
                "idle_energy_j": w["idle_energy_j"],
                "requests": requests,
                "output_tokens": out_tokens,
                "energy_per_request_j": _per(energy, requests),
                "energy_per_output_token_j": _per(energy, out_tokens),
                "models": models,
            }
        )
        self._win = self._new_window(t_s, measured_j)

    def summary(self, measured_j: float, in_flight_j: float) -> dict[str, Any]:
        """The roll-up as JSON-ready data (``metadata["serving"]``)."""
        t = self.total.to_dict(self.g_per_j)
        return {
            "model": self.model,
            "measured_energy_j": measured_j,
            "requests_energy_j": t["energy_j"],
            "idle_energy_j": self.idle_energy_j,
            "idle_model": self.model,
            "in_flight_energy_j": in_flight_j,
            "requests": t["requests"],
            "prompt_tokens": t["prompt_tokens"],
            "output_tokens": t["output_tokens"],
            "tokens": t["output_tokens"],  # the in-process monitor's name for output tokens
            "energy_per_request_j": t["energy_per_request_j"],
            "energy_per_output_token_j": t["energy_per_output_token_j"],
            "energy_per_token_j": t["energy_per_output_token_j"],
            "statuses": t["statuses"],
            "status_energy_j": t["status_energy_j"],
            "methods": t["methods"],
            "models": [{"model": m, **a.to_dict(self.g_per_j)} for m, a in sorted(self.models.items())],
            "routes": [
                {"model": m, "route": r, **a.to_dict(self.g_per_j)} for (m, r), a in sorted(self.routes.items())
            ],
            "window_s": self.window_s,
            "windows": list(self.windows),
        }
