"""Calibration from measurements: effective MFU and power per accelerator, serving scales.

**Tracked runs.** A run tells us its hardware through ``metadata["hardware"]``: the mapping
the tracker records (``{"accelerator": model or None, "accelerator_count": n, "cpu": ...,
"cpu_threads": n}``) or, as before, a name (``"A100"``, with ``chips``). Its work comes from
``metadata`` too (``params``, ``tokens``, optionally ``task`` = train | finetune | inference,
``active_params``, ``precision``, or ``flops`` directly). For its hardware:

* effective MFU = FLOPs / (peak FLOP/s x chips x duration);
* accelerator power fraction = measured accelerator (``gpu``) energy / (duration x chips x TDP);
* host fraction = measured CPU + RAM energy / (duration x chips x TDP).

Per hardware the median over runs is kept, with the smallest and largest as the range, in
``$GREENLM_HOME/calibration.json``; ``--calibrated`` then uses them instead of the defaults.

**Serving benchmarks.** A ``greenlm bench serve`` JSON file (``kind`` =
``greenlm.bench.serve``) holds measured points of one deployment at several concurrencies.
One deployment determines how far its step time and its energy sit from the model's
prediction, not the model's ten constants: :func:`calibrate_bench` fits one time scale and
one energy scale for its accelerator (geometric mean ratios), saved under ``"serving"`` in
the same file and used by ``estimate inference --calibrated``.
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


def run_hardware(meta: Mapping[str, Any]) -> tuple[str, float | None]:
    """Accelerator name and count from a run's metadata (tracker mapping or a plain name)."""
    hw = meta.get("hardware")
    if isinstance(hw, Mapping):
        name = hw.get("accelerator")
        if not name:
            cpu = hw.get("cpu") or "unknown CPU"
            raise ConfigError(
                f"metadata 'hardware' records no accelerator (a CPU-only run on {cpu}): calibration fits accelerators"
            )
        count = hw.get("accelerator_count")
        try:
            n = float(count) if count not in (None, "") else None
        except (TypeError, ValueError):
            n = None
        return str(name), (n if n and n > 0 else None)
    if not hw:
        raise ConfigError("metadata has no 'hardware'")
    return str(hw), None


def fit_run(run: Mapping[str, Any]) -> RunFit:
    """Fit one run; raises ConfigError saying why the run cannot be used."""
    if run.get("status", "completed") != "completed":
        raise ConfigError(f"status is {run.get('status')!r}, not 'completed'")
    meta = run.get("metadata") or {}
    hw_name, count = run_hardware(meta)
    hw = find_hardware(hw_name)
    duration = _num(run, "duration_s")
    if duration is None:
        raise ConfigError("duration_s is missing or not positive")
    chips = _num(meta, "chips") or count or 1.0
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


def _as_dict(run: Any) -> Mapping[str, Any]:
    """A run as its JSON object: stored records and results have ``to_dict()``."""
    to_dict = getattr(run, "to_dict", None)
    return to_dict() if callable(to_dict) else run


def fit(runs: Iterable[Any]) -> Calibration:
    """Fit every usable run (``StoredRun``, ``RunResult`` or its JSON) per hardware (median, min-max range)."""
    fits: dict[str, list[RunFit]] = {}
    skipped: list[tuple[str, str]] = []
    for item in runs:
        run = _as_dict(item)
        if run.get("damaged"):
            skipped.append((str(run.get("run_id", "?")), f"damaged record: {run['damaged']}"))
            continue
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


def _read_doc(p: Path) -> dict[str, Any]:
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ConfigError(f"Cannot read calibration file {p}: {e}. Re-run `greenlm estimate calibrate`.") from e
    return doc if isinstance(doc, dict) else {}


def _write_doc(p: Path, doc: dict[str, Any]) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        **doc,
        "format_version": FORMAT_VERSION,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    tmp.replace(p)
    return p


def save(cal: Calibration, path: Path | None = None) -> Path:
    """Write the per-hardware fit of ``cal`` (keeping a serving calibration already there)."""
    p = Path(path) if path else calibration_path()
    doc = _read_doc(p)
    doc["hardware"] = {k: v.to_dict() for k, v in cal.hardware.items()}
    return _write_doc(p, doc)


def load(path: Path | None = None) -> dict[str, HardwareCalibration]:
    """Fitted values per hardware name; raises ConfigError if no calibration exists."""
    p = Path(path) if path else calibration_path()
    if not p.exists():
        raise ConfigError(
            f"No calibration at {p}: run `greenlm estimate calibrate` first (it needs tracked "
            "runs with metadata params, tokens and hardware)."
        )
    return {k: HardwareCalibration.from_dict(v) for k, v in _read_doc(p).get("hardware", {}).items()}


