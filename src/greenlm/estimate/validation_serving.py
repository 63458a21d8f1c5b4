"""Validation of the serving model on measured deployments (tests/data/inference_dev.csv).

Each row is one vLLM configuration measured by the ML.ENERGY leaderboard (v3): model, total
and active parameters, weight precision, GPU and count, tensor/expert parallel degree,
measured average batch, average output length, energy per output token (GPUs only), power,
throughput. The serving model (:mod:`greenlm.estimate.serving_model`) predicts the step
time and energy of each configuration from those inputs alone.

**Leave-one-model-out**: for each model, the ten constants are fitted on the other models'
rows and the held-out model's rows are predicted; the errors reported are those of the
held-out predictions only. Every constant is fitted inside this loop; nothing is keyed to a
model. The constants shipped (:mod:`greenlm.estimate.fitted`) are the same fit on every row.

With data parallelism (``data_parallel`` > 1, none in the dev rows) the measured batch and
throughput are read as the deployment's, shared equally by its replicas.

**Prompt lengths** are not in the data. The validation assumes a prompt length per task
(:data:`PROMPT_TOKENS`, reasons in :data:`PROMPT_SOURCES`) and reports how the error moves
when every assumption is halved or doubled.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greenlm.errors import ConfigError, GreenlmError
from greenlm.estimate import serving_model as sm
from greenlm.estimate import weights as wf
from greenlm.estimate.hardware import find_hardware

#: Prompt tokens assumed per ML.ENERGY task (not in the data).
PROMPT_TOKENS: dict[str, float] = {"lm-arena-chat": 256.0, "gpqa": 512.0, "sourcegraph-fim": 2048.0}
DEFAULT_PROMPT_TOKENS = 512.0
PROMPT_SOURCES: dict[str, str] = {
    "lm-arena-chat": "LMArena-style chat: user prompts average ~70 tokens over ~2 turns in LMSYS-Chat-1M "
    "(Zheng et al. 2024, ICLR); with the earlier turns and the chat template, ~250",
    "gpqa": "GPQA: a graduate-level question of a paragraph and four answer options (Rein et al. 2023), "
    "~300-400 tokens, plus instructions and template",
    "sourcegraph-fim": "fill-in-the-middle code completion sends the code before and after the cursor; "
    "~2K tokens of context",
    "other": "tasks not listed: 512 tokens",
}
KV_BYTES = 2.0  # bf16 KV cache (vLLM's default kv_cache_dtype="auto" for these checkpoints)


def _f(x: str | None) -> float:
    return float((x or "").strip())


def row_setup(r: dict[str, str], prompt_scale: float = 1.0) -> sm.Setup:
    """The :class:`~greenlm.estimate.serving_model.Setup` a row describes."""
    hw = find_hardware(r["gpu_model"])
    total = _f(r["total_params_B"]) * 1e9
    active = _f(r["active_params_B"]) * 1e9 if (r.get("active_params_B") or "").strip() else total
    fmt = wf.resolve(hw, r["weight_precision"])
    tp = int(_f(r.get("tensor_parallel") or "1"))
    ep = int(_f(r.get("expert_parallel") or "1"))
    dp = max(1, int(_f(r.get("data_parallel") or "1")))
    layers = sm.inferred_layers(active)
    if hw.memory_bw_gbps is None or hw.tdp_w is None:
        raise ValueError(f"{hw.name} lacks bandwidth or TDP in the accelerator table")
    return sm.Setup(
        total_params=total,
        active_params=active,
        weight_bytes_per_param=fmt.bytes_per_param,
        peak_flops=fmt.peak_flops,
        memory_bw_bps=hw.memory_bw_gbps * 1e9,
        tdp_w=hw.tdp_w,
        chips=tp * ep,
        tensor_parallel=tp,
        expert_parallel=ep,
        batch=_f(r["avg_batch_size"]) / dp,  # per replica: the measured batch is the deployment's
        input_tokens=PROMPT_TOKENS.get(r.get("task", ""), DEFAULT_PROMPT_TOKENS) * prompt_scale,
        output_tokens=_f(r["avg_output_len"]),
        layers=layers,
        d_model=sm.SHAPE_RATIO * layers,
        kv_bytes_per_token=layers * 2 * sm.KV_HEADS * sm.HEAD_DIM * KV_BYTES,
    )


def row_point(r: dict[str, str], prompt_scale: float = 1.0) -> sm.Point:
    """A measured point: step time = batch / throughput, step energy = J/token x batch."""
    s = row_setup(r, prompt_scale)
    dp = max(1, int(_f(r.get("data_parallel") or "1")))
    tput = _f(r["output_throughput_tok_s"]) / dp  # per replica
    return sm.Point(
        setup=s,
        step_s=s.batch / tput,
        step_energy_j=_f(r["energy_per_token_j"]) * s.batch,
        group=r["model_id"],
        label={
            "model": r["model_id"],
            "task": r.get("task", ""),
            "gpu": r["gpu_model"],
            "gpus": int(_f(r["num_gpus"])),
            "batch": s.batch,
            "batch_band": "<= 32" if s.batch <= 32 else "33-256" if s.batch <= 256 else "> 256",
            "power_w": _f(r["avg_power_w"]),
            "j_per_token": _f(r["energy_per_token_j"]),
        },
    )


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """Rows of an inference CSV."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@dataclass(frozen=True)
class Prediction:
    """One held-out row: predicted over measured."""

    label: dict[str, Any]
    j_ratio: float  # predicted / measured J per output token
    time_ratio: float  # predicted / measured step time (inverse throughput)
    power_ratio: float  # predicted / measured power


