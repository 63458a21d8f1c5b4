"""Serving estimate: a deployment answering ``queries_per_day`` for ``days`` on given chips.

The time and energy of one decode step come from :mod:`greenlm.estimate.serving_model`
(memory-bound at small batch: weights plus KV cache over reached bandwidth; compute-bound
at large batch; MoE reads the union of the experts its batch uses; tensor/expert-parallel
collectives; the weight format changes bytes and arithmetic; power between idle and TDP by
utilisation), with constants fitted on measured deployments (:mod:`greenlm.estimate.fitted`).
Around it:

* **capacity**: the weights and the KV cache of the batch must fit in the chips' memory,
  and the chips must serve the queries of a day in the hours the deployment is up; an
  impossible deployment raises :class:`CapacityError`, which says by how much it falls
  short and what would suffice, instead of returning a number;
* **idle**: for the hours the deployment is up but not busy the accelerators draw their idle
  power (``hours_per_day``, default 24; ``None`` counts busy time only, as for shared
  capacity billed per use);
* **host**: CPUs, memory and network add the class host share per accelerator for every hour
  the deployment is up;
* **scopes**: accelerator energy (busy + idle), IT (+ host), facility (x PUE); J per output
  token is the accelerators' busy energy over the output tokens, the figure GPU-only
  benchmarks (ML.ENERGY) report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from greenlm._validate import finite
from greenlm.errors import ConfigError
from greenlm.estimate import bounds as _bounds
from greenlm.estimate import defaults, fitted
from greenlm.estimate import flops as _flops
from greenlm.estimate import serving_model as sm
from greenlm.estimate import weights as wf
from greenlm.estimate.grid import resolve_factors
from greenlm.estimate.hardware import Hardware, find_hardware
from greenlm.estimate.result import InferenceEstimate, Input, ranged
from greenlm.estimate.training import assemble
from greenlm.estimate.uncertainty import Range, add, combine

WEIGHT_BITS = (4, 8, 16, 32)


class CapacityError(ConfigError):
    """The deployment asked for cannot exist: it does not fit in memory or cannot keep up."""


def shipped_constants() -> sm.Constants:
    """The serving constants fitted on every row of the validation data."""
    return sm.Constants.from_dict({**fitted.SERVING, "source": fitted.SERVING_SOURCE})


def _band() -> tuple[float, float]:
    """Multipliers (low, high) on a predicted busy energy: the cross-validated error spread."""
    p10, p90 = fitted.SERVING_CV["ratio_p10"], fitted.SERVING_CV["ratio_p90"]
    return 1.0 / p90, 1.0 / p10


@dataclass(frozen=True)
class _Layout:
    chips: int
    tp: int
    ep: int
    source: str

    @property
    def per_replica(self) -> int:
        return self.tp * self.ep

    @property
    def replicas(self) -> int:
        return self.chips // self.per_replica


def _whole(name: str, value: object) -> int:
    v = finite(name, value, minimum=1.0)
    if v != int(v):
        raise ConfigError(f"{name} must be a whole number, got {v:g}.")
    return int(v)


def _memory_need(weights_b: float, kv_per_token: float, batch: float, i_tok: float, o_tok: float) -> float:
    """Bytes one replica must hold: the weights and the KV cache of a full batch at full length."""
    return weights_b + batch * (i_tok + o_tok) * kv_per_token


def _layout(
    hw: Hardware,
    moe: bool,
    chips: float | None,
    tp: int | None,
    ep: int | None,
    need_b: float,
) -> _Layout:
    usable = defaults.MEMORY_UTILIZATION.value
    if tp is not None or ep is not None:
        t = tp or 1
        e = ep or 1
        n = t * e
        c = _whole("chips", chips) if chips is not None else n
        if c % n:
            raise ConfigError(
                f"chips ({c}) must be a multiple of tensor_parallel x expert_parallel ({t} x {e} = {n}): "
                "each replica of the model uses that many chips."
            )
        return _Layout(c, t, e, "user value")
    if chips is not None:
        c = _whole("chips", chips)
        return _Layout(c, 1 if moe else c, c if moe else 1, "one replica over all chips (user value)")
    if hw.memory_gb is None:
        raise ConfigError(f"{hw.name} has no memory size in the accelerator table; pass --chips.")
    n = 1
    while need_b > n * hw.memory_gb * 1e9 * usable:
        n *= 2
        if n > 4096:
            break
    return _Layout(
        n,
        1 if moe else n,
        n if moe else 1,
        f"fewest chips (a power of two) whose memory holds the weights and the batch's KV cache: "
        f"{defaults.MEMORY_UTILIZATION.source}",
    )


def _check_memory(hw: Hardware, lay: _Layout, need_b: float, batch: float, kv_per_seq: float) -> None:
    if hw.memory_gb is None:
        return
    usable = defaults.MEMORY_UTILIZATION.value
    have = lay.per_replica * hw.memory_gb * 1e9 * usable
    if need_b <= have:
        return
    weights = need_b - batch * kv_per_seq
    fit_batch = max(0.0, (have - weights) / kv_per_seq) if kv_per_seq > 0 else 0.0
    chips_needed = lay.per_replica
    while need_b > chips_needed * hw.memory_gb * 1e9 * usable and chips_needed < 65536:
        chips_needed *= 2
    hint = f" a batch of at most {math.floor(fit_batch)}" if fit_batch >= 1 else ""
    raise CapacityError(
        f"The deployment does not fit in memory: one replica needs {need_b / 1e9:,.0f} GB (weights "
        f"{weights / 1e9:,.0f} GB + KV cache of {batch:g} sequences), but {lay.per_replica} x "
        f"{hw.memory_gb:g} GB of {hw.name} hold {have / 1e9:,.0f} GB at "
        f"{usable:.0%} use ({need_b / have:.2f}x short). Use {chips_needed} chips per replica"
        + (f", or{hint}" if hint else "")
        + "."
    )


def _calibrated_scales(hw: Hardware, path: str | None) -> tuple[float, float, str] | None:
    from greenlm.estimate import calibration as _cal

    table = _cal.load_serving(Path(path) if path else None)
    hit = table.get(hw.name)
    if hit is None:
        return None
    return hit.time_scale, hit.energy_scale, f"calibrated on {hit.n_points} measured serving point(s) ({hit.source})"


def _powers(
    hw: Hardware,
    step: sm.Step,
    lay: _Layout,
    const: sm.Constants,
    const_src: str,
    power_w: float | None,
    power_basis: str,
    idle_power_w: float | None,
) -> tuple[tuple[Range, str], tuple[Range, str], tuple[Range, str]]:
    """Busy, host and idle power per accelerator, each with its source."""
    lo_m, hi_m = _band()
    if power_w is not None:
        pw = finite(
            "power per chip (W)", power_w, minimum=0.0, strict=True, hint=" Give average watts per accelerator."
        )
        busy_w = Range.exact(pw)
        busy_src = "user value (W per accelerator while serving, whatever it includes)"
        host_w = Range.exact(0.0)
        host_src = "included in the user's power"
    elif power_basis.lower() == "tdp":
        if hw.tdp_w is None:
            raise ConfigError(f"{hw.name} has no published TDP; pass --power-w with the average watts per chip.")
        busy_w = Range.exact(hw.tdp_w)
        busy_src = f"TDP of {hw.name}, {hw.tdp_w:g} W ({hw.spec_source}); no host share"
        host_w = Range.exact(0.0)
        host_src = "none (TDP basis)"
    elif power_basis.lower() == "model":
        if hw.tdp_w is None:
            raise ConfigError(
                f"{hw.name} has no published TDP in the accelerator table, so greenlm cannot model its power; "
                "pass --power-w with the average watts per chip."
            )
        per_chip = step.power_w / lay.per_replica
        busy_w = Range(per_chip, per_chip * lo_m, per_chip * hi_m)
        busy_src = (
            f"serving model: static {const.p_static:.2f} x TDP + {const.e_byte_j * 1e12:.0f} pJ/byte + "
            f"{const.e_flop_j * 1e12:.2f} pJ/FLOP, held between idle and TDP ({const_src}); band = the "
            "cross-validated error spread (10th-90th percentile)"
        )
        hd = defaults.HOST_FRACTION[hw.hw_class]
        host_w = hd.range.scaled(hw.tdp_w)
        host_src = hd.source
    else:
        raise ConfigError(f"Unknown power basis {power_basis!r}; use model or tdp.")
    if idle_power_w is not None:
        idle_w = Range.exact(finite("idle power (W)", idle_power_w, minimum=0.0))
        idle_src = "user value"
    else:
        ref = hw.tdp_w if hw.tdp_w is not None else busy_w.value
        idle_w = defaults.IDLE_FRACTION.range.scaled(ref)
        idle_src = defaults.IDLE_FRACTION.source + ("" if hw.tdp_w is not None else " (of the given power: no TDP)")
    idle_w = Range(min(idle_w.value, busy_w.value), min(idle_w.low, busy_w.low), min(idle_w.high, busy_w.high))
    return (busy_w, busy_src), (host_w, host_src), (idle_w, idle_src)


def inference(
    *,
    params: float,
    hardware: str | Hardware,
    queries_per_day: float,
    days: float,
    input_tokens: float,
    output_tokens: float,
    active_params: float | None = None,
    batch_size: float = 1,
    weights_bits: int = 16,
    chips: float | None = None,
    mfu: float | None = None,
    precision: str = defaults.PRECISION_DEFAULT,
    power_w: float | None = None,
    power_basis: str = "model",
    pue: float | None = None,
    location: str | None = None,
    intensity_kg_per_kwh: float | None = None,
    price_per_kwh: float | None = None,
    currency: str | None = None,
    weight_precision: str | None = None,
    tensor_parallel: int | None = None,
    expert_parallel: int | None = None,
    layers: float | None = None,
    hidden_size: float | None = None,
    kv_bytes_per_token: float | None = None,
    hours_per_day: float | None = 24.0,
    idle_power_w: float | None = None,
    calibrated: bool = False,
    calibration_path: str | None = None,
) -> InferenceEstimate:
    """Estimate serving ``queries_per_day`` for ``days`` (``greenlm estimate inference``).

    ``batch_size`` is the number of sequences a replica serves concurrently; ``chips`` the
    accelerators in all (default: the fewest that hold the weights and KV cache); a replica
    spans ``tensor_parallel x expert_parallel`` of them (default: all chips, tensor-parallel
    for a dense model, expert-parallel for a mixture of experts). ``weight_precision``
    (bf16, fp8, int8, mxfp4, nvfp4, int4, fp32) overrides ``weights_bits``. ``mfu`` is the
    share of peak throughput reached by compute (default: fitted). ``layers``,
    ``hidden_size`` and ``kv_bytes_per_token`` override the shape inferred from the
    parameters. ``hours_per_day`` the deployment is up (idle power counts for the rest;
    ``None``: busy time only).
    """
    _bounds.check(locals())  # every argument in its range, before anything is derived from it
    inputs: dict[str, Input] = {}
    warnings: list[str] = []
    hw = find_hardware(hardware)
    n_total = _flops.positive("params", params, " Give the parameter count, e.g. 7e9.")
    n = n_total if active_params is None else _flops.positive("active params", active_params)
    if n > n_total:
        raise ConfigError(f"active params ({n:g}) cannot exceed params ({n_total:g}).")
    qpd = _flops.positive("queries per day", queries_per_day)
    nd = _flops.positive("days", days)
    i_tok = finite("input tokens", input_tokens, minimum=0.0)
    o_tok = finite("output tokens", output_tokens, minimum=0.0)
    if i_tok + o_tok <= 0:
        raise ConfigError("input tokens + output tokens must be > 0.")
    b = finite("batch size", batch_size, minimum=1.0)
    if b != int(b):
        raise ConfigError(f"batch size must be a whole number, got {b:g}.")
    if weight_precision is None:
        if weights_bits not in WEIGHT_BITS or weights_bits != int(weights_bits):
            raise ConfigError(
                f"weights bits must be one of {', '.join(map(str, WEIGHT_BITS))}, got {weights_bits!r}; "
                "or give weight_precision (bf16, fp8, int8, mxfp4, int4)."
            )
        fmt_name = wf.BITS_TO_FORMAT[int(weights_bits)]
        fmt_src = f"{int(weights_bits)}-bit weights (user value or default 16)"
    else:
        fmt_name = wf.normalise(weight_precision)
        fmt_src = "user value"
    fmt = wf.resolve(hw, fmt_name, precision)
    if fmt.note:
        warnings.append(fmt.note)
    if hw.memory_bw_gbps is None:
        raise ConfigError(f"{hw.name} has no memory bandwidth in the accelerator table.")
    hpd: float | None = None
    if hours_per_day is not None:
        hpd = finite("hours per day", hours_per_day, minimum=0.0, maximum=24.0, strict=True)

    # shape
    lay_n = finite("layers", layers, minimum=1.0) if layers is not None else sm.inferred_layers(n)
    d_model = finite("hidden size", hidden_size, minimum=1.0) if hidden_size is not None else sm.SHAPE_RATIO * lay_n
    kv = (
        finite("KV bytes per token", kv_bytes_per_token, minimum=0.0)
        if kv_bytes_per_token is not None
        else lay_n * 2 * sm.KV_HEADS * sm.HEAD_DIM * 2.0
    )
    shape_src = "user value" if layers is not None else sm.SHAPE_SOURCE
    inputs["layers"] = Input(round(lay_n, 1), shape_src)
    inputs["kv_bytes_per_token"] = Input(
        kv, "user value" if kv_bytes_per_token is not None else f"{sm.SHAPE_SOURCE}; bf16 KV cache"
    )

    # layout and memory
    moe = n < n_total
    weights_b = n_total * fmt.bytes_per_param
    need_b = _memory_need(weights_b, kv, b, i_tok, o_tok)
    tp = _whole("tensor parallel", tensor_parallel) if tensor_parallel is not None else None
    ep = _whole("expert parallel", expert_parallel) if expert_parallel is not None else None
    lay = _layout(hw, moe, chips, tp, ep, need_b)
    _check_memory(hw, lay, need_b, b, (i_tok + o_tok) * kv)
    inputs["chips"] = Input(float(lay.chips), lay.source)
    inputs["tensor_parallel"] = Input(lay.tp, lay.source)
    inputs["expert_parallel"] = Input(lay.ep, lay.source)

    # constants
    const = shipped_constants()
    const_src = f"{fitted.SERVING_SOURCE}"
    if calibrated:
        scales = _calibrated_scales(hw, calibration_path)
        if scales is None:
            warnings.append(f"--calibrated: no serving calibration for {hw.name}; the fitted constants were used")
        else:
            const = const.scaled(scales[0], scales[1], scales[2])
            const_src = scales[2]
    if mfu is not None:
        from greenlm.estimate.timing import check_mfu

        u = check_mfu(mfu)
        d = const.to_dict()
        d["k_compute"] = 1.0 / u
        const = sm.Constants.from_dict(d)
        inputs["mfu"] = Input(u, "user value (share of peak throughput reached by compute)")
    else:
        inputs["mfu"] = Input(1.0 / const.k_compute, f"fitted: 1 / k_compute ({const_src})")
    inputs["serving_constants"] = Input({k: v for k, v in const.to_dict().items() if k != "source"}, const_src)

    setup = sm.Setup(
        total_params=n_total,
        active_params=n,
        weight_bytes_per_param=fmt.bytes_per_param,
        peak_flops=fmt.peak_flops,
        memory_bw_bps=hw.memory_bw_gbps * 1e9,
        tdp_w=hw.tdp_w or 0.0,
        chips=lay.per_replica,
        tensor_parallel=lay.tp,
        expert_parallel=lay.ep,
        batch=b,
        input_tokens=i_tok,
        output_tokens=max(o_tok, 1.0),
        layers=lay_n,
        d_model=d_model,
        kv_bytes_per_token=kv,
    )
    step = sm.predict(const, setup)

    # time and capacity
    steps_per_query = max(o_tok, 1.0)
    cycle_s = steps_per_query * step.time_s  # a batch of b queries, start to end
    q_per_s = lay.replicas * b / cycle_s
    queries = qpd * nd
    busy_s = queries / q_per_s
    up_h_per_day = hpd if hpd is not None else 24.0
    max_qpd = q_per_s * 3600.0 * up_h_per_day
    if qpd > max_qpd * (1 + 1e-9):
        short = qpd / max_qpd
        need = lay.chips * math.ceil(short)
        raise CapacityError(
            f"{lay.chips} x {hw.name} at a batch of {b:g} serve at most {max_qpd:,.0f} queries per day in "
            f"{up_h_per_day:g} h ({step.time_s * 1e3:.1f} ms per decode step, {o_tok:g} output tokens per "
            f"query); {qpd:,.0f} were asked: {short:.2f}x more than the chips can serve. Use at least "
            f"{need} chips ({math.ceil(short)} replicas of {lay.per_replica}), a larger batch, or more hours per day."
        )
    held_s = nd * up_h_per_day * 3600.0 if hpd is not None else busy_s
    idle_s = max(0.0, held_s - busy_s)
    little = qpd / (up_h_per_day * 3600.0) * cycle_s  # arrival rate x time in the system
    if little < 0.5 * b * lay.replicas and b > 1:
        warnings.append(
            f"At {qpd:,.0f} queries per day, about {little:.2g} queries are in flight on average (Little's law), "
            f"far fewer than the batch of {b:g}: the estimate assumes queries wait and are served in batches "
            "of that size (longer latency); a lower batch costs more energy per query."
        )

    for k, v in (
        ("params", n_total),
        ("active_params", n),
        ("queries_per_day", qpd),
        ("days", nd),
        ("input_tokens", i_tok),
        ("output_tokens", o_tok),
        ("batch_size", b),
    ):
        inputs[k] = Input(v, "user value")
    inputs["weights_bits"] = Input(fmt.bytes_per_param * 8, f"{fmt.name} ({fmt_src}): bits per parameter incl. scales")
    inputs["weight_precision"] = Input(fmt.name, fmt_src)
    inputs["compute_precision"] = Input(fmt.compute_precision, "arithmetic of the weight format on this chip")
    inputs["peak_flops_per_chip"] = Input(
        fmt.peak_flops, f"{hw.name} dense {fmt.compute_precision} peak: {hw.spec_source}"
    )
    inputs["hardware"] = Input(hw.name, hw.spec_source)
    inputs["memory_bw_gbps"] = Input(hw.memory_bw_gbps, hw.spec_source)
    inputs["hours_per_day"] = Input(
        hpd, "deployment up this many hours a day (idle power counted)" if hpd is not None else "busy time only"
    )

    # power and energy
    (busy_w, busy_src), (host_w, host_src), (idle_w, idle_src) = _powers(
        hw, step, lay, const, const_src, power_w, power_basis, idle_power_w
    )
    inputs["busy_power_w_per_chip"] = ranged(busy_w, busy_src)
    inputs["idle_power_w_per_chip"] = ranged(idle_w, idle_src)
    inputs["host_power_w_per_chip"] = ranged(host_w, host_src)

    busy_ch = Range.exact(busy_s * lay.chips / 3600.0)
    idle_ch = Range.exact(idle_s * lay.chips / 3600.0)
    held_ch = Range.exact(held_s * lay.chips / 3600.0)
    busy_j = combine([(busy_ch, 1), (busy_w, 1)]).scaled(3600.0)
    idle_j = combine([(idle_ch, 1), (idle_w, 1)]).scaled(3600.0) if idle_s > 0 else Range.exact(0.0)
    host_j = combine([(held_ch, 1), (host_w, 1)]).scaled(3600.0) if host_w.value > 0 else Range.exact(0.0)
    acc_j = add(busy_j, idle_j)
    it_j = add(acc_j, host_j)
    avg_w = it_j.scaled(1.0 / (held_ch.value * 3600.0)) if held_ch.value > 0 else busy_w

    f = resolve_factors(
        location=location,
        intensity_kg_per_kwh=intensity_kg_per_kwh,
        pue=pue,
        price_per_kwh=price_per_kwh,
        currency=currency,
    )
    warnings.extend(f.warnings)
    total_out = queries * o_tok
    est = assemble(
        kind="inference",
        hw=hw,
        chips=float(lay.chips),
        flops=queries * _flops.inference_flops(n, i_tok, o_tok),
        chip_hours=held_ch,
        power_w=avg_w,
        mfu=1.0 / const.k_compute,
        factors=f,
        inputs=inputs,
        warnings=warnings,
        cls=InferenceEstimate,
        it_energy_j=it_j,
        accelerator_energy_j=acc_j,
        queries=queries,
        decode_bound=step.bound,
        output_tokens=total_out,
        busy_accelerator_energy_j=busy_j,
        idle_energy_j=idle_j,
        output_tokens_per_s=q_per_s * o_tok,
        step_time_s=step.time_s,
        crossover_batch=step.crossover_batch,
        prefill_fraction=step.prefill_s / step.time_s,
        busy_fraction=busy_s / held_s if held_s > 0 else 1.0,
        max_queries_per_day=max_qpd,
        replicas=lay.replicas,
        tensor_parallel=lay.tp,
        expert_parallel=lay.ep,
    )
    assert isinstance(est, InferenceEstimate)
    return est
