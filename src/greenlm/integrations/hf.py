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

* every ``on_log``: ``greenlm_energy_j`` and ``greenlm_co2e_g`` (cumulative for the run, read
  from the meters at the moment of the log) and ``greenlm_power_w``: the mean IT power over
  the interval since the previous log of the same run (since the run's start for its first
  log), that is the energy measured in that interval divided by its length. It is never
  negative and never above what the meters can report, since both ends are meter readings;
  a log of evaluation metrics (keys ``eval_*``) carries them with the same prefix
  (``eval_greenlm_power_w``), so reporters file them with that loop;
* at the end of each phase: ``greenlm_<phase>_energy_j``, ``greenlm_<phase>_co2e_g`` and
  ``greenlm_<phase>_power_w`` (the phase's mean power), added to the metrics ``evaluate()``
  / ``predict()`` return (with the metric prefix) and as one entry of ``log_history`` at the
  end of training.

Reporters (``report_to``: TensorBoard, MLflow, W&B...) only see keys that were added before
their own ``on_log`` runs, and the Trainer puts them before user callbacks: so the callback
moves itself to the front of the Trainer's callback list when the Trainer starts (the
documented ``callbacks=[cb]`` and ``trainer.add_callback(cb)`` both work; ``cb.add_to(trainer)``
does it at once).
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
        self._last_log: tuple[str | None, float, float] | None = None  # (run id, monotonic, energy_j)
        self._loop_started: float | None = None
        self._train_started: float | None = None

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
        cbs = trainer.callback_handler.callbacks
        if any(c is self for c in cbs):
            _to_front(cbs, self)
        else:
            cbs.insert(0, self)
        return self

    def _first(self) -> None:
        """Move this callback to the front of the list of the Trainer calling it.

        The Trainer hands its hooks no reference to itself; the caller is its public
        ``CallbackHandler`` (whose ``callbacks`` list holds this callback). Moving within the
        list while the handler iterates it is safe: the callbacks after this one keep their
        positions relative to the iteration.
        """
        handler_cls = getattr(_tf, "trainer_callback", None)
        handler_cls = getattr(handler_cls, "CallbackHandler", None)
        f = sys._getframe(1)
        for _ in range(6):
            if f is None:
                return
            handler = f.f_locals.get("self")
            if handler_cls is not None and isinstance(handler, handler_cls):
                cbs = getattr(handler, "callbacks", None)
                if isinstance(cbs, list) and cbs and cbs[0] is not self and any(c is self for c in cbs):
                    _to_front(cbs, self)
                return
            f = f.f_back  # type: ignore[assignment]

    def on_init_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._first()

    # ------------------------------------------------------------------ training
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._first()
        self.driver.begin("train")
        self._train_started = time.monotonic()
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
        self._train_started = None
        t1 = time.monotonic()
        result = self.driver.end("train")
        entry: dict[str, Any] = self._phase_figures("train", result, t1)
        entry["step"] = state.global_step
        state.log_history.append(entry)

    # ------------------------------------------------------------------ evaluation
    def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._loop_started is None:
            self._first()
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
        self._first()  # for the next logs, if the Trainer was built before this callback was added
        if not self.tracker.running or not isinstance(logs, dict):
            return
        now, energy_j = self.tracker.sample_now()  # both ends of every interval are meter readings
        if "train_runtime" in logs and self._train_started is not None:
            # the Trainer's closing summary, logged at the step of the last log: the train phase
            # so far rather than a second point of the running figures on that step
            extra = self._phase_figures("train", None, now, since=self._train_started)
            logs.update(extra)
            if state.log_history and state.log_history[-1].get("step") == state.global_step:
                state.log_history[-1].update(extra)
            return
        run_id = self.tracker.run_id
        if self._last_log is not None and self._last_log[0] == run_id:
            _, t_prev, e_prev = self._last_log
        else:  # the first log of this run: from the run's start
            t_prev, e_prev = (self.tracker.started_monotonic or now), 0.0
        pre = _log_prefix(logs)
        extra = {
            f"{pre}{PREFIX}energy_j": energy_j,
            f"{pre}{PREFIX}co2e_g": account(energy_j, self.tracker.carbon).co2e_g,
        }
        if now > t_prev:
            extra[f"{pre}{PREFIX}power_w"] = (energy_j - e_prev) / (now - t_prev)
        self._last_log = (run_id, now, energy_j)
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
            e, co2, dur = ph.energy_j, ph.co2e_g, ph.duration_s
        else:
            t0 = since if since is not None else (self.tracker.started_monotonic or t1)
            e = max(0.0, self.tracker.energy_at(t1) - self.tracker.energy_at(t0))
            co2 = account(e, self.tracker.carbon).co2e_g
            dur = t1 - t0
        out = {f"{PREFIX}{name}_energy_j": e, f"{PREFIX}{name}_co2e_g": co2}
        if dur > 0:
            out[f"{PREFIX}{name}_power_w"] = e / dur
        return out


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


def _to_front(callbacks: list[Any], cb: Any) -> None:
    """Move ``cb`` (by identity) to index 0 of ``callbacks``."""
    i = next(i for i, c in enumerate(callbacks) if c is cb)
    callbacks.insert(0, callbacks.pop(i))


def _log_prefix(logs: dict[str, Any]) -> str:
    """``eval_`` (or the loop's own prefix) for a log of evaluation metrics, else ''."""
    for k in logs:
        if k.endswith("_runtime") and k != "train_runtime":
            return k[: -len("runtime")]
    return ""


def _metric_prefix(metrics: dict[str, Any], default: str) -> str:
    """The prefix the Trainer put on this loop's metrics (``eval``, ``test``, custom)."""
    for k in metrics:
        if k.endswith("_runtime"):
            return k[: -len("_runtime")]
    return default