@dataclass(frozen=True)
class ServingReport:
    """Leave-one-model-out predictions and the constants fitted on every row."""

    predictions: list[Prediction]
    constants: sm.Constants
    n_models: int
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (row, why)

    @staticmethod
    def _abs_pct(ratios: Iterable[float]) -> list[float]:
        return [100.0 * abs(r - 1.0) for r in ratios]

    def median_abs_pct(self, what: str = "j") -> float:
        return statistics.median(self._abs_pct(getattr(p, f"{what}_ratio") for p in self.predictions))

    def within_2x(self) -> float:
        """Share of held-out rows whose J/token prediction is within a factor of two."""
        ok = [0.5 <= p.j_ratio <= 2.0 for p in self.predictions]
        return sum(ok) / len(ok)

    def quantile_ratio(self, q: float) -> float:
        """Quantile ``q`` of predicted/measured J/token (nearest rank)."""
        rs = sorted(p.j_ratio for p in self.predictions)
        return rs[min(len(rs) - 1, max(0, round(q * (len(rs) - 1))))]

    def by(self, key: str) -> dict[str, tuple[float, float, int]]:
        """Per value of ``key``: median abs error %, median signed error %, rows."""
        groups: dict[str, list[float]] = {}
        for p in self.predictions:
            groups.setdefault(str(p.label[key]), []).append(p.j_ratio)
        return {
            k: (
                statistics.median(self._abs_pct(v)),
                100.0 * (statistics.median(v) - 1.0),
                len(v),
            )
            for k, v in sorted(groups.items())
        }


def cross_validate(points: Sequence[sm.Point]) -> list[Prediction]:
    """Leave-one-group-out predictions (the fit never sees the group it predicts)."""
    out = []
    groups = sorted({p.group for p in points})
    for g in groups:
        train = [p for p in points if p.group != g]
        c = sm.fit(train)
        for p in points:
            if p.group != g:
                continue
            t = c.time_s(p.setup)
            e = c.energy_j(p.setup, t)
            out.append(
                Prediction(
                    label=p.label,
                    j_ratio=e / p.step_energy_j,
                    time_ratio=t / p.step_s,
                    power_ratio=(e / t) / (p.step_energy_j / p.step_s),
                )
            )
    return out


def validate(rows: Sequence[dict[str, str]], prompt_scale: float = 1.0) -> ServingReport:
    """Leave-one-model-out validation of the serving model on ``rows``."""
    points, skipped = [], []
    for i, r in enumerate(rows):
        try:
            points.append(row_point(r, prompt_scale))
        except (GreenlmError, KeyError, ValueError, ZeroDivisionError) as e:
            skipped.append((f"row {i + 1} ({r.get('model_id', '?')}, {r.get('gpu_model', '?')})", str(e) or repr(e)))
    if len({p.group for p in points}) < 2:
        raise ConfigError("serving validation needs usable rows of at least two models (leave-one-model-out)")
    preds = cross_validate(points)
    constants = sm.fit(points, source="fit")
    return ServingReport(preds, constants, len({p.group for p in points}), skipped)


def regrouped(rows: Sequence[dict[str, str]], by: str) -> tuple[float, float]:
    """Median abs. error and share within 2x when whole ``by`` groups are held out at once.

    ``by`` is ``vendor`` (the organisation before the ``/`` of the model id: every model of a
    family out together) or ``gpu`` (fit on one GPU's rows, predict the other's).
    """
    pts = []
    for r in rows:
        try:
            p = row_point(r)
        except (GreenlmError, KeyError, ValueError, ZeroDivisionError):
            continue
        key = r["model_id"].split("/")[0] if by == "vendor" else r["gpu_model"]
        pts.append(sm.Point(p.setup, p.step_s, p.step_energy_j, key, p.label))
    if len({p.group for p in pts}) < 2:
        return float("nan"), float("nan")
    preds = cross_validate(pts)
    errs = [100.0 * abs(p.j_ratio - 1.0) for p in preds]
    return statistics.median(errs), sum(0.5 <= p.j_ratio <= 2.0 for p in preds) / len(preds)


def geometric_mean(values: Iterable[float]) -> float:
    vs = list(values)
    return math.exp(sum(math.log(v) for v in vs) / len(vs))