def load_or_empty(path: Path | None = None) -> dict[str, HardwareCalibration]:
    """Fitted values per hardware name, {} when the file holds none (or does not exist)."""
    p = Path(path) if path else calibration_path()
    return {k: HardwareCalibration.from_dict(v) for k, v in _read_doc(p).get("hardware", {}).items()}


def calibrate(runs: Iterable[Any], path: Path | None = None) -> Calibration:
    """Fit ``runs`` (result dicts, e.g. ``RunStore.list_runs()``) and save the fit.

    Raises ConfigError, saying why runs were left out, when no run can be used.
    """
    cal = fit(runs)
    if not cal.hardware:
        why = "; ".join(f"{r}: {w}" for r, w in cal.skipped[:5]) or "no runs were given"
        raise ConfigError(
            "No run could be used for calibration (" + why + "). Runs need their work in the "
            "metadata: `greenlm track --meta params=7e9 --meta tokens=2e9 -- python train.py` or "
            "EnergyTracker(metadata={'params': ..., 'tokens': ...}); the tracker records the "
            "hardware (or give 'hardware': 'A100', 'chips': 1)."
        )
    return Calibration(cal.hardware, cal.skipped, save(cal, path))


# ------------------------------------------------------------------ serving (bench files)
BENCH_KIND = "greenlm.bench.serve"
BENCH_VERSIONS = (1,)


@dataclass(frozen=True)
class ServingHardwareCalibration:
    """Scales on the serving model's time and energy for one accelerator, from measured points."""

    hardware: str
    time_scale: float
    energy_scale: float
    n_points: int
    source: str
    model: str = ""
    engine: str = ""
    residual_pct: float = 0.0  # median abs. J/token error of the points after scaling

    def to_dict(self) -> dict[str, Any]:
        return {
            "hardware": self.hardware,
            "time_scale": self.time_scale,
            "energy_scale": self.energy_scale,
            "n_points": self.n_points,
            "source": self.source,
            "model": self.model,
            "engine": self.engine,
            "residual_pct": self.residual_pct,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ServingHardwareCalibration:
        return cls(
            hardware=str(d["hardware"]),
            time_scale=float(d["time_scale"]),
            energy_scale=float(d["energy_scale"]),
            n_points=int(d.get("n_points", 0)),
            source=str(d.get("source", "")),
            model=str(d.get("model", "")),
            engine=str(d.get("engine", "")),
            residual_pct=float(d.get("residual_pct", 0.0)),
        )


def _bench_num(d: Mapping[str, Any], key: str, where: str, *, positive: bool = True) -> float:
    v = d.get(key)
    try:
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: '{key}' must be a number, got {v!r}.") from None
    if x != x or x in (float("inf"), float("-inf")) or (positive and x <= 0):
        raise ConfigError(f"{where}: '{key}' must be a positive number, got {v!r}.")
    return x


def bench_points(doc: Mapping[str, Any], where: str = "bench file") -> tuple[Any, list[Any]]:
    """Hardware and serving-model points from a ``greenlm bench serve`` document."""
    from greenlm.estimate import serving_model as sm
    from greenlm.estimate import weights as wf

    if not isinstance(doc, Mapping) or doc.get("kind") != BENCH_KIND:
        raise ConfigError(f"{where} is not a greenlm bench serve result: 'kind' must be {BENCH_KIND!r}.")
    if doc.get("version") not in BENCH_VERSIONS:
        raise ConfigError(
            f"{where}: version {doc.get('version')!r} is not one greenlm reads ({', '.join(map(str, BENCH_VERSIONS))})."
        )
    hwd = doc.get("hardware") or {}
    if not isinstance(hwd, Mapping) or not hwd.get("accelerator"):
        cpu = hwd.get("cpu") if isinstance(hwd, Mapping) else None
        raise ConfigError(
            f"{where}: no accelerator recorded (ran on {cpu or 'an unknown CPU'}): serving calibration fits "
            "accelerators."
        )
    hw = find_hardware(str(hwd["accelerator"]))
    if hw.memory_bw_gbps is None or hw.tdp_w is None:
        raise ConfigError(f"{where}: {hw.name} has no bandwidth or TDP in the accelerator table.")
    chips = int(_bench_num(hwd, "accelerator_count", f"{where} hardware"))
    info = doc.get("model_info") or {}
    if not isinstance(info, Mapping) or info.get("total_params") in (None, ""):
        raise ConfigError(
            f"{where}: model_info.total_params is missing; the serving model needs the parameter count "
            "(and active_params for a mixture of experts)."
        )
    total = _bench_num(info, "total_params", f"{where} model_info")
    active = _bench_num(info, "active_params", f"{where} model_info") if info.get("active_params") else total
    if active > total:
        raise ConfigError(f"{where}: active_params ({active:g}) exceeds total_params ({total:g}).")
    fmt = wf.resolve(hw, str(info.get("weight_precision") or "bf16"))
    raw = doc.get("points")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where}: 'points' must be a non-empty list of measured points.")
    moe = active < total
    layers = sm.inferred_layers(active)
    points = []
    for i, p in enumerate(raw):
        w = f"{where} point {i}"
        if not isinstance(p, Mapping):
            raise ConfigError(f"{w}: expected an object.")
        conc = _bench_num(p, "concurrency", w)
        req = _bench_num(p, "requests", w)
        out_tok = _bench_num(p, "output_tokens", w)
        prompt = _bench_num(p, "prompt_tokens", w, positive=False)
        jpt = _bench_num(p, "j_per_output_token", w)
        tps = _bench_num(p, "output_tokens_per_s", w)
        # prompt/output tokens are totals over the point's requests when they multiply out to its energy
        energy = _bench_num(p, "energy_j", w)
        per_req = abs(jpt * out_tok - energy) > 0.05 * energy
        o = out_tok if per_req else out_tok / req
        i_tok = prompt if per_req else prompt / req
        setup = sm.Setup(
            total_params=total,
            active_params=active,
            weight_bytes_per_param=fmt.bytes_per_param,
            peak_flops=fmt.peak_flops,
            memory_bw_bps=hw.memory_bw_gbps * 1e9,
            tdp_w=hw.tdp_w,
            chips=chips,
            tensor_parallel=1 if moe else chips,
            expert_parallel=chips if moe else 1,
            batch=conc,
            input_tokens=i_tok,
            output_tokens=max(o, 1.0),
            layers=layers,
            d_model=sm.SHAPE_RATIO * layers,
            kv_bytes_per_token=layers * 2 * sm.KV_HEADS * sm.HEAD_DIM * 2.0,
        )
        points.append(sm.Point(setup=setup, step_s=conc / tps, step_energy_j=jpt * conc, group="bench"))
    return hw, points


