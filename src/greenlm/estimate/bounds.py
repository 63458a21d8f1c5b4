"""The range of every estimator input, checked once at the entry points (and by the CLI).

:func:`~greenlm.estimate.training.train`, :func:`~greenlm.estimate.training.finetune` and
:func:`~greenlm.estimate.serving.inference` call :func:`check` on their keyword arguments
before anything else, and ``greenlm estimate`` builds its argument types from
:data:`RANGES`, so a value is refused alike on the command line and in Python, with the same
bounds (those of :mod:`greenlm.limits`): ``params=1e300`` is a ``ConfigError`` naming
``params``, never an estimate of ``inf`` MWh. Values inside the ranges keep every figure
derived from them finite.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from greenlm import limits
from greenlm.errors import ConfigError

__all__ = ["RANGES", "TEXT", "Range", "check"]


@dataclass(frozen=True)
class Range:
    """``lo`` .. ``hi`` (``lo`` excluded if ``lo_open``); ``whole``: an integer count."""

    lo: float
    hi: float
    lo_open: bool = False
    whole: bool = False
    example: str = ""


def _n(bounds: tuple[float, float], example: str, *, lo_open: bool = False) -> Range:
    return Range(bounds[0], bounds[1], lo_open=lo_open, example=example)


def _w(bounds: tuple[int, int], example: str) -> Range:
    return Range(bounds[0], bounds[1], whole=True, example=example)


#: keyword argument -> its range.
RANGES: dict[str, Range] = {
    "params": _n(limits.PARAMS, "7e9"),
    "active_params": _n(limits.PARAMS, "1.3e10"),
    "tokens": _n(limits.TOKENS, "2e12"),
    "flops": _n(limits.FLOPS, "3.14e23"),
    "chips": _w(limits.CHIPS, "64"),
    "chip_hours": _n(limits.CHIP_HOURS, "1e5", lo_open=True),
    "hours": _n(limits.HOURS, "240", lo_open=True),
    "mfu": _n((0.0, 1.0), "0.4", lo_open=True),
    "power_w": _n(limits.CHIP_POWER_W, "700", lo_open=True),
    "idle_power_w": _n(limits.CHIP_POWER_W, "100"),
    "pue": _n(limits.PUE, "1.2"),
    "intensity_kg_per_kwh": _n(limits.INTENSITY_KG_PER_KWH, "0.4"),
    "price_per_kwh": _n(limits.PRICE_PER_KWH, "0.25"),
    "development_factor": _n(limits.DEVELOPMENT_FACTOR, "0.5"),
    "layers": _w(limits.LAYERS, "32"),
    "hidden_size": _w(limits.WIDTH, "4096"),
    "ffn_size": _w(limits.WIDTH, "11008"),
    "seq_len": _w(limits.SEQ_LEN, "4096"),
    "lora_rank": _w(limits.LORA_RANK, "8"),
    "trainable_params": _n((0.0, limits.PARAMS[1]), "4e6"),
    "queries_per_day": _n(limits.QUERIES_PER_DAY, "1e6", lo_open=True),
    "days": _n(limits.DAYS, "365", lo_open=True),
    "input_tokens": _n(limits.TOKENS_PER_QUERY, "500"),
    "output_tokens": _n(limits.TOKENS_PER_QUERY, "200"),
    "batch_size": _n(limits.BATCH, "8"),
    "tensor_parallel": _w(limits.PARALLEL, "8"),
    "expert_parallel": _w(limits.PARALLEL, "8"),
    "kv_bytes_per_token": _n(limits.KV_BYTES_PER_TOKEN, "131072"),
    "hours_per_day": _n(limits.HOURS_PER_DAY, "24", lo_open=True),
}

#: Text keyword arguments and their longest length.
TEXT: dict[str, int] = {
    "precision": 16,
    "power_basis": 16,
    "location": limits.LOCATION_CHARS,
    "currency": 16,
    "method": 16,
    "weight_precision": 16,
    "calibration_path": 4096,
}


#: How an argument is called in prose where its name alone would read badly.
_WORDS = {"mfu": "MFU", "pue": "PUE", "chip_hours": "chip-hours"}


def _label(name: str) -> str:
    """``batch size (batch_size)``: the thing in words, then the keyword to fix."""
    words = _WORDS.get(name, name.replace("_", " "))
    return name if words == name else f"{words} ({name})"


def check(arguments: Mapping[str, object]) -> None:
    """Refuse any argument outside its range, or of the wrong type, with a ``ConfigError`` naming it.

    ``None`` means "not given" and passes; names without a range are left to the estimator.
    """
    for name, value in arguments.items():
        if value is None:
            continue
        r = RANGES.get(name)
        if r is not None:
            hint = f" (for example {name}={r.example})"
            label = _label(name)
            if r.whole:
                limits.whole(label, value, int(r.lo), int(r.hi), hint=hint)
            else:
                if isinstance(value, str):
                    raise ConfigError(f"{label} must be a number, got the text {value[:40]!r}.{hint}")
                limits.number(label, value, r.lo, r.hi, lo_open=r.lo_open, hint=hint)
            continue
        n = TEXT.get(name)
        if n is not None:
            limits.text(name, value, n)
        elif name == "hardware" and not (isinstance(value, str) or hasattr(value, "peak_flops")):
            raise ConfigError(f"hardware must be an accelerator name such as 'A100' or 'H100', got {value!r}.")
        elif name == "hardware":
            if isinstance(value, str):
                limits.text("hardware", value, 200)
        elif name == "target_modules" and not isinstance(value, str):
            if not isinstance(value, (list, tuple)) or not all(isinstance(x, str) for x in value):
                raise ConfigError(f"target_modules must be names such as 'q,v' or ['q', 'v'], got {value!r}.")
        elif name in ("calibrated",) and not isinstance(value, bool):
            raise ConfigError(f"{name} must be True or False, got {value!r}.")
