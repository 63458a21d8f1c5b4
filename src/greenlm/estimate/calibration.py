"""Calibration from measured runs: effective MFU and power fractions per accelerator.

A tracked run that records its model size and tokens in ``metadata`` (``params``, ``tokens``,
``hardware``, optionally ``chips``, ``precision``, ``task`` = train | finetune | inference,
``active_params``, or ``flops`` directly) tells us, for its hardware:

* effective MFU = FLOPs / (peak FLOP/s x chips x duration);
* accelerator power fraction = measured accelerator (``gpu``) energy / (duration x chips x TDP);
* host fraction = measured CPU + RAM energy / (duration x chips x TDP).

Per hardware the median over runs is kept, with the smallest and largest as the range, in
``$GREENLM_HOME/calibration.json``; ``--calibrated`` then uses them instead of the defaults.
"""

from __future__ import annotations

import datetime as _dt
import json
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greenlm.config import greenlm_home
from greenlm.errors import ConfigError, GreenlmError
from greenlm.estimate.hardware import find_hardware
from greenlm.estimate.uncertainty import Range

CALIBRATION_FILE = "calibration.json"
FORMAT_VERSION = 1
ACCELERATOR_KINDS = ("gpu", "tpu", "accelerator")
HOST_KINDS = ("cpu", "ram")


@dataclass(frozen=True)
class HardwareCalibration:
    """Fitted values for one accelerator, and how many runs support each."""

    hardware: str
    mfu: Range | None
    power_fraction: Range | None
    host_fraction: Range | None
    n_runs_mfu: int
    n_runs_power: int
    run_ids: tuple[str, ...]

    @property
    def n_runs(self) -> int:
        return len(self.run_ids)

    def to_dict(self) -> dict[str, Any]:
        def r(x: Range | None) -> dict[str, float] | None:
            return None if x is None else {"value": x.value, "low": x.low, "high": x.high}

        return {
            "hardware": self.hardware,
            "mfu": r(self.mfu),
            "power_fraction": r(self.power_fraction),
            "host_fraction": r(self.host_fraction),
            "n_runs": self.n_runs,
            "n_runs_mfu": self.n_runs_mfu,
            "n_runs_power": self.n_runs_power,
            "run_ids": list(self.run_ids),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HardwareCalibration:
        def r(x: Any) -> Range | None:
            return None if not x else Range(float(x["value"]), float(x["low"]), float(x["high"]))

        return cls(
            hardware=str(d["hardware"]),
            mfu=r(d.get("mfu")),
            power_fraction=r(d.get("power_fraction")),
            host_fraction=r(d.get("host_fraction")),
            n_runs_mfu=int(d.get("n_runs_mfu", 0)),
            n_runs_power=int(d.get("n_runs_power", 0)),
            run_ids=tuple(d.get("run_ids", ())),
        )


@dataclass(frozen=True)
class RunFit:
    """What one run says about its hardware."""

    run_id: str
    hardware: str
    mfu: float | None
    power_fraction: float | None
    host_fraction: float | None


@dataclass(frozen=True)
class Calibration:
    """The result of a calibration: fitted values per hardware, and the runs left out."""

    hardware: dict[str, HardwareCalibration]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (run_id, why)
    path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "hardware": {k: v.to_dict() for k, v in self.hardware.items()},
            "skipped": [{"run_id": r, "reason": why} for r, why in self.skipped],
            "path": str(self.path) if self.path else None,
        }


def calibration_path() -> Path:
    """``$GREENLM_HOME/calibration.json``."""
    return greenlm_home() / CALIBRATION_FILE


def _num(meta: Mapping[str, Any], key: str) -> float | None:
    v = meta.get(key)
    if v is None or v == "":
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if x > 0 and x == x and x != float("inf") else None


