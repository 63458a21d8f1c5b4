"""Power model: average power per accelerator, including its share of the host.

Three ways, in order of precedence:

* ``power_w``: the user's figure (per accelerator, whatever it includes) — exact;
* ``basis="tdp"``: the accelerator's TDP and nothing else, to reproduce publications that
  costed ``GPU-hours x TDP`` (LLaMA, BLOOM);
* ``basis="model"`` (default): ``TDP x fraction + TDP x host share``, with the fraction and
  host share by hardware class (GPU, TPU, other) and by workload (training or serving), or
  fitted on measured runs (``greenlm estimate calibrate``). See :mod:`defaults` for sources.
"""

from __future__ import annotations

from dataclasses import dataclass

from greenlm._validate import finite
from greenlm.errors import ConfigError
from greenlm.estimate import defaults
from greenlm.estimate.hardware import Hardware
from greenlm.estimate.uncertainty import Range, add

BASES = ("model", "tdp")


@dataclass(frozen=True)
class PowerEstimate:
    """Average power per accelerator (incl. host share) and where it comes from."""

    power_w: Range
    basis: str  # user | tdp | model | calibrated
    source: str
    fraction: Range | None = None
    host_fraction: Range | None = None


def resolve_power(
    hw: Hardware,
    *,
    power_w: float | None = None,
    basis: str = "model",
    workload: str = "train",
    fraction: Range | None = None,
    host_fraction: Range | None = None,
    calibration_source: str = "",
) -> PowerEstimate:
    """Average power per chip for ``hw``; ``fraction``/``host_fraction`` override defaults."""
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
    if hw.tdp_w is None:
        raise ConfigError(
            f"{hw.name} has no published TDP in the accelerator table, so greenlm cannot model "
            "its power; pass --power-w with the average watts per chip."
        )
    tdp = hw.tdp_w
    if b == "tdp":
        return PowerEstimate(
            Range.exact(tdp),
            "tdp",
            f"TDP of {hw.name}, {tdp:g} W ({hw.spec_source}); no host share",
        )
    if fraction is not None and host_fraction is not None:
        src = calibration_source
        basis_name = "calibrated"
    else:
        if workload == "inference":
            frac_d = defaults.POWER_FRACTION_INFERENCE
        else:
            frac_d = defaults.POWER_FRACTION_TRAIN[hw.hw_class]
        host_d = defaults.HOST_FRACTION[hw.hw_class]
        fraction = fraction or frac_d.range
        host_fraction = host_fraction or host_d.range
        src = f"{frac_d.source}; {host_d.source}"
        basis_name = "model"
    total = add(fraction.scaled(tdp), host_fraction.scaled(tdp))
    return PowerEstimate(
        total,
        basis_name,
        f"TDP {tdp:g} W x ({fraction.value:g} accelerator + {host_fraction.value:g} host): {src}",
        fraction=fraction,
        host_fraction=host_fraction,
    )
