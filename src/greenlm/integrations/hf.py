"""Hugging Face ``Trainer`` callback: energy and CO2e of train / evaluate / predict.

``Trainer(..., callbacks=[GreenlmCallback(location="DEU")])`` (extra ``hf``). Each top-level
``trainer.train()``, ``trainer.evaluate()`` or ``trainer.predict()`` call is one stored run
(unless you pass a ``tracker`` whose window you opened yourself), with phases:

* ``train``: from ``on_train_begin`` to ``on_train_end``; every optimizer step is a tracker
  step, so the run has energy per step and the forecast works;
* ``evaluate`` / ``predict`` (``train/evaluate`` when run during training): from the end of the
  loop's first batch to ``on_evaluate`` / ``on_predict``. The Trainer has no hook before the
  first batch, so that batch's energy stays in the enclosing phase (or before the window,
  for a stand-alone ``evaluate()``): the resolution of these phases is one batch.

What goes into the Trainer's logs (and so to every reporter that reads them, and to
``trainer.state.log_history``):

* every ``on_log``: ``greenlm_energy_j`` and ``greenlm_co2e_g`` (cumulative for the run, up
  to the tracker's latest sample) and ``greenlm_power_w`` (mean IT power since the previous
  log);
* at the end of each phase: ``greenlm_<phase>_energy_j`` / ``greenlm_<phase>_co2e_g``, added
  to the metrics ``evaluate()`` / ``predict()`` return (with the metric prefix) and as one
  entry of ``log_history`` at the end of training.

Reporters that run before this callback in the Trainer's list do not see the keys of the
same ``on_log`` call; ``callback.add_to(trainer)`` puts it first.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from greenlm.carbon.accounting import account
from greenlm.integrations._extras import require
from greenlm.integrations._phases import PhaseDriver, default_tracker
from greenlm.tracking.result import RunResult

_tf: Any = require("transformers", feature="greenlm.integrations.hf", extra="hf", package="transformers")

PREFIX = "greenlm_"


class GreenlmCallback(_tf.TrainerCallback):
    """Track the energy of a ``transformers.Trainer`` and log it with the Trainer's metrics.

    ``tracker``: an :class:`~greenlm.EnergyTracker` to use; otherwise
    one is built from ``tracker_kwargs`` (``project=``, ``location=``, ``interval_s=``, ...: the
    same settings as ``EnergyTracker``), distributed when launched with several ranks.
    """

    def __init__(self, tracker: Any = None, **tracker_kwargs: Any) -> None:
        self.tracker = default_tracker(tracker, tracker_kwargs)
        self.driver = PhaseDriver(self.tracker)
        self._last_log: tuple[float, float] | None = None  # (monotonic, energy_j)
        self._loop_started: float | None = None

    # ------------------------------------------------------------------ results
    @property
    def results(self) -> list[RunResult]:
        """Results of the runs this callback opened and closed, oldest first."""
        return self.driver.results

    @property
    def result(self) -> RunResult:
        """The last closed run (``IndexError`` before any)."""
        return self.driver.results[-1]

    def add_to(self, trainer: Any) -> GreenlmCallback:
        """Add this callback first in ``trainer``'s list, so every reporter sees its log keys."""
        trainer.callback_handler.callbacks.insert(0, self)
        return self

    # ------------------------------------------------------------------ training
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.driver.begin("train")
        self._last_log = None
        if (
            getattr(state, "max_steps", 0)
            and hasattr(self.tracker, "total_steps")
            and self.tracker.total_steps is None
            and self.driver.owned
        ):
            self.tracker.total_steps = int(state.max_steps)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.tracker.step()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._loop_started = None  # a loop left open is closed with the train phase
        t1 = time.monotonic()
        result = self.driver.end("train")
        entry: dict[str, Any] = self._phase_figures("train", result, t1)
        entry["step"] = state.global_step
        state.log_history.append(entry)

    # ------------------------------------------------------------------ evaluation
    def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._loop_started is None:
            self._loop_started = time.monotonic()
            self.driver.begin(_loop_kind())

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
        self._end_loop("eval", metrics)

    def on_predict(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
        self._end_loop("test", metrics)

    def _end_loop(self, default_prefix: str, metrics: Any) -> None:
        t1 = time.monotonic()
        t0, self._loop_started = self._loop_started, None
        name = next((n for n in ("evaluate", "predict") if self.driver.is_open(n)), None)
        if t0 is None or name is None:
            return
        result = self.driver.end(name)
        if isinstance(metrics, dict):
            prefix = _metric_prefix(metrics, default_prefix)
            for k, v in self._phase_figures(name, result, t1, since=t0).items():
                metrics[f"{prefix}_{k}"] = v

    # ------------------------------------------------------------------ logs
    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if not self.tracker.running or not isinstance(logs, dict):
            return
        now = time.monotonic()
        energy_j = self.tracker.energy_at(now)
        extra = {f"{PREFIX}energy_j": energy_j, f"{PREFIX}co2e_g": account(energy_j, self.tracker.carbon).co2e_g}
        t_prev, e_prev = self._last_log or (self.tracker.started_monotonic or now, 0.0)
        if now > t_prev:
            extra[f"{PREFIX}power_w"] = (energy_j - e_prev) / (now - t_prev)
        self._last_log = (now, energy_j)
        logs.update(extra)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(extra)

    # ------------------------------------------------------------------ helpers
    def _phase_figures(
        self, name: str, result: RunResult | None, t1: float, since: float | None = None
    ) -> dict[str, float]:
        """Energy and CO2e of phase ``name``: from the closed run when this callback closed
        it, else measured so far (up to the tracker's latest sample).
        """
        if result is not None:
            ph = result.phase(name)
            e, co2 = ph.energy_j, ph.co2e_g
        else:
            t0 = since if since is not None else (self.tracker.started_monotonic or t1)
            e = max(0.0, self.tracker.energy_at(t1) - self.tracker.energy_at(t0))
            co2 = account(e, self.tracker.carbon).co2e_g
        return {f"{PREFIX}{name}_energy_j": e, f"{PREFIX}{name}_co2e_g": co2}


def _loop_kind() -> str:
    """``predict`` when ``Trainer.predict`` is on the call stack, else ``evaluate``.

    The Trainer's prediction-step hook does not say which loop it belongs to; the method that
    started the loop does (a public method name, looked up once per loop).
    """
    f = sys._getframe(1)
    for _ in range(12):
        if f is None:
            break
        if f.f_code.co_name == "predict" and "transformers" in f.f_code.co_filename:
            return "predict"
        f = f.f_back  # type: ignore[assignment]
    return "evaluate"


def _metric_prefix(metrics: dict[str, Any], default: str) -> str:
    """The prefix the Trainer put on this loop's metrics (``eval``, ``test``, custom)."""
    for k in metrics:
        if k.endswith("_runtime"):
            return k[: -len("_runtime")]
    return default
