"""Accelerator specifications, and forgiving matching of hardware names to the shipped table.

The table is ``greenlm/data/accelerators.csv`` (vendor datasheets; its README lists
the source of each row). Names are matched loosely: ``"A100"``, ``"a100-80gb"``,
``"NVIDIA A100-SXM4-80GB"`` (as ``nvidia-smi`` prints it), ``"TPU v4"``, ``"tpuv3"`` and
``"MI250X"`` all work. When a short name fits several rows (``"H100"``: SXM, PCIe, NVL), the
socketed data-centre part (SXM, OAM, TPU board) is preferred, then the first in the table. An
unknown name raises :class:`HardwareNotFoundError` with close matches.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from greenlm.data import read_csv
from greenlm.errors import ConfigError

#: Precision name -> column of the table giving peak dense throughput (TFLOPS or TOPS).
PRECISIONS: dict[str, str] = {
    "bf16": "fp16_bf16_dense_tflops",
    "fp16": "fp16_bf16_dense_tflops",
    "tf32": "tf32_dense_tflops",
    "fp32": "fp32_tflops",
    "fp8": "fp8_dense_tflops",
    "int8": "int8_dense_tops",
}
#: Columns read besides :data:`PRECISIONS`: FP4 tensor throughput (Blackwell), used for MXFP4 /
#: NVFP4 weights with FP4 arithmetic; not a training precision.
FP4_COLUMN = "fp4_dense_tflops"
BF16_SOURCE = (
    "the table's bf16 column holds fp16/bf16 together; chips marked bf16=no (Pascal, Volta, "
    "Turing: their datasheets list FP16 only) have no bfloat16 arithmetic"
)

_NOISE = {
    "nvidia",
    "amd",
    "google",
    "intel",
    "tesla",
    "instinct",
    "geforce",
    "cloud",
    "aws",
    "per",
    "chip",
    "gpu",
    "the",
    "apple",
    "generation",
}
_PREFERRED_FORM = ("sxm", "oam", "board", "superchip")


class HardwareNotFoundError(ConfigError):
    """A hardware name matches no row of the accelerator table."""

    def __init__(self, name: str, suggestions: Sequence[str] = ()) -> None:
        self.name = name
        self.suggestions = list(suggestions)
        hint = (
            f" Did you mean: {'; '.join(self.suggestions)}?"
            if self.suggestions
            else " `greenlm estimate hardware` lists the known accelerators."
        )
        super().__init__(f"Unknown hardware {name!r}.{hint}")


@dataclass(frozen=True)
class Hardware:
    """One accelerator: the figures the estimator uses, from its table row."""

    name: str
    vendor: str
    type: str  # gpu | tpu | accelerator | apu | soc | gpu+cpu module
    form_factor: str
    release_year: int | None
    tdp_w: float | None
    peak_tflops: dict[str, float]  # precision -> dense peak (TFLOPS / TOPS)
    memory_gb: float | None
    memory_bw_gbps: float | None
    memory_type: str
    embodied_kgco2e: float | None
    embodied_scope: str
    embodied_source: str
    spec_source: str
    supports_bf16: bool = True
    fp4_tflops: float | None = None
    node_max_power_w: float | None = None
    node_accelerators: int | None = None
    node_source: str = ""
    measured_power_w: float | None = None
    measured_power_source: str = ""

    @property
    def node_power_per_accelerator_w(self) -> float | None:
        """Rated maximum power of the vendor's reference server, per accelerator (None if unknown)."""
        if self.node_max_power_w is None or not self.node_accelerators:
            return None
        return self.node_max_power_w / self.node_accelerators

    @property
    def hw_class(self) -> str:
        """``gpu``, ``tpu`` or ``other``: selects the class defaults (MFU, power fraction)."""
        if self.type.startswith("gpu") or self.type == "apu":
            return "gpu"
        if self.type == "tpu":
            return "tpu"
        return "other"

    def supports(self, precision: str) -> bool:
        """Whether the table gives a throughput for ``precision`` on this chip (bf16 needs support)."""
        key = precision.lower()
        if key == "bf16" and not self.supports_bf16:
            return False
        return key in PRECISIONS and PRECISIONS[key] in self.peak_tflops

    def peak_flops(self, precision: str) -> float:
        """Peak dense throughput per chip in FLOP/s at ``precision``.

        ``bf16`` on a chip without bfloat16 (P100, V100, T4) raises; callers that want the
        documented fallback to fp16 use :func:`compute_precision`.
        """
        key = precision.lower()
        if key not in PRECISIONS:
            raise ConfigError(f"Unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}.")
        if key == "bf16" and not self.supports_bf16:
            raise ConfigError(
                f"{self.name} has no bfloat16 arithmetic ({BF16_SOURCE}); use --precision fp16 "
                "(what such chips train and serve in)."
            )
        tflops = self.peak_tflops.get(PRECISIONS[key])
        if tflops is None:
            known = sorted({p for p, c in PRECISIONS.items() if c in self.peak_tflops})
            alt = f" Known for this chip: {', '.join(known)}." if known else ""
            raise ConfigError(
                f"The accelerator table gives no {key} throughput for {self.name}.{alt} "
                "Pass another --precision, or give --chip-hours / --hours instead."
            )
        return tflops * 1e12

    def peak_tflops_by_precision(self) -> dict[str, float]:
        """Dense peak (TFLOPS/TOPS) by precision name, only for precisions the chip supports."""
        out = {p: self.peak_tflops[c] for p, c in PRECISIONS.items() if self.supports(p)}
        if self.fp4_tflops is not None:
            out["fp4"] = self.fp4_tflops
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "vendor": self.vendor,
            "type": self.type,
            "tdp_w": self.tdp_w,
            "memory_gb": self.memory_gb,
            "memory_bw_gbps": self.memory_bw_gbps,
            "peak_tflops": dict(self.peak_tflops),
            "peak_tflops_by_precision": self.peak_tflops_by_precision(),
            "bf16": self.supports_bf16,
            "node_power_per_accelerator_w": self.node_power_per_accelerator_w,
            "measured_power_w": self.measured_power_w,
            "source": self.spec_source,
        }


