"""Serving estimate: queries/day x days x tokens per query on a given accelerator.

Per batch of ``B`` queries (``I`` input and ``O`` output tokens each), on ``chips`` chips:

* prefill is compute-bound: ``2 N I B`` FLOPs at the prefill MFU;
* each decode step produces one token for each of the ``B`` queries and takes the longer of
  the compute time (``2 N B`` FLOPs) and the time to read every weight once from memory
  (``params x bits/8`` bytes over the chips' bandwidth x bandwidth efficiency). At small
  batch sizes the memory term dominates, which is why quantized weights (8 or 4 bits) cut
  energy per token nearly in proportion;
* energy = busy chip-hours x average power while serving. Idle provisioned capacity is not
  counted: add it with ``chip_hours`` of your own if the fleet is kept warm.

The KV-cache reads and inter-chip communication are not modeled (see docs/estimate.md).
"""

from __future__ import annotations

import math

from greenlm._validate import finite
from greenlm.errors import ConfigError
from greenlm.estimate import defaults
from greenlm.estimate import flops as _flops
from greenlm.estimate.grid import resolve_factors
from greenlm.estimate.hardware import find_hardware
from greenlm.estimate.power import resolve_power
from greenlm.estimate.result import InferenceEstimate, Input, ranged
from greenlm.estimate.training import assemble
from greenlm.estimate.uncertainty import Range

WEIGHT_BITS = (4, 8, 16, 32)


def inference(
    *,
    params: float,
    hardware: str,
    queries_per_day: float,
    days: float,
    input_tokens: float,
    output_tokens: float,
    active_params: float | None = None,
    batch_size: int = 1,
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
) -> InferenceEstimate:
    """Estimate serving ``queries_per_day`` for ``days`` (``greenlm estimate inference``)."""
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
    if int(weights_bits) not in WEIGHT_BITS or weights_bits != int(weights_bits):
        raise ConfigError(f"weights bits must be one of {', '.join(map(str, WEIGHT_BITS))}, got {weights_bits!r}.")
    bits = int(weights_bits)
    weight_bytes = n_total * bits / 8.0
    if hw.memory_bw_gbps is None:
        raise ConfigError(f"{hw.name} has no memory bandwidth in the accelerator table.")
    bw = hw.memory_bw_gbps * 1e9
    if chips is None:
        if hw.memory_gb is None:
            raise ConfigError(f"{hw.name} has no memory size in the table; pass --chips.")
        need = weight_bytes * defaults.MEMORY_HEADROOM.value / (hw.memory_gb * 1e9)
        c = float(max(1, math.ceil(need)))
        inputs["chips"] = Input(c, "fewest chips whose memory holds the weights: " + defaults.MEMORY_HEADROOM.source)
    else:
        from greenlm.estimate.timing import check_chips

        c = check_chips(chips)
        inputs["chips"] = Input(c, "user value")
        if hw.memory_gb and weight_bytes > c * hw.memory_gb * 1e9:
            warnings.append(
                f"{weight_bytes / 1e9:.0f} GB of weights do not fit in {c:g} x "
                f"{hw.memory_gb:g} GB; estimate assumes they do."
            )
    peak = hw.peak_flops(precision)
    if mfu is not None:
        from greenlm.estimate.timing import check_mfu

        mfu_r = Range.exact(check_mfu(mfu))
        inputs["mfu"] = Input(mfu_r.value, "user value")
    else:
        mfu_r = defaults.PREFILL_MFU.range
        inputs["mfu"] = ranged(mfu_r, defaults.PREFILL_MFU.source)
    bw_eff = defaults.BANDWIDTH_EFFICIENCY.range
    inputs["bandwidth_efficiency"] = ranged(bw_eff, defaults.BANDWIDTH_EFFICIENCY.source)

    def batch_seconds(u: float, e: float) -> tuple[float, str]:
        prefill = 2.0 * n * i_tok * b / (c * peak * u)
        compute = 2.0 * n * b / (c * peak * u)
        memory = weight_bytes / (c * bw * e)
        return prefill + o_tok * max(compute, memory), "memory" if memory >= compute else "compute"

    central, bound = batch_seconds(mfu_r.value, bw_eff.value)
    fast, _ = batch_seconds(mfu_r.high, bw_eff.high)
    slow, _ = batch_seconds(mfu_r.low, bw_eff.low)
    queries = qpd * nd
    batches = queries / b
    ch = Range(central, fast, slow).scaled(batches * c / 3600.0)
    total_flops = queries * _flops.inference_flops(n, i_tok, o_tok)
    for k, v in (
        ("params", n_total),
        ("active_params", n),
        ("queries_per_day", qpd),
        ("days", nd),
        ("input_tokens", i_tok),
        ("output_tokens", o_tok),
        ("batch_size", b),
        ("weights_bits", bits),
    ):
        inputs[k] = Input(v, "user value")
    inputs["hardware"] = Input(hw.name, hw.spec_source)
    inputs["memory_bw_gbps"] = Input(hw.memory_bw_gbps, hw.spec_source)
    power = resolve_power(hw, power_w=power_w, basis=power_basis, workload="inference")
    inputs["power_w_per_chip"] = ranged(power.power_w, power.source)
    f = resolve_factors(
        location=location,
        intensity_kg_per_kwh=intensity_kg_per_kwh,
        pue=pue,
        price_per_kwh=price_per_kwh,
        currency=currency,
    )
    warnings.extend(f.warnings)
    est = assemble(
        kind="inference",
        hw=hw,
        chips=c,
        flops=total_flops,
        chip_hours=ch,
        power_w=power.power_w,
        mfu=mfu_r.value,
        factors=f,
        inputs=inputs,
        warnings=warnings,
        cls=InferenceEstimate,
        queries=queries,
        decode_bound=bound,
    )
    assert isinstance(est, InferenceEstimate)
    return est
