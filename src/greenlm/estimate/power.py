"""Training power model: average power per accelerator, its host share, and what it rests on.

In order of precedence:

* ``power_w``: the user's figure (per accelerator, whatever it includes): exact;
* ``basis="tdp"``: the accelerator's TDP and nothing else, to reproduce publications that costed
  ``GPU-hours x TDP`` (LLaMA, BLOOM);
* calibration (``greenlm estimate calibrate``): fractions of TDP measured on the user's runs;
* ``basis="model"`` (default), grounded in measured averages where publications give them:

  1. **GPUs with a reference server in the table** (DGX P100/V100/A100/H100/H200/B200): system
     power = 0.76 x the server's rated maximum per GPU (an 8 x H100 node measured at 76% of its
     rating under compute-intensive training; the same share reproduces the measured P100 and
     V100 system power of Patterson et al. 2021 within 3%). Accelerator share: 0.70 x TDP
     (A100 measured by Dodge et al. 2022).
  2. **Chips with a published measured mean** (TPU v3, v4: Jouppi et al. 2023): accelerator =
     that mean; system = mean x (1 + host share), the host share fitted on measured system
     power (:mod:`greenlm.estimate.fitted`, cross-validated).
  3. **Otherwise**: ``TDP x fraction + TDP x host share`` by hardware class (judgement, see
     :mod:`defaults`).

Utilisation dependence: data-centre GPUs in large training runs draw close to their limit
whenever busy, so (1) does not move with MFU (P100 at ~32% and V100 at ~20% hardware
utilisation both drew ~75% of their server's rating); TPU fleet means already average over
production utilisation; runs far below typical utilisation (all-to-all-bound MoE) draw less.
"""

from __future__ import annotations

from dataclasses import dataclass

from greenlm._validate import finite
from greenlm.errors import ConfigError
from greenlm.estimate import defaults, fitted
from greenlm.estimate.hardware import Hardware
from greenlm.estimate.uncertainty import Range, add

BASES = ("model", "tdp")


@dataclass(frozen=True)
class PowerEstimate:
    """Average power per accelerator (incl. host share) and where it comes from."""

    power_w: Range  # system: accelerator + host share
    basis: str  # user | tdp | model | calibrated
    source: str
    fraction: Range | None = None
    host_fraction: Range | None = None
    accelerator_w: Range | None = None  # accelerator only; None when not separable (user value)


def tpu_host_share() -> float:
    """Host share of a TPU's system power (fraction of chip power), fitted on measured rows."""
    return float(fitted.TRAINING["tpu_host_share"])


def resolve_power(
    hw: Hardware,
    *,
    power_w: float | None = None,
    basis: str = "model",
    workload: str = "train",
    fraction: Range | None = None,
    host_fraction: Range | None = None,
    calibration_source: str = "",
    host_share: float | None = None,
) -> PowerEstimate:
    """Average power per chip for ``hw``; ``fraction``/``host_fraction`` override defaults.

    ``host_share`` overrides the fitted TPU host share (the cross-validation refits it).
    """
    if power_w is not None:
        w = finite(
            "power per chip (W)",
            power_w,
            minimum=0.0,
            strict=True,
            hint=" Give average watts per accelerator, e.g. 300.",
        )
        return PowerEstimate(Range.exact(w), "user", "user value (W per accelerator)")
    b = basis.lower()
    if b not in BASES:
        raise ConfigError(f"Unknown power basis {basis!r}; use one of {', '.join(BASES)}.")
    no_tdp_model = b == "model" and hw.measured_power_w is not None
    if (b == "tdp" or (fraction is None and host_fraction is None)) and hw.tdp_w is None and not no_tdp_model:
        raise ConfigError(
            f"{hw.name} has no published TDP in the accelerator table, so greenlm cannot model "
            "its power; pass --power-w with the average watts per chip."
        )
    if b == "tdp":
        assert hw.tdp_w is not None
        tdp = hw.tdp_w
        return PowerEstimate(
            Range.exact(tdp),
            "tdp",
            f"TDP of {hw.name}, {tdp:g} W ({hw.spec_source}); no host share",
            accelerator_w=Range.exact(tdp),
        )
    if fraction is not None and host_fraction is not None:
        if hw.tdp_w is None:
            raise ConfigError(f"{hw.name} has no TDP in the table: a calibration in fractions of TDP cannot apply.")
        tdp = hw.tdp_w
        acc = fraction.scaled(tdp)
        return PowerEstimate(
            add(acc, host_fraction.scaled(tdp)),
            "calibrated",
            f"TDP {tdp:g} W x ({fraction.value:g} accelerator + {host_fraction.value:g} host): {calibration_source}",
            fraction=fraction,
            host_fraction=host_fraction,
            accelerator_w=acc,
        )
    node = hw.node_power_per_accelerator_w
    if workload == "train" and node is not None and hw.hw_class == "gpu" and hw.tdp_w is not None:
        nd = defaults.NODE_TRAIN_FRACTION
        system = nd.range.scaled(node)
        gd = defaults.GPU_TRAIN_FRACTION
        acc = gd.range.scaled(hw.tdp_w)
        acc = Range(min(acc.value, system.value), min(acc.low, system.low), min(acc.high, system.high))
        return PowerEstimate(
            system,
            "model",
            f"{nd.value:g} x {node:g} W (rated maximum per GPU of its reference server: {hw.node_source}): "
            f"{nd.source}; accelerator share {gd.value:g} x TDP {hw.tdp_w:g} W: {gd.source}",
            fraction=gd.range,
            accelerator_w=acc,
        )
    if workload == "train" and hw.measured_power_w is not None:
        m = hw.measured_power_w
        k = defaults.TPU_CHIP_RANGE
        acc = Range(m, m * (1 - k), m * (1 + k))
        h = tpu_host_share() if host_share is None else host_share
        system = acc.scaled(1.0 + h)
        return PowerEstimate(
            system,
            "model",
            f"measured mean {m:g} W per chip ({hw.measured_power_source}; {defaults.TPU_CHIP_RANGE_SOURCE}) "
            f"x (1 + host share {h:.3f}, {fitted.TRAINING_SOURCE})",
            accelerator_w=acc,
        )
    assert hw.tdp_w is not None
    tdp = hw.tdp_w
    if workload == "inference":
        frac_d = defaults.POWER_FRACTION_INFERENCE
    else:
        frac_d = defaults.POWER_FRACTION_TRAIN[hw.hw_class]
    host_d = defaults.HOST_FRACTION[hw.hw_class]
    frac = fraction or frac_d.range
    host = host_fraction or host_d.range
    acc = frac.scaled(tdp)
    return PowerEstimate(
        add(acc, host.scaled(tdp)),
        "model",
        f"TDP {tdp:g} W x ({frac.value:g} accelerator + {host.value:g} host): {frac_d.source}; {host_d.source}",
        fraction=frac,
        host_fraction=host,
        accelerator_w=acc,
    )