def fit_bench(doc: Mapping[str, Any], where: str = "bench file") -> ServingHardwareCalibration:
    """Fit the time and energy scales of one bench document (nothing is saved)."""
    from greenlm.estimate import serving as _serving
    from greenlm.estimate import serving_model as sm

    hw, points = bench_points(doc, where)
    const = _serving.shipped_constants()
    ts, es = sm.fit_scales(const, points)
    scaled = const.scaled(ts, es)
    errs = sorted(abs(scaled.energy_j(p.setup, scaled.time_s(p.setup)) / p.step_energy_j - 1.0) * 100.0 for p in points)
    return ServingHardwareCalibration(
        hardware=hw.name,
        time_scale=ts,
        energy_scale=es,
        n_points=len(points),
        source=f"{where}: {doc.get('model', '?')} on {doc.get('engine', '?')}",
        model=str(doc.get("model", "")),
        engine=str(doc.get("engine", "")),
        residual_pct=statistics.median(errs),
    )


def load_serving(path: Path | None = None) -> dict[str, ServingHardwareCalibration]:
    """Serving scales per hardware name ({} when none were fitted)."""
    p = Path(path) if path else calibration_path()
    return {k: ServingHardwareCalibration.from_dict(v) for k, v in _read_doc(p).get("serving", {}).items()}


def calibrate_bench(bench_path: str | Path, path: Path | None = None) -> tuple[ServingHardwareCalibration, Path]:
    """Fit a ``greenlm bench serve`` JSON file and save its scales under its accelerator."""
    bp = Path(bench_path)
    try:
        doc = json.loads(bp.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"Cannot read bench file {bp}: {e.strerror or e}.") from None
    except ValueError as e:
        raise ConfigError(f"Bench file {bp} is not valid JSON: {e}.") from None
    cal = fit_bench(doc, str(bp))
    p = Path(path) if path else calibration_path()
    d = _read_doc(p)
    d.setdefault("serving", {})[cal.hardware] = cal.to_dict()
    return cal, _write_doc(p, d)
