"""Time model: chip-hours = FLOPs / (peak throughput at the precision x MFU).

MFU (model FLOPs utilisation) is the user's value, a calibrated value from measured runs, or
the documented default: a steady-state MFU for the hardware class and generation (see
:mod:`greenlm.estimate.defaults`), times

* a **size** factor below a billion active parameters (small matrices fill the chip badly);
* a **scale** factor beyond the number of chips the reference MFU was measured at (~5% per
  doubling: collectives and pipeline bubbles grow with the job);
* a **mixture-of-experts** factor (expert all-to-all, load imbalance, small expert GEMMs);
* **goodput**: a whole run also holds its chips through failures, restarts and evaluation.

Alternatively the user gives the time itself (``chip_hours``, or wall-clock ``hours`` x
``chips``), and the implied MFU is reported.
"""

from __future__ import annotations

import math

from greenlm._validate import finite
from greenlm.errors import ConfigError
from greenlm.estimate import defaults
from greenlm.estimate.defaults import Default
from greenlm.estimate.hardware import Hardware
from greenlm.estimate.uncertainty import Range


def mfu_class(hw: Hardware) -> str:
    """Return the key of :data:`defaults.MFU` for this accelerator (class and generation)."""
    year = hw.release_year or 0
    if hw.vendor.upper() == "AMD":
        return "amd"
    if hw.hw_class == "gpu":
        return "gpu-2022" if year >= 2022 else "gpu-2020" if year >= 2020 else "gpu-2017"
    if hw.hw_class == "tpu":
        return "tpu-2021" if year >= 2021 else "tpu-2017"
    return "other"


def small_model_factor(active_params: float) -> float:
    """MFU multiplier for models under 1B active parameters (1.0 at and above)."""
    if active_params >= defaults.MFU_SMALL_MODEL_PARAMS:
        return 1.0
    decades = math.log10(defaults.MFU_SMALL_MODEL_PARAMS / active_params)
    return max(0.5, 1.0 - 0.25 * decades)


def scale_factor(hw: Hardware, chips: float | None) -> float:
    """MFU multiplier for runs larger than the reference run of the class (1.0 at or below)."""
    if chips is None:
        return 1.0
    ref = defaults.MFU_REFERENCE_CHIPS[mfu_class(hw)]
    if chips <= ref:
        return 1.0
    return max(0.6, 1.0 - defaults.MFU_SCALE_LOSS_PER_DOUBLING.value * math.log2(chips / ref))


def default_mfu(hw: Hardware, active_params: float, *, chips: float | None = None, moe: bool = False) -> Default:
    """Return the default whole-run MFU range for ``hw`` and a model of ``active_params``.

    Steady-state class MFU x size factor x scale factor (``chips``) x MoE factor (``moe``) x
    goodput; each factor that applies is named in the source.
    """
    cls = mfu_class(hw)
    base = defaults.MFU[cls]
    r = base.range
    value, low, high = r.value, r.low, r.high
    parts = [base.source]
    f = small_model_factor(active_params)
    if f != 1.0:
        value, low = value * f, low * f
        parts.append(defaults.MFU_SMALL_MODEL_SOURCE)
    s = scale_factor(hw, chips)
    if s != 1.0:
        value, low, high = value * s, low * s, high * s
        parts.append(
            f"x {s:.3f} for {chips:g} chips against the reference {defaults.MFU_REFERENCE_CHIPS[cls]:g}: "
            f"{defaults.MFU_SCALE_LOSS_PER_DOUBLING.source}"
        )
    if moe:
        m = defaults.MOE_MFU_FACTOR.range
        value, low, high = value * m.value, low * m.low, high * m.high
        parts.append(f"x {m.value:g} (mixture of experts): {defaults.MOE_MFU_FACTOR.source}")
    g = defaults.GOODPUT.range
    value, low, high = value * g.value, low * g.low, min(1.0, high * g.high)
    parts.append(f"x {g.value:g} goodput: {defaults.GOODPUT.source}")
    high = max(high, value)
    return Default(Range(value, min(low, value), high), "; ".join(parts))


def check_mfu(mfu: object) -> float:
    """Validate a user MFU: it must lie in (0, 1]."""
    return finite(
        "MFU",
        mfu,
        minimum=0.0,
        strict=True,
        maximum=1.0,
        hint=" MFU is the share of peak throughput achieved, e.g. 0.4 for 40%.",
    )


def chip_hours_from_mfu(flops: float, peak_flops: float, mfu: Range) -> Range:
    """Chip-hours for ``flops`` at ``mfu`` of ``peak_flops`` (per chip, FLOP/s)."""

    def hours(u: float) -> float:
        return flops / (peak_flops * u) / 3600.0

    return Range(hours(mfu.value), hours(mfu.high), hours(mfu.low))


def resolve_time_inputs(
    *, chip_hours: float | None, hours: float | None, mfu: float | None, chips: float | None
) -> tuple[str, float | None]:
    """Which time input the user gave (``chip_hours``, ``hours``, ``mfu`` or ``default``).

    Raises ConfigError for conflicting inputs (``--hours`` with ``--mfu`` ...).
    """
    given = [name for name, v in (("chip_hours", chip_hours), ("hours", hours), ("mfu", mfu)) if v is not None]
    if len(given) > 1:
        flags = " and ".join(f"--{g.replace('_', '-')}" for g in given)
        raise ConfigError(
            f"{flags} conflict: give only one of --chip-hours, --hours or --mfu (the time is "
            "either measured or derived from the MFU, not both)."
        )
    if chip_hours is not None:
        return "chip_hours", finite("chip-hours", chip_hours, minimum=0.0, strict=True)
    if hours is not None:
        h = finite("hours", hours, minimum=0.0, strict=True, hint=" Give wall-clock hours.")
        if chips is None:
            raise ConfigError("--hours needs --chips (chip-hours = hours x chips).")
        return "hours", h
    if mfu is not None:
        return "mfu", check_mfu(mfu)
    return "default", None


def check_chips(chips: object) -> float:
    """Validate a number of chips: a positive whole number."""
    c = finite("chips", chips, minimum=0.0, strict=True, hint=" Give the number of accelerators.")
    if c != int(c):
        raise ConfigError(f"chips must be a whole number, got {c:g}.")
    return c


def implied_mfu(flops: float, peak_flops: float, chip_hours: float) -> float | None:
    """Return the MFU implied by a given time (None when it cannot be computed)."""
    if flops <= 0 or chip_hours <= 0 or peak_flops <= 0:
        return None
    return flops / (peak_flops * chip_hours * 3600.0)
