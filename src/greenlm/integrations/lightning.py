"""PyTorch Lightning callback: energy and CO2e of fit / validate / test / predict.

``pl.Trainer(callbacks=[GreenlmLightningCallback(location="DEU")])`` (extra ``lightning``).
Each top-level ``fit`` / ``validate`` / ``test`` / ``predict`` call is one stored run (unless
the callback is given a ``tracker`` whose window you opened yourself), with phases
``fit``, ``fit/validate`` (the sanity check), ``fit/train``, ``fit/train/validate``
(validation during training), and ``validate``, ``test``, ``predict`` for the stand-alone
calls. Every training batch is a tracker step.

Every ``log_every_n_steps`` training steps, and at the end of each phase, the callback sends
``greenlm/energy_j``, ``greenlm/co2e_g`` (cumulative for the run, up to the tracker's latest
sample) and ``greenlm/power_w`` (mean IT power since the previous send) to the Trainer's
loggers; at the end of a phase, ``greenlm/<phase>_energy_j`` and ``greenlm/<phase>_co2e_g``.
"""

from __future__ import annotations

import time
from typing import Any

from greenlm.carbon.accounting import account
from greenlm.integrations._extras import require
from greenlm.integrations._phases import PhaseDriver, default_tracker
from greenlm.tracking.result import RunResult

_pl: Any = require(
    "pytorch_lightning", feature="greenlm.integrations.lightning", extra="lightning", package="pytorch-lightning"
)


class GreenlmLightningCallback(_pl.Callback):
    """Track the energy of a Lightning ``Trainer`` and send it to the Trainer's loggers.

    ``tracker``: an :class:`~greenlm.EnergyTracker` to use; otherwise
    one is built from ``tracker_kwargs`` (the same settings as ``EnergyTracker``).
    """

    def __init__(self, tracker: Any = None, **tracker_kwargs: Any) -> None:
        super().__init__()
        self.tracker = default_tracker(tracker, tracker_kwargs)
        self.driver = PhaseDriver(self.tracker)
        self._last: tuple[str | None, float, float] | None = None  # (run id, monotonic, energy_j)
        self._phase_t0: dict[str, float] = {}

    @property
    def results(self) -> list[RunResult]:
        """Results of the runs this callback opened and closed, oldest first."""
        return self.driver.results

    @property
    def result(self) -> RunResult:
        """The last closed run (``IndexError`` before any)."""
        return self.driver.results[-1]

    # ------------------------------------------------------------------ phases
    def _begin(self, name: str) -> None:
        self._phase_t0[name] = time.monotonic()
        self.driver.begin(name)

    def _end(self, trainer: Any, name: str) -> None:
        if not self.driver.is_open(name):
            return
        t1 = time.monotonic()
        t0 = self._phase_t0.pop(name, t1)
        live = self._live_figures()
        result = self.driver.end(name)
        if result is not None:
            ph = result.phase(name)
            e, co2 = ph.energy_j, ph.co2e_g
            live = {"greenlm/energy_j": result.energy_j, "greenlm/co2e_g": result.co2e_g}
        else:
            e = max(0.0, self.tracker.energy_at(t1) - self.tracker.energy_at(t0))
            co2 = account(e, self.tracker.carbon).co2e_g
        self._send(trainer, {**live, f"greenlm/{name}_energy_j": e, f"greenlm/{name}_co2e_g": co2})

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._last = None
        self._begin("fit")

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._end(trainer, "fit")

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._begin("train")

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._end(trainer, "train")

    def on_sanity_check_start(self, trainer: Any, pl_module: Any) -> None:
        self._begin("validate")

    def on_sanity_check_end(self, trainer: Any, pl_module: Any) -> None:
        self._end(trainer, "validate")

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        if not getattr(trainer, "sanity_checking", False):
            self._begin("validate")

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if not getattr(trainer, "sanity_checking", False):
            self._end(trainer, "validate")

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        self._begin("test")

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        self._end(trainer, "test")

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        self._begin("predict")

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        self._end(trainer, "predict")

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.driver.fail(exception)

    # ------------------------------------------------------------------ steps and logs
    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.tracker.step()
        every = max(1, int(getattr(trainer, "log_every_n_steps", 50) or 1))
        if self.tracker.steps % every == 0:
            self._send(trainer, self._live_figures())

    def _live_figures(self) -> dict[str, float]:
        if not self.tracker.running:
            return {}
        now, energy_j = self.tracker.sample_now()  # both ends of every interval are meter readings
        out = {"greenlm/energy_j": energy_j, "greenlm/co2e_g": account(energy_j, self.tracker.carbon).co2e_g}
        run_id = self.tracker.run_id
        if self._last is not None and self._last[0] == run_id:
            _, t_prev, e_prev = self._last
        else:  # the first send of this run (a validate() after fit() is a new run): from its start
            t_prev, e_prev = (self.tracker.started_monotonic or now), 0.0
        if now > t_prev:
            out["greenlm/power_w"] = (energy_j - e_prev) / (now - t_prev)
        self._last = (run_id, now, energy_j)
        return out

    def _send(self, trainer: Any, metrics: dict[str, float]) -> None:
        if not metrics or not getattr(trainer, "is_global_zero", True):
            return
        step = int(getattr(trainer, "global_step", 0))
        for logger in getattr(trainer, "loggers", []) or []:
            logger.log_metrics(metrics, step=step)
