"""MLflow: a run's energy and CO2e as MLflow metrics, tags and a JSON artifact.

Extra ``mlflow`` (mlflow-skinny is enough).

* :func:`log_run` logs a finished :class:`~greenlm.RunResult` into an MLflow run (the one
  given, else the active one, else a new one): metrics ``greenlm.energy_j``,
  ``greenlm.co2e_g``, ``greenlm.facility_energy_j``, ``greenlm.duration_s``, ``greenlm.cost``,
  the energy band, ``greenlm.component.<name>.energy_j`` (``gpu:0`` becomes ``gpu_0``:
  portable MLflow names have no colon) and ``greenlm.phase.<path>.energy_j``
  / ``.co2e_g``; tags ``greenlm.run_id``, ``greenlm.provenance``, ``greenlm.location``,
  ``greenlm.intensity_source``, ``greenlm.pue_source``, ``greenlm.status``; and the run's JSON
  (with its timeline) as the artifact ``greenlm/<run_id>.json``.
* :class:`MlflowListener` does the same at the end of a tracking window and logs
  ``greenlm.energy_j``, ``greenlm.co2e_g`` and ``greenlm.power_w.<device>`` while it runs
  (at most every ``every_s`` seconds, step = the tracker's step count):
  ``EnergyTracker(listeners=[MlflowListener()])``.

All calls go through ``MlflowClient`` with an explicit MLflow run id, so they are safe from the
tracker's sampling thread.
"""

from __future__ import annotations

import os
import re
import threading
import time
from typing import Any

from greenlm.carbon.accounting import account
from greenlm.integrations._extras import require
from greenlm.tracking.result import RunResult

PREFIX = "greenlm."
_BAD = re.compile(r"[^\w./\- ]")


def _mlflow() -> Any:
    return require("mlflow", feature="MLflow logging", extra="mlflow", package="mlflow-skinny")


def metric_name(*parts: str) -> str:
    """An MLflow-safe metric name (``greenlm.component.gpu_0.energy_j``)."""
    return PREFIX + ".".join(_BAD.sub("_", p) for p in parts)


def run_metrics(result: RunResult) -> dict[str, float]:
    """The metrics :func:`log_run` logs, by name."""
    m = {
        metric_name("energy_j"): result.energy_j,
        metric_name("energy_low_j"): result.energy_low_j,
        metric_name("energy_high_j"): result.energy_high_j,
        metric_name("facility_energy_j"): result.facility_energy_j,
        metric_name("co2e_g"): result.co2e_g,
        metric_name("duration_s"): result.duration_s,
        metric_name("cost"): result.cost,
    }
    for c in result.components:
        m[metric_name("component", c.name, "energy_j")] = c.energy_j
    for p in result.phases:
        m[metric_name("phase", p.path, "energy_j")] = p.energy_j
        m[metric_name("phase", p.path, "co2e_g")] = p.co2e_g
    return m


def run_tags(result: RunResult) -> dict[str, str]:
    """The tags :func:`log_run` sets: where each figure comes from."""
    loc = result.location
    return {
        PREFIX + "run_id": result.run_id,
        PREFIX + "project": result.project,
        PREFIX + "status": result.status,
        PREFIX + "provenance": result.provenance,
        PREFIX + "location": str(loc.get("code")),
        PREFIX + "intensity_g_per_kwh": str(loc.get("intensity_g_per_kwh")),
        PREFIX + "intensity_source": f"{loc.get('source')} ({loc.get('year')})",
        PREFIX + "pue_source": f"{result.pue} ({result.pue_source})",
    }


def log_run(result: RunResult, *, run_id: str | None = None, client: Any = None, step: int | None = None) -> str:
    """Log ``result`` into MLflow run ``run_id`` (default: the active run, else a new run
    in the current experiment, ended afterwards). Returns the MLflow run id.
    """
    mlflow = _mlflow()
    client = client or mlflow.MlflowClient()
    owned = False
    if run_id is None:
        active = mlflow.active_run()
        if active is not None:
            run_id = active.info.run_id
        else:
            run_id = client.create_run(_experiment_id(client), run_name=f"greenlm-{result.run_id[:8]}").info.run_id
            owned = True
    _log_result(mlflow, client, run_id, result, step if step is not None else result.steps)
    if owned:
        client.set_terminated(run_id, _mlflow_status(result.status))
    return run_id


def _log_result(mlflow: Any, client: Any, run_id: str, result: RunResult, step: int) -> None:
    from mlflow.entities import Metric, RunTag

    now_ms = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now_ms, step) for k, v in run_metrics(result).items()],
        tags=[RunTag(k, v) for k, v in run_tags(result).items()],
    )
    client.log_text(run_id, result.to_json(timeline=True), f"greenlm/{result.run_id}.json")


def _experiment_id(client: Any) -> str:
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if name:
        exp = client.get_experiment_by_name(name)
        return str(exp.experiment_id if exp is not None else client.create_experiment(name))
    return os.environ.get("MLFLOW_EXPERIMENT_ID") or "0"


def _mlflow_status(status: str) -> str:
    return {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}.get(status, "FINISHED")


class MlflowListener:
    """A tracker listener: live metrics while the window is open, :func:`log_run` at its end.

    ``run_id``: the MLflow run to log into; default: the run active in the thread that opens
    the window, else a new run (ended with the window, status FINISHED / FAILED / KILLED).
    """

    def __init__(self, run_id: str | None = None, *, every_s: float = 10.0) -> None:
        self._mlflow = _mlflow()
        self._given_run_id = run_id
        self.run_id = run_id
        #: The MLflow run the last window was logged into.
        self.last_run_id: str | None = None
        self.every_s = float(every_s)
        self._client: Any = None
        self._owned = False
        self._next = 0.0
        self._lock = threading.Lock()

    def on_start(self, tracker: Any) -> None:
        with self._lock:
            self._client = self._mlflow.MlflowClient()
            self._owned = False
            self.run_id = self._given_run_id
            if self.run_id is None:
                active = self._mlflow.active_run()
                if active is not None:
                    self.run_id = active.info.run_id
                else:
                    name = f"greenlm-{(tracker.run_id or '')[:8]}"
                    self.run_id = self._client.create_run(_experiment_id(self._client), run_name=name).info.run_id
                    self._owned = True
            self._next = time.monotonic()

    def on_sample(self, tracker: Any, t_s: float, powers_w: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = time.monotonic()
        with self._lock:
            if self._client is None or now < self._next or self.run_id is None:
                return
            self._next = now + self.every_s
            ms, step = int(time.time() * 1000), int(tracker.steps)
            e = tracker.energy_j_so_far()
            metrics = [
                Metric(metric_name("energy_j"), e, ms, step),
                Metric(metric_name("co2e_g"), account(e, tracker.carbon).co2e_g, ms, step),
            ]
            metrics += [Metric(metric_name("power_w", d), p, ms, step) for d, p in powers_w.items()]
            self._client.log_batch(self.run_id, metrics=metrics)

    def on_stop(self, result: RunResult) -> None:
        with self._lock:
            if self._client is None or self.run_id is None:
                return
            _log_result(self._mlflow, self._client, self.run_id, result, result.steps)
            if self._owned:
                self._client.set_terminated(self.run_id, _mlflow_status(result.status))
            self.last_run_id = self.run_id
            self._client = None
