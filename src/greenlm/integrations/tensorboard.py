"""TensorBoard scalars of a tracking window: ``EnergyTracker(listeners=[TensorBoardListener(log_dir)])``.

Written through torch's ``SummaryWriter`` (extra ``tensorboard``). Tags, all under
``greenlm/``:

* ``power_w/<device>`` and ``power_w/total``: average power over the last sampling interval;
* ``energy_j``: cumulative IT energy of the window; ``co2e_g``: its CO2e (grid intensity x
  PUE of the tracker's carbon settings);
* at the end of the window: ``phase/<path>/energy_j`` and ``phase/<path>/co2e_g`` for every
  phase, the final ``energy_j`` / ``co2e_g`` (equal to the run's result), and a text entry
  ``greenlm/provenance`` saying how each figure was obtained.

The x axis (``global_step``) is the tracker's step count (``step_axis="steps"``, so the
curves line up with the loss; samples within one step share it and are told apart by wall
time), or the sample index (``step_axis="samples"``).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from greenlm.carbon.accounting import account
from greenlm.integrations._extras import require
from greenlm.tracking.listeners import Listener

STEP_AXES = ("steps", "samples")


class TensorBoardListener(Listener):
    """A tracker listener that writes greenlm's scalars to a TensorBoard log directory."""

    def __init__(self, log_dir: str, *, step_axis: str = "steps", flush_secs: int = 10) -> None:
        if step_axis not in STEP_AXES:
            from greenlm.errors import ConfigError

            raise ConfigError(f"step_axis must be one of {STEP_AXES}, got {step_axis!r}.")
        tb = require(
            "torch.utils.tensorboard", feature="TensorBoard logging", extra="tensorboard", package="tensorboard"
        )
        self._writer_cls = tb.SummaryWriter
        self.log_dir = str(log_dir)
        self.step_axis = step_axis
        self.flush_secs = flush_secs
        self._writer: Any = None
        self._tracker: Any = None
        self._samples = 0
        self._lock = threading.Lock()

    def _step(self) -> int:
        if self.step_axis == "samples" or self._tracker is None:
            return self._samples
        return int(self._tracker.steps)

    def on_start(self, tracker: Any) -> None:
        with self._lock:
            self._tracker = tracker
            self._samples = 0
            self._writer = self._writer_cls(log_dir=self.log_dir, flush_secs=self.flush_secs)

    def on_sample(self, tracker: Any, t_s: float, powers_w: dict[str, float]) -> None:
        with self._lock:
            w = self._writer
            if w is None:
                return
            self._samples += 1
            step, wall = self._step(), time.time()
            for device, p in powers_w.items():
                w.add_scalar(f"greenlm/power_w/{device}", p, step, walltime=wall)
            if powers_w:
                w.add_scalar("greenlm/power_w/total", sum(powers_w.values()), step, walltime=wall)
            energy_j = tracker.energy_j_so_far()
            w.add_scalar("greenlm/energy_j", energy_j, step, walltime=wall)
            w.add_scalar("greenlm/co2e_g", account(energy_j, tracker.carbon).co2e_g, step, walltime=wall)

    def on_stop(self, result: Any) -> None:
        with self._lock:
            w = self._writer
            if w is None:
                return
            self._samples += 1
            step, wall = self._step(), time.time()
            w.add_scalar("greenlm/energy_j", result.energy_j, step, walltime=wall)
            w.add_scalar("greenlm/co2e_g", result.co2e_g, step, walltime=wall)
            for ph in result.phases:
                w.add_scalar(f"greenlm/phase/{ph.path}/energy_j", ph.energy_j, step, walltime=wall)
                w.add_scalar(f"greenlm/phase/{ph.path}/co2e_g", ph.co2e_g, step, walltime=wall)
            w.add_text("greenlm/provenance", _provenance_md(result), step, walltime=wall)
            w.close()
            self._writer = None
            self._tracker = None


def _provenance_md(result: Any) -> str:
    """A Markdown table of how each figure of the run was obtained."""
    loc = result.location
    lines = [
        f"run `{result.run_id}` ({result.status}), {result.energy_j:.6g} J IT energy, "
        f"{result.co2e_g:.6g} gCO2e, provenance **{result.provenance}**",
        "",
        "| component | energy_j | provenance | detail |",
        "|---|---|---|---|",
    ]
    for c in result.components:
        lines.append(f"| {c.name} | {c.energy_j:.6g} | {c.provenance} | {c.detail} |")
    lines += [
        "",
        f"grid intensity {loc.get('intensity_g_per_kwh')} g/kWh ({loc.get('code')}, "
        f"{loc.get('source')}, {loc.get('year')}); PUE {result.pue} ({result.pue_source})",
    ]
    lines += [f"- warning: {w}" for w in result.warnings]
    return "\n".join(lines)
