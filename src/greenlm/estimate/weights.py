"""Weight formats of a served model: bytes per parameter and the arithmetic the kernels use.

* ``bf16``/``fp16``: 2 bytes, arithmetic at the job's precision (bf16 by default);
* ``fp8``: 1 byte, FP8 arithmetic where the chip has it (W8A8, as vLLM serves FP8 checkpoints);
* ``int8``: 1 byte, weight-only: dequantized, arithmetic at the job's precision;
* ``mxfp4``: 4 bits + one 8-bit scale per 32 values = 4.25 bits (OCP Microscaling spec v1.0),
  FP4 arithmetic where the chip has it (Blackwell), else the job's precision;
* ``nvfp4``: 4 bits + one 8-bit scale per 16 values = 4.5 bits, arithmetic as ``mxfp4``;
* ``int4``: 4 bits + a 16-bit scale per group of 128 = 4.125 bits (GPTQ/AWQ-style),
  weight-only;
* ``fp32``: 4 bytes, FP32 arithmetic.

``weights_bits`` (16, 8, 4, 32: the older interface) maps to ``bf16``, ``int8``, ``int4`` and
``fp32``.
"""

from __future__ import annotations

from dataclasses import dataclass

from greenlm.errors import ConfigError
from greenlm.estimate.hardware import Hardware, compute_precision

#: format -> (bits per parameter, arithmetic: a precision name, "fp4", or None = the job's)
FORMATS: dict[str, tuple[float, str | None]] = {
    "bf16": (16.0, None),
    "fp16": (16.0, "fp16"),
    "fp8": (8.0, "fp8"),
    "int8": (8.0, None),
    "mxfp4": (4.25, "fp4"),
    "nvfp4": (4.5, "fp4"),
    "int4": (4.125, None),
    "fp32": (32.0, "fp32"),
}
ALIASES = {
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "float8": "fp8",
    "fp8_e4m3": "fp8",
    "e4m3": "fp8",
    "w8a8": "fp8",
    "mxfp4_moe": "mxfp4",
    "fp4": "mxfp4",
    "awq": "int4",
    "gptq": "int4",
    "w4a16": "int4",
    "float32": "fp32",
}
BITS_TO_FORMAT = {16: "bf16", 8: "int8", 4: "int4", 32: "fp32"}


@dataclass(frozen=True)
class WeightFormat:
    """A resolved weight format on a chip."""

    name: str
    bytes_per_param: float
    compute_precision: str  # the precision whose peak applies ("fp4" for FP4 tensor cores)
    peak_flops: float
    note: str  # a fallback said in words, or ""


def normalise(name: str) -> str:
    """Canonical format name, or a ConfigError listing the known ones."""
    key = str(name).strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in FORMATS:
        raise ConfigError(f"Unknown weight format {name!r}; use one of {', '.join(FORMATS)} (e.g. bf16, fp8, mxfp4).")
    return key


def resolve(hw: Hardware, fmt: str, precision: str = "bf16") -> WeightFormat:
    """Bytes per parameter and the peak throughput that applies for ``fmt`` on ``hw``."""
    name = normalise(fmt)
    bits, arith = FORMATS[name]
    notes: list[str] = []
    if arith == "fp4":
        if hw.fp4_tflops is not None:
            return WeightFormat(name, bits / 8, "fp4", hw.fp4_tflops * 1e12, "")
        notes.append(f"{hw.name} has no FP4 arithmetic in the table: {name} weights are dequantized")
        arith = None
    if arith == "fp8" and not hw.supports("fp8"):
        notes.append(f"{hw.name} has no FP8 arithmetic in the table: fp8 weights are dequantized")
        arith = None
    prec, fallback = compute_precision(hw, arith or precision)
    if fallback:
        notes.append(fallback)
    return WeightFormat(name, bits / 8, prec, hw.peak_flops(prec), "; ".join(notes))
