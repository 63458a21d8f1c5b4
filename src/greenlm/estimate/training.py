"""Training and fine-tuning estimates: FLOPs -> chip-hours -> energy -> CO2e, cost, embodied.

:func:`train` and :func:`finetune` mirror ``greenlm estimate train`` and ``... finetune``.
Both return a :class:`~greenlm.estimate.result.TrainEstimate` whose ``inputs`` name every
value used, default or not, with its source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from greenlm._validate import finite
from greenlm.errors import ConfigError
from greenlm.estimate import bounds as _bounds
from greenlm.estimate import calibration as _cal
from greenlm.estimate import defaults, timing
from greenlm.estimate import flops as _flops
from greenlm.estimate.embodied import amortized_kg
from greenlm.estimate.grid import Factors, resolve_factors
from greenlm.estimate.hardware import Hardware, compute_precision, find_hardware
from greenlm.estimate.power import resolve_power
from greenlm.estimate.result import Estimate, Input, TrainEstimate, ranged
from greenlm.estimate.uncertainty import Range, combine

J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class JobSpec:
    """Everything except the FLOPs: hardware, time, power and carbon settings."""

    hardware: str | Hardware
    chips: float | None = None
    chip_hours: float | None = None
    hours: float | None = None
    mfu: float | None = None
    precision: str = defaults.PRECISION_DEFAULT
    power_w: float | None = None
    power_basis: str = "model"
    pue: float | None = None
    location: str | None = None
    intensity_kg_per_kwh: float | None = None
    price_per_kwh: float | None = None
    currency: str | None = None
    calibrated: bool = False
    calibration_path: str | None = None
    development_factor: float | None = None


def _calibration_for(hw: Hardware, spec: JobSpec) -> tuple[_cal.HardwareCalibration | None, str]:
    if not spec.calibrated:
        return None, ""
    from pathlib import Path

    table = _cal.load(Path(spec.calibration_path) if spec.calibration_path else None)
    hit = table.get(hw.name)
    if hit is None:  # a variant with the same compute and TDP (A100 40GB vs 80GB) shares it
        for name, cal in sorted(table.items()):
            try:
                other = find_hardware(name)
            except ConfigError:
                continue
            if other.tdp_w == hw.tdp_w and other.peak_tflops == hw.peak_tflops:
                hit = cal
                break
    if hit is None:
        known = ", ".join(sorted(table)) or "none"
        return None, (
            f"--calibrated: no calibration for {hw.name} (calibrated: {known}); the documented defaults were used"
        )
    return hit, ""


def run_job(
    kind: str,
    flops: float | None,
    active_params: float,
    spec: JobSpec,
    inputs: dict[str, Input],
    warnings: list[str],
    *,
    workload: str = "train",
    factors: Factors | None = None,
    moe: bool = False,
) -> TrainEstimate:
    """Turn FLOPs into time, energy, carbon and cost for ``spec``; shared by train/finetune."""
    hw = find_hardware(spec.hardware)
    precision, prec_warning = compute_precision(hw, spec.precision)
    if prec_warning:
        warnings.append(prec_warning)
    chips = timing.check_chips(spec.chips) if spec.chips is not None else None
    mode, value = timing.resolve_time_inputs(chip_hours=spec.chip_hours, hours=spec.hours, mfu=spec.mfu, chips=chips)
    cal, cal_warning = _calibration_for(hw, spec)
    if cal_warning:
        warnings.append(cal_warning)
    inputs["hardware"] = Input(hw.name, hw.spec_source)
    inputs["chips"] = Input(chips, "user value" if chips is not None else "not given")
    inputs["precision"] = Input(
        precision,
        (defaults.PRECISION_SOURCE if spec.precision == defaults.PRECISION_DEFAULT else "user value")
        + (f"; {prec_warning}" if prec_warning else ""),
    )
    mfu_used: float | None
    if mode == "chip_hours":
        assert value is not None
        ch = Range.exact(value)
        inputs["chip_hours"] = Input(value, "user value")
    elif mode == "hours":
        assert value is not None and chips is not None
        ch = Range.exact(value * chips)
        inputs["hours"] = Input(value, "user value (wall clock)")
    else:
        assert flops is not None
        peak = hw.peak_flops(precision)
        inputs["peak_flops_per_chip"] = Input(peak, f"{hw.name} dense {precision} peak: {hw.spec_source}")
        if mode == "mfu":
            assert value is not None
            mfu_r = Range.exact(value)
            inputs["mfu"] = Input(value, "user value")
        elif cal is not None and cal.mfu is not None:
            mfu_r = cal.mfu
            inputs["mfu"] = ranged(mfu_r, f"calibrated on {cal.n_runs_mfu} measured run(s)")
        else:
            d = timing.default_mfu(hw, active_params, chips=chips, moe=moe)
            mfu_r = d.range
            inputs["mfu"] = ranged(mfu_r, d.source)
        ch = timing.chip_hours_from_mfu(flops, peak, mfu_r)
    if mode in ("chip_hours", "hours") and flops is None:
        mfu_used = None
    elif mode in ("chip_hours", "hours"):
        assert flops is not None
        try:
            mfu_used = timing.implied_mfu(flops, hw.peak_flops(precision), ch.value)
        except ConfigError:
            mfu_used = None
        if mfu_used is not None and mfu_used > 1:
            warnings.append(
                f"The given time implies an MFU of {mfu_used:.2f} (> 1): check params, tokens, chips and hours."
            )
    else:
        mfu_used = inputs["mfu"].value

    if cal is not None and cal.power_fraction is not None and spec.power_w is None and spec.power_basis == "model":
        power = resolve_power(
            hw,
            workload=workload,
            fraction=cal.power_fraction,
            host_fraction=cal.host_fraction or Range.exact(0.0),
            calibration_source=f"calibrated on {cal.n_runs_power} measured run(s)",
        )
    else:
        power = resolve_power(hw, power_w=spec.power_w, basis=spec.power_basis, workload=workload)
    inputs["power_w_per_chip"] = ranged(power.power_w, power.source)
    if power.accelerator_w is not None:
        inputs["accelerator_power_w_per_chip"] = ranged(power.accelerator_w, power.source)
    if spec.development_factor:
        dev = finite("development factor", spec.development_factor, minimum=0.0)
        inputs["development_factor"] = Input(
            dev,
            f"user value: chip-hours and energy include development = {dev:g} x the final run; "
            + defaults.DEVELOPMENT_SOURCE,
        )
        ch = ch.scaled(1.0 + dev)
    inputs["power_basis"] = Input(
        power.basis,
        "user value" if spec.power_basis != "model" or spec.power_w is not None else "default: greenlm power model",
    )

    f = factors or resolve_factors(
        location=spec.location,
        intensity_kg_per_kwh=spec.intensity_kg_per_kwh,
        pue=spec.pue,
        price_per_kwh=spec.price_per_kwh,
        currency=spec.currency,
    )
    warnings.extend(w for w in f.warnings if w not in warnings)
    acc_j = combine([(ch, 1), (power.accelerator_w, 1)]).scaled(3600.0) if power.accelerator_w is not None else None
    est = assemble(
        kind=kind,
        hw=hw,
        chips=chips,
        flops=flops,
        chip_hours=ch,
        power_w=power.power_w,
        mfu=mfu_used,
        factors=f,
        inputs=inputs,
        warnings=warnings,
        accelerator_energy_j=acc_j,
    )
    assert isinstance(est, TrainEstimate)
    return est


def assemble(
    *,
    kind: str,
    hw: Hardware,
    chips: float | None,
    flops: float | None,
    chip_hours: Range,
    power_w: Range,
    mfu: float | None,
    factors: Factors,
    inputs: dict[str, Input],
    warnings: list[str],
    cls: type[Estimate] = TrainEstimate,
    it_energy_j: Range | None = None,
    accelerator_energy_j: Range | None = None,
    **extra: Any,
) -> Estimate:
    """Turn chip-hours and power into energy, CO2e, cost and embodied (shared with inference).

    ``it_energy_j`` replaces ``chip_hours x power_w`` when the caller sums parts itself
    (serving: busy + idle + host); ``accelerator_energy_j`` is the accelerators-only share.
    """
    it_j = it_energy_j if it_energy_j is not None else combine([(chip_hours, 1), (power_w, 1)]).scaled(3600.0)
    fac_j = combine([(it_j, 1), (factors.pue, 1)])
    co2_g = combine([(fac_j, 1), (factors.intensity_g_per_kwh, 1)]).scaled(1 / J_PER_KWH)
    emb_kg, emb_src = amortized_kg(hw, chip_hours)
    cost = fac_j.scaled(factors.price_per_kwh / J_PER_KWH)
    inputs["pue"] = ranged(factors.pue, factors.pue_source)
    inputs["intensity_g_per_kwh"] = ranged(factors.intensity_g_per_kwh, factors.intensity_source)
    inputs["price_per_kwh"] = Input(factors.price_per_kwh, factors.price_source)
    inputs["embodied"] = Input("amortized by share of lifetime chip-hours", emb_src)
    return cls(
        kind=kind,
        hardware=hw.name,
        chips=chips,
        flops=flops,
        chip_hours=chip_hours,
        power_w=power_w,
        mfu=mfu,
        it_energy_j=it_j,
        energy_j=fac_j,
        co2e_g=co2_g,
        embodied_co2e_g=emb_kg.scaled(1000.0),
        cost=cost,
        currency=factors.currency,
        location=factors.location.to_dict(),
        inputs=inputs,
        warnings=tuple(warnings),
        accelerator_energy_j=accelerator_energy_j,
        **extra,
    )


def _params(params: float, active_params: float | None, inputs: dict[str, Input], warnings: list[str]) -> float:
    n = _flops.positive("params", params, " Give the parameter count, e.g. 7e9.")
    inputs["params"] = Input(n, "user value")
    if active_params is None:
        inputs["active_params"] = Input(n, "= params (dense model); give active_params for MoE")
        return n
    a = _flops.positive("active params", active_params)
    if a > n:
        raise ConfigError(
            f"active params ({a:g}) cannot exceed params ({n:g}); for a "
            "mixture-of-experts model give the parameters used per token."
        )
    inputs["active_params"] = Input(a, "user value")
    return a


def train(
    *,
    params: float,
    tokens: float | None = None,
    hardware: str | Hardware,
    active_params: float | None = None,
    layers: int | None = None,
    hidden_size: int | None = None,
    seq_len: int | None = None,
    chips: float | None = None,
    chip_hours: float | None = None,
    hours: float | None = None,
    mfu: float | None = None,
    precision: str = defaults.PRECISION_DEFAULT,
    power_w: float | None = None,
    power_basis: str = "model",
    pue: float | None = None,
    location: str | None = None,
    intensity_kg_per_kwh: float | None = None,
    price_per_kwh: float | None = None,
    currency: str | None = None,
    calibrated: bool = False,
    calibration_path: str | None = None,
    flops: float | None = None,
    development_factor: float | None = None,
) -> TrainEstimate:
    """Estimate a pre-training run (``greenlm estimate train``).

    ``params``/``active_params`` in parameters, ``tokens`` in tokens (may be None when the
    time or ``flops`` is given); ``flops``: the run's total training FLOPs when published
    (replaces ``6 N D``); give at most one of ``chip_hours``, ``hours`` (needs ``chips``) or
    ``mfu``; ``power_w`` per accelerator or ``power_basis`` ``"model"``/``"tdp"``;
    ``location`` code or ``intensity_kg_per_kwh``; ``development_factor``: development runs
    as a multiple of the final run (e.g. 0.5, OLMo), added to its chip-hours and energy.
    """
    _bounds.check(locals())  # every argument in its range, before anything is derived from it
    inputs: dict[str, Input] = {}
    warnings: list[str] = []
    n = _params(params, active_params, inputs, warnings)
    total: float | None = None
    if flops is not None:
        total = _flops.positive("flops", flops, " Give the run's total training FLOPs, e.g. 3.14e23.")
        inputs["flops_formula"] = Input("given", "user value (total training FLOPs)")
        if tokens is not None:
            inputs["tokens"] = Input(_flops.positive("tokens", tokens), "user value")
    elif tokens is not None:
        d = _flops.positive("tokens", tokens, " Give the number of training tokens, e.g. 2e12.")
        inputs["tokens"] = Input(d, "user value")
        total = _flops.train_flops(n, d, layers=layers, d_model=hidden_size, seq_len=seq_len)
    elif chip_hours is None and hours is None:
        raise ConfigError(
            "tokens are needed unless the time is given (--chip-hours or "
            "--hours): greenlm derives the time from FLOPs = 6 x params x tokens."
        )
    if flops is None:
        inputs["flops_formula"] = Input(
            "6*N*D + 12*layers*d_model*seq_len*D" if seq_len and layers and hidden_size else "6*N*D",
            "Kaplan et al. 2020; attention term Chowdhery et al. 2022, App. B",
        )
    spec = JobSpec(
        hardware=hardware,
        chips=chips,
        chip_hours=chip_hours,
        hours=hours,
        mfu=mfu,
        precision=precision,
        power_w=power_w,
        power_basis=power_basis,
        pue=pue,
        location=location,
        intensity_kg_per_kwh=intensity_kg_per_kwh,
        price_per_kwh=price_per_kwh,
        currency=currency,
        calibrated=calibrated,
        calibration_path=calibration_path,
        development_factor=development_factor,
    )
    return run_job("train", total, n, spec, inputs, warnings, moe=n < float(params))


def finetune(
    *,
    params: float,
    tokens: float,
    hardware: str | Hardware,
    method: str = "full",
    active_params: float | None = None,
    lora_rank: int | None = None,
    target_modules: Sequence[str] | str | None = None,
    trainable_params: float | None = None,
    layers: int | None = None,
    hidden_size: int | None = None,
    ffn_size: int | None = None,
    chips: float | None = None,
    chip_hours: float | None = None,
    hours: float | None = None,
    mfu: float | None = None,
    precision: str = defaults.PRECISION_DEFAULT,
    power_w: float | None = None,
    power_basis: str = "model",
    pue: float | None = None,
    location: str | None = None,
    intensity_kg_per_kwh: float | None = None,
    price_per_kwh: float | None = None,
    currency: str | None = None,
    calibrated: bool = False,
    calibration_path: str | None = None,
) -> TrainEstimate:
    """Estimate a fine-tune (``greenlm estimate finetune``): ``method`` ``"full"`` or ``"lora"``.

    For LoRA the trainable parameters come from ``trainable_params``, else from ``lora_rank``
    and ``target_modules`` on the model's shape (given by ``layers``/``hidden_size`` or
    inferred from ``params``).
    """
    _bounds.check(locals())  # every argument in its range, before anything is derived from it
    inputs: dict[str, Input] = {}
    warnings: list[str] = []
    m = str(method).lower()
    if m in ("peft", "qlora"):
        m = "lora"
    if m not in ("full", "lora"):
        raise ConfigError(f"Unknown fine-tuning method {method!r}; use 'full' or 'lora'.")
    n = _params(params, active_params, inputs, warnings)
    d = _flops.positive("tokens", tokens, " Give the fine-tuning tokens (examples x tokens per example x epochs).")
    inputs["tokens"] = Input(d, "user value")
    inputs["method"] = Input(m, "user value")
    nt = 0.0
    if m == "lora":
        if trainable_params is not None:
            nt = finite("trainable params", trainable_params, minimum=0.0)
            inputs["trainable_params"] = Input(nt, "user value")
        else:
            rank = lora_rank if lora_rank is not None else defaults.LORA_RANK
            targets = _flops.normalise_targets(target_modules or defaults.LORA_TARGETS)
            shape = _flops.Shape.resolve(float(params), layers, hidden_size, ffn_size)
            nt = _flops.lora_trainable_params(shape, rank, targets)
            inputs["lora_rank"] = Input(rank, "user value" if lora_rank is not None else defaults.LORA_RANK_SOURCE)
            inputs["target_modules"] = Input(
                list(targets), "user value" if target_modules else defaults.LORA_TARGETS_SOURCE
            )
            inputs["shape"] = Input(
                {"layers": shape.layers, "hidden_size": shape.d_model, "ffn_size": shape.ffn},
                defaults.SHAPE_SOURCE if shape.inferred else "user value",
            )
            inputs["trainable_params"] = Input(
                nt, "LoRA: rank x (d_in + d_out) per adapted matrix per layer (Hu et al. 2021)"
            )
        if nt > n:
            raise ConfigError(
                f"trainable params ({nt:g}) exceed the model's params ({n:g}); "
                "lower the LoRA rank or the target modules."
            )
    elif lora_rank is not None or target_modules:
        raise ConfigError("--lora-rank / --target-modules need --method lora.")
    total = _flops.finetune_flops(n, d, method=m, trainable_params=nt)
    inputs["flops_formula"] = Input(
        "6*N*D" if m == "full" else "(4*N + 6*N_trainable)*D",
        "full: Kaplan et al. 2020; LoRA: forward + activation gradients of frozen weights, full cost of adapters",
    )
    spec = JobSpec(
        hardware=hardware,
        chips=chips,
        chip_hours=chip_hours,
        hours=hours,
        mfu=mfu,
        precision=precision,
        power_w=power_w,
        power_basis=power_basis,
        pue=pue,
        location=location,
        intensity_kg_per_kwh=intensity_kg_per_kwh,
        price_per_kwh=price_per_kwh,
        currency=currency,
        calibrated=calibrated,
        calibration_path=calibration_path,
    )
    return run_job("finetune", total, n, spec, inputs, warnings, moe=n < float(params))