def compute_precision(hw: Hardware, precision: str) -> tuple[str, str]:
    """The precision whose peak applies on ``hw``, and a warning when it falls back.

    ``bf16`` on a chip without bfloat16 falls back to ``fp16`` (the chip's half precision),
    with a warning that says so; every other precision is returned as given.
    """
    key = precision.lower()
    if key == "bf16" and not hw.supports_bf16 and "fp16" in PRECISIONS and hw.supports("fp16"):
        return "fp16", (
            f"{hw.name} has no bfloat16 arithmetic ({BF16_SOURCE}): its fp16 peak was used instead of bf16."
        )
    return key, ""


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _tokens(text: str) -> list[str]:
    words = re.split(r"[^a-z0-9]+", text.lower())
    return [w for w in words if w and w not in _NOISE]


def _ids(tokens: list[str]) -> set[str]:
    """Tokens plus adjacent pairs and triples glued, so "tpuv3" meets "tpu v3"."""
    out = set(tokens)
    for n in (2, 3):
        out.update("".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return out


@functools.lru_cache(maxsize=1)
def all_hardware() -> tuple[Hardware, ...]:
    """Every accelerator in the shipped table, in table order."""
    out = []
    for r in read_csv("accelerators.csv"):
        peaks = {c: v for c in set(PRECISIONS.values()) if (v := _num(r[c])) is not None}
        year = _num(r["release_year"])
        out.append(
            Hardware(
                name=r["name"],
                vendor=r["vendor"],
                type=r["type"],
                form_factor=r["form_factor"],
                release_year=int(year) if year is not None else None,
                tdp_w=_num(r["tdp_w"]),
                peak_tflops=peaks,
                memory_gb=_num(r["memory_gb"]),
                memory_bw_gbps=_num(r["memory_bw_gbps"]),
                memory_type=r["memory_type"],
                embodied_kgco2e=_num(r["embodied_kgco2e"]),
                embodied_scope=r["embodied_scope"],
                embodied_source=r["embodied_source"],
                spec_source=r["spec_source"],
                supports_bf16=(r.get("bf16") or "").strip().lower() != "no",
                fp4_tflops=_num(r.get("fp4_dense_tflops") or ""),
                node_max_power_w=_num(r.get("node_max_power_w") or ""),
                node_accelerators=int(n) if (n := _num(r.get("node_accelerators") or "")) else None,
                node_source=r.get("node_source") or "",
                measured_power_w=_num(r.get("measured_power_w") or ""),
                measured_power_source=r.get("measured_power_source") or "",
            )
        )
    return tuple(out)


def _core(tokens: list[str]) -> list[str]:
    """Tokens that identify a model (contain a digit, and are not a memory size)."""
    return [t for t in tokens if re.search(r"\d", t) and not re.fullmatch(r"\d+gb|hbm\w*|gddr\w*|lpddr\w*", t)]


def find_hardware(name: str | Hardware) -> Hardware:
    """Return the accelerator called ``name`` (matched forgivingly); see the module docstring."""
    if isinstance(name, Hardware):
        return name
    text = str(name).strip()
    if not text:
        raise HardwareNotFoundError(text)
    table = all_hardware()
    for hw in table:
        if hw.name.lower() == text.lower():
            return hw
    q = _tokens(text)
    core = _core(q) or q
    if not core:
        raise HardwareNotFoundError(text, suggest_hardware(text))
    q_ids = _ids(q)
    scored = []
    for order, hw in enumerate(table):
        ids = _ids(_tokens(hw.name) + _tokens(hw.form_factor)) | set(_tokens(hw.memory_type))
        if not all(c in ids for c in core):
            continue
        matched = sum(1 for t in q if t in ids) + sum(1 for t in ids if t in q_ids and t not in q)
        form = hw.form_factor.lower()
        preferred = any(form.startswith(p) for p in _PREFERRED_FORM)
        scored.append((-matched, not preferred, order, hw))
    if not scored:
        raise HardwareNotFoundError(text, suggest_hardware(text))
    scored.sort(key=lambda s: s[:3])
    return scored[0][3]


def suggest_hardware(name: str, n: int = 5) -> list[str]:
    """Close matches for a mistyped hardware name."""
    table = all_hardware()
    compact = {"".join(_tokens(hw.name)): hw.name for hw in table}
    key = "".join(_tokens(name))
    hits = difflib.get_close_matches(key, list(compact), n=n, cutoff=0.4)
    out = [compact[h] for h in hits]
    for hw in table:  # a shared model token ("A100" in "A1000") is a strong hint
        if len(out) >= n:
            break
        if hw.name not in out and any(c[:3] in hw.name.lower() for c in _core(_tokens(name))):
            out.append(hw.name)
    return out[:n]
