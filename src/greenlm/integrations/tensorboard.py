"""TensorBoard scalars of a tracking window: ``EnergyTracker(listeners=[TensorBoardListener(log_dir)])``.

Written through torch's ``SummaryWriter`` (extra ``tensorboard``). Each window (run) gets its
own subdirectory of ``log_dir`` by default, ``<project>/<UTC start time>-<run id prefix>``,
so several runs written to one directory stay separate runs in TensorBoard (its reader treats
every directory of event files as one run, and merges runs written to one directory);
``per_run=False`` writes into ``log_dir`` itself (for a directory that is already per run).
Tags, all under ``greenlm/``:

* ``power_w/<device>`` and ``power_w/total``: mean power since the previous point (the
  energy measured in between over the time in between);
* ``energy_j``: cumulative IT energy of the window; ``co2e_g``: its CO2e (grid intensity x
  PUE of the tracker's carbon settings);
* at the end of the window: ``phase/<path>/energy_j`` and ``phase/<path>/co2e_g`` for every
  phase, the final ``energy_j`` / ``co2e_g`` (equal to the run's result), and a text entry
  ``greenlm/provenance`` saying how each figure was obtained.

The x axis (``global_step``) never has two points on one step and only increases:

* ``step_axis="samples"`` (default): the sample number, one point per sample, the final
  figures one step after the last sample;
* ``step_axis="steps"``: the tracker's step count (``tracker.step()``), so the curves line up
  with a loss logged per step: one point per step, holding the last sample taken while the
  count had that value (written once the count moves on, or at the end, where the final
  figures replace it). Steps shorter than the sampling interval get no point of their own.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

from greenlm import humanize
from greenlm.carbon.accounting import account
from greenlm.integrations._extras import require
from greenlm.tracking.listeners import Listener

STEP_AXES = ("samples", "steps")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class _Point:
    """One reading of the window, not yet written: step, time, component energies."""

    __slots__ = ("energies", "step", "t_s")

    def __init__(self, step: int, t_s: float, energies: dict[str, float]) -> None:
        self.step, self.t_s, self.energies = step, t_s, energies


class TensorBoardListener(Listener):
    """A tracker listener that writes greenlm's scalars to a TensorBoard log directory."""

    def __init__(
        self, log_dir: str | Path, *, step_axis: str = "samples", per_run: bool = True, flush_secs: int = 10
    ) -> None:
        if step_axis not in STEP_AXES:
            from greenlm.errors import ConfigError

            raise ConfigError(f"step_axis must be one of {STEP_AXES}, got {step_axis!r}.")
        tb = require(
            "torch.utils.tensorboard", feature="TensorBoard logging", extra="tensorboard", package="tensorboard"
        )
        self._writer_cls = tb.SummaryWriter
        self.log_dir = str(log_dir)
        self.step_axis = step_axis
        self.per_run = per_run
        self.flush_secs = flush_secs
        #: Where the current (or last) window's event files are.
        self.run_dir: str | None = None
        self._writer: Any = None
        self._tracker: Any = None
        self._samples = 0
        self._written: _Point | None = None  # the last point written
        self._pending: _Point | None = None  # steps axis: the latest reading of the current step
        self._lock = threading.Lock()

    def _run_dir(self, tracker: Any) -> str:
        if not self.per_run:
            return self.log_dir
        cfg = getattr(tracker, "config", None)
        project = _UNSAFE.sub("_", str(getattr(cfg, "project", None) or "greenlm")).strip("._") or "greenlm"
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        rid = str(getattr(tracker, "run_id", None) or "")[:8]
        return str(Path(self.log_dir) / project[:64] / f"{stamp}-{rid}")

    def on_start(self, tracker: Any) -> None:
        with self._lock:
            self._tracker = tracker
            self._samples = 0
            self._written = _Point(0, 0.0, {})
            self._pending = None
            self.run_dir = self._run_dir(tracker)
            self._writer = self._writer_cls(log_dir=self.run_dir, flush_secs=self.flush_secs)

    def on_sample(self, tracker: Any, t_s: float, powers_w: dict[str, float]) -> None:
        with self._lock:
            if self._writer is None:
                return
            self._samples += 1
            t, energies = tracker.latest_sample()
            if self.step_axis == "samples":
                self._write(_Point(self._samples, t, energies), tracker.carbon)
                return
            point = _Point(int(tracker.steps), t, energies)
            if self._pending is not None and point.step > self._pending.step:
                self._write(self._pending, tracker.carbon)
            if point.step > self._written_step():
                self._pending = point

    def _written_step(self) -> int:
        return self._written.step if self._written is not None and self._written.energies else -1

    def _write(self, p: _Point, carbon: Any, *, energy_j: float | None = None, co2e_g: float | None = None) -> None:
        """Write point ``p``: power since the previous point, cumulative energy and CO2e."""
        w, prev = self._writer, self._written
        wall = time.time()
        if prev is not None and p.t_s > prev.t_s:
            dt = p.t_s - prev.t_s
            total = 0.0
            for device, e in p.energies.items():
                power = (e - prev.energies.get(device, 0.0)) / dt
                total += power
                w.add_scalar(f"greenlm/power_w/{device}", power, p.step, walltime=wall)
            if p.energies:
                w.add_scalar("greenlm/power_w/total", total, p.step, walltime=wall)
        e_total = sum(p.energies.values()) if energy_j is None else energy_j
        g = account(e_total, carbon).co2e_g if co2e_g is None else co2e_g
        w.add_scalar("greenlm/energy_j", e_total, p.step, walltime=wall)
        w.add_scalar("greenlm/co2e_g", g, p.step, walltime=wall)
        self._written = p

    def on_stop(self, result: Any) -> None:
        with self._lock:
            w = self._writer
            if w is None:
                return
            tracker = self._tracker
            carbon = getattr(tracker, "carbon", None)
            final_energies = {c.name: c.energy_j for c in result.components}
            if self.step_axis == "samples":
                step = self._samples + 1
            else:
                step = max(int(result.steps), self._written_step() + 1)
                if self._pending is not None and self._pending.step < step:
                    self._write(self._pending, carbon)
            self._pending = None
            final = _Point(step, float(result.duration_s), final_energies)
            self._write(final, carbon, energy_j=result.energy_j, co2e_g=result.co2e_g)
            wall = time.time()
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
        f"run `{result.run_id}` ({result.status}), {humanize.energy(result.energy_j)} IT energy, "
        f"{humanize.co2e(result.co2e_g)}, provenance **{result.provenance}**",
        "",
        "| component | energy | provenance | detail |",
        "|---|---|---|---|",
    ]
    for c in result.components:
        lines.append(f"| {c.name} | {humanize.energy(c.energy_j)} | {c.provenance} | {c.detail} |")
    lines += [
        "",
        f"grid intensity {loc.get('intensity_g_per_kwh')} g/kWh ({loc.get('code')}, "
        f"{loc.get('source')}, {loc.get('year')}); PUE {result.pue} ({result.pue_source})",
    ]
    lines += [f"- warning: {w}" for w in result.warnings]
    return "\n".join(lines)