def fit_run(run: Mapping[str, Any]) -> RunFit:
    """Fit one run; raises ConfigError saying why the run cannot be used."""
    if run.get("status", "completed") != "completed":
        raise ConfigError(f"status is {run.get('status')!r}, not 'completed'")
    meta = run.get("metadata") or {}
    hw_name = meta.get("hardware")
    if not hw_name:
        raise ConfigError("metadata has no 'hardware'")
    hw = find_hardware(str(hw_name))
    duration = _num(run, "duration_s")
    if duration is None:
        raise ConfigError("duration_s is missing or not positive")
    chips = _num(meta, "chips") or 1.0
    flops = _num(meta, "flops")
    if flops is None:
        params = _num(meta, "active_params") or _num(meta, "params")
        tokens = _num(meta, "tokens")
        if params is None or tokens is None:
            raise ConfigError("metadata lacks 'params' and 'tokens' (or 'flops')")
        task = str(meta.get("task", "train")).lower()
        factor = {"train": 6.0, "pretrain": 6.0, "finetune": 6.0, "inference": 2.0}.get(task)
        if factor is None:
            raise ConfigError(f"metadata 'task' is {task!r}; use train, finetune or inference")
        flops = factor * params * tokens
    mfu: float | None = None
    try:
        peak = hw.peak_flops(str(meta.get("precision", "bf16")))
        mfu = flops / (peak * chips * duration)
    except ConfigError:
        mfu = None
    if mfu is not None and not 0 < mfu <= 1:
        raise ConfigError(f"implied MFU {mfu:.3g} is outside (0, 1]: check params/tokens/chips")
    comps = run.get("components") or []
    acc_j = sum(float(c.get("energy_j", 0)) for c in comps if c.get("kind") in ACCELERATOR_KINDS)
    host_j = sum(float(c.get("energy_j", 0)) for c in comps if c.get("kind") in HOST_KINDS)
    frac = host = None
    if acc_j > 0 and hw.tdp_w:
        frac = acc_j / (duration * chips * hw.tdp_w)
        host = host_j / (duration * chips * hw.tdp_w)
    if mfu is None and frac is None:
        raise ConfigError(
            "neither MFU nor power could be fitted (no peak throughput or no accelerator energy measured)"
        )
    return RunFit(str(run.get("run_id", "?")), hw.name, mfu, frac, host)


def _spread(values: list[float]) -> Range | None:
    if not values:
        return None
    return Range(statistics.median(values), min(values), max(values))


def fit(runs: Iterable[Mapping[str, Any]]) -> Calibration:
    """Fit every usable run and aggregate per hardware (median, min-max range)."""
    fits: dict[str, list[RunFit]] = {}
    skipped: list[tuple[str, str]] = []
    for run in runs:
        rid = str(run.get("run_id", "?"))
        try:
            f = fit_run(run)
        except GreenlmError as e:
            skipped.append((rid, str(e)))
            continue
        fits.setdefault(f.hardware, []).append(f)
    out = {}
    for name, fs in sorted(fits.items()):
        mfus = [f.mfu for f in fs if f.mfu is not None]
        fracs = [f.power_fraction for f in fs if f.power_fraction is not None]
        hosts = [f.host_fraction for f in fs if f.host_fraction is not None]
        out[name] = HardwareCalibration(
            hardware=name,
            mfu=_spread(mfus),
            power_fraction=_spread(fracs),
            host_fraction=_spread(hosts),
            n_runs_mfu=len(mfus),
            n_runs_power=len(fracs),
            run_ids=tuple(f.run_id for f in fs),
        )
    return Calibration(out, skipped)


def save(cal: Calibration, path: Path | None = None) -> Path:
    """Write ``cal`` as JSON (replacing the file); returns the path written."""
    p = Path(path) if path else calibration_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "format_version": FORMAT_VERSION,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "hardware": {k: v.to_dict() for k, v in cal.hardware.items()},
    }
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    tmp.replace(p)
    return p


def load(path: Path | None = None) -> dict[str, HardwareCalibration]:
    """Fitted values per hardware name; raises ConfigError if no calibration exists."""
    p = Path(path) if path else calibration_path()
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"No calibration at {p}: run `greenlm estimate calibrate` first (it needs tracked "
            "runs with metadata params, tokens and hardware)."
        ) from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"Cannot read calibration file {p}: {e}. Re-run `greenlm estimate calibrate`.") from e
    return {k: HardwareCalibration.from_dict(v) for k, v in doc.get("hardware", {}).items()}


def calibrate(runs: Iterable[Mapping[str, Any]], path: Path | None = None) -> Calibration:
    """Fit ``runs`` (result dicts, e.g. ``RunStore.list_runs()``) and save the fit.

    Raises ConfigError, saying why runs were left out, when no run can be used.
    """
    cal = fit(runs)
    if not cal.hardware:
        why = "; ".join(f"{r}: {w}" for r, w in cal.skipped[:5]) or "no runs were given"
        raise ConfigError(
            "No run could be used for calibration (" + why + "). Record metadata with "
            "EnergyTracker(metadata={'params': ..., 'tokens': ..., 'hardware': 'A100', "
            "'chips': 1})."
        )
    return Calibration(cal.hardware, cal.skipped, save(cal, path))
