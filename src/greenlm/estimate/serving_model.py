"""Serving physics: time and energy of one decode step, and the fit of the model's constants.

A served model answers ``B`` concurrent sequences on a replica of ``n = tp x ep``
accelerators. Each decode step produces one token for each of the ``B`` sequences; with
continuous batching the prefill of new requests is chunked into the same steps, so a step
also carries ``I / O`` prompt tokens per sequence (``I`` prompt, ``O`` output tokens). Per step:

* bytes read from accelerator memory = weights touched + KV cache:
  weights touched = ``N_total x bytes/param x (1 - (1 - N_active/N_total)^B)``: a dense model
  reads every weight, a mixture-of-experts model the union of the experts its ``B`` tokens
  were routed to (each token reaches ``N_active/N_total`` of them); KV cache =
  ``B x ctx x kv_bytes_per_token`` with ``ctx = I + O/2`` (a running sequence is halfway
  through its answer on average), so it grows with the context and the batch;
* FLOPs = ``B x (2 N_active (1 + I/O) + 4 L d ctx)`` (weights, prefill share, attention).
  Prefill is counted as its own work (``2 N_active`` per prompt token, and the KV cache it
  leaves) but scheduled in the decode steps, as continuous batching does, and run at the
  step's fitted compute efficiency: a separate prefill efficiency (0.5 of peak, Pope et al.
  2022, or fitted) predicted the measured energy slightly worse in cross-validation;
* time ``t = L (c_layer + [tp>1] c_tp + [ep>1] c_ep) + k_mem bytes/(n BW)
  + (k_compute + [MoE] k_moe) FLOPs/(n peak) + B c_seq``: a fixed cost per layer (kernel
  launches, tensor- and expert-parallel collectives), the memory and compute terms (sum, not
  max: decode kernels do not overlap them), and a per-sequence cost (scheduling, sampling);
  ``k_mem, k_compute >= 1`` are the inverse of the share of peak bandwidth and throughput
  reached. Small batches are memory-bound (the weights dominate), large batches
  compute-bound; the crossover follows from the chip's FLOPS/bandwidth ratio;
* energy ``E = p_static TDP n t + e_byte bytes + e_flop FLOPs``, held between the idle draw
  and ``TDP x n x t``: a static draw while busy plus the energy of moving bytes and doing
  arithmetic, so power sits between idle and TDP by utilisation.

The ten constants are fitted (:func:`fit`) on measured serving runs by non-negative least
squares on relative errors, each model weighted equally; their shipped values and
cross-validated errors are in :mod:`greenlm.estimate.fitted`. The shape (layers, KV bytes per
token, width) is inferred from the active parameters when not given: ``N = 12 L d^2`` with
``d / L = 128`` and grouped-query attention with 8 KV heads of 128 (Llama 3, Qwen3).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from greenlm.estimate.nnls import nnls

SHAPE_RATIO = 128.0
KV_HEADS = 8
HEAD_DIM = 128
SHAPE_SOURCE = (
    "shape inferred from the active parameters: N = 12 x layers x d_model^2 (Kaplan et al. 2020) "
    "with d_model / layers = 128; KV cache per token = layers x 2 x 8 KV heads x 128 x bytes "
    "(grouped-query attention as in Llama 3 and Qwen3: Ainslie et al. 2023)"
)


def inferred_layers(active_params: float) -> float:
    """Layers of a transformer with ``active_params`` (real-valued; see :data:`SHAPE_SOURCE`)."""
    return (active_params / (12.0 * SHAPE_RATIO**2)) ** (1.0 / 3.0)


@dataclass(frozen=True)
class Setup:
    """One serving configuration: model, replica of accelerators, workload."""

    total_params: float
    active_params: float
    weight_bytes_per_param: float
    peak_flops: float  # per chip, at the precision the kernels compute in
    memory_bw_bps: float  # per chip, bytes/s
    tdp_w: float
    chips: int  # per replica: tensor parallel x expert parallel
    tensor_parallel: int
    expert_parallel: int
    batch: float  # concurrent sequences on the replica
    input_tokens: float
    output_tokens: float
    layers: float
    d_model: float
    kv_bytes_per_token: float

    @property
    def moe(self) -> bool:
        return self.active_params < self.total_params

    @property
    def context(self) -> float:
        """Average context a running sequence attends to: prompt + half the answer."""
        return self.input_tokens + self.output_tokens / 2.0

    def weight_bytes_touched(self, batch: float | None = None) -> float:
        """Weights read in one step: all of a dense model, the routed union for MoE."""
        b = self.batch if batch is None else batch
        share = self.active_params / self.total_params
        touched = 1.0 if share >= 1.0 else 1.0 - (1.0 - share) ** b
        return self.total_params * self.weight_bytes_per_param * touched

    def step_bytes(self, batch: float | None = None) -> float:
        b = self.batch if batch is None else batch
        return self.weight_bytes_touched(b) + b * self.context * self.kv_bytes_per_token

    def prefill_flops(self, batch: float | None = None) -> float:
        """FLOPs of the prompt share a step carries: ``B x 2 N_active x I/O``."""
        b = self.batch if batch is None else batch
        return b * 2.0 * self.active_params * self.input_tokens / max(self.output_tokens, 1.0)

    def step_flops(self, batch: float | None = None) -> float:
        b = self.batch if batch is None else batch
        o = max(self.output_tokens, 1.0)
        per_seq = 2.0 * self.active_params * (1.0 + self.input_tokens / o)
        per_seq += 4.0 * self.layers * self.d_model * self.context
        return b * per_seq

    def time_features(self, batch: float | None = None) -> dict[str, float]:
        """The terms of the step time, each to be multiplied by its constant."""
        b = self.batch if batch is None else batch
        n = self.chips
        comp = self.step_flops(b) / (n * self.peak_flops)
        return {
            "c_layer_s": self.layers,
            "c_tp_s": self.layers if self.tensor_parallel > 1 else 0.0,
            "c_ep_s": self.layers if self.expert_parallel > 1 else 0.0,
            "k_mem": self.step_bytes(b) / (n * self.memory_bw_bps),
            "k_compute": comp,
            "k_moe": comp if self.moe else 0.0,
            "c_seq_s": b,
        }


TIME_TERMS = ("c_layer_s", "c_tp_s", "c_ep_s", "k_mem", "k_compute", "k_moe", "c_seq_s")
#: Terms whose constant is at least 1 (a share of peak reached cannot exceed the peak).
FLOORED = ("k_mem", "k_compute")
ENERGY_TERMS = ("p_static", "e_byte_j", "e_flop_j")


@dataclass(frozen=True)
class Constants:
    """The fitted constants of the serving model (units in the names)."""

    c_layer_s: float  # fixed time per layer per step
    c_tp_s: float  # extra per layer with tensor parallelism (all-reduce)
    c_ep_s: float  # extra per layer with expert parallelism (all-to-all)
    k_mem: float  # 1 / share of peak memory bandwidth reached
    k_compute: float  # 1 / share of peak throughput reached
    k_moe: float  # extra compute cost of expert GEMMs (small per-expert batches)
    c_seq_s: float  # per sequence per step (scheduling, sampling)
    p_static: float  # busy static draw, share of TDP
    e_byte_j: float  # energy per byte read from memory
    e_flop_j: float  # energy per FLOP
    source: str = ""

    def time_s(self, s: Setup, batch: float | None = None) -> float:
        f = s.time_features(batch)
        return sum(getattr(self, k) * f[k] for k in TIME_TERMS)

    def energy_j(self, s: Setup, t_s: float, batch: float | None = None, idle_w: float = 0.0) -> float:
        """Energy of one step that takes ``t_s``: between idle and TDP for ``n`` chips."""
        n = s.chips
        e = (
            self.p_static * s.tdp_w * n * t_s
            + self.e_byte_j * s.step_bytes(batch)
            + self.e_flop_j * s.step_flops(batch)
        )
        return min(max(e, idle_w * n * t_s), s.tdp_w * n * t_s)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Constants:
        v = {k: float(d[k]) for k in (*TIME_TERMS, *ENERGY_TERMS)}
        return cls(
            c_layer_s=v["c_layer_s"],
            c_tp_s=v["c_tp_s"],
            c_ep_s=v["c_ep_s"],
            k_mem=v["k_mem"],
            k_compute=v["k_compute"],
            k_moe=v["k_moe"],
            c_seq_s=v["c_seq_s"],
            p_static=v["p_static"],
            e_byte_j=v["e_byte_j"],
            e_flop_j=v["e_flop_j"],
            source=str(d.get("source", "")),
        )

    def scaled(self, time_scale: float = 1.0, energy_scale: float = 1.0, source: str = "") -> Constants:
        """The same model with every time term and every energy term scaled (calibration)."""
        d = self.to_dict()
        for k in TIME_TERMS:
            d[k] = d[k] * time_scale
        for k in ENERGY_TERMS:
            d[k] = d[k] * energy_scale
        d["source"] = source or self.source
        return Constants.from_dict(d)


@dataclass(frozen=True)
class Step:
    """The predicted decode step of a setup."""

    time_s: float
    energy_j: float  # all chips of the replica, accelerators only
    memory_s: float  # k_mem x bytes / (n BW)
    compute_s: float  # compute terms
    overhead_s: float  # per-layer and per-sequence terms
    prefill_s: float  # the share of the compute term that is prompt processing
    bytes: float
    flops: float
    bound: str  # memory | compute
    crossover_batch: float | None  # smallest batch at which compute >= memory (None: never)

    @property
    def power_w(self) -> float:
        """Replica power (all chips) while busy."""
        return self.energy_j / self.time_s


def crossover_batch(c: Constants, s: Setup) -> float | None:
    """Smallest batch at which the compute term reaches the memory term (None up to 1e6)."""

    def gap(b: float) -> float:
        f = s.time_features(b)
        return (c.k_compute * f["k_compute"] + c.k_moe * f["k_moe"]) - c.k_mem * f["k_mem"]

    if gap(1.0) >= 0:
        return 1.0
    lo, hi = 1.0, 2.0
    while gap(hi) < 0:
        lo, hi = hi, hi * 2
        if hi > 1e6:
            return None
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        if gap(mid) >= 0:
            hi = mid
        else:
            lo = mid
    return hi


def predict(c: Constants, s: Setup, idle_w: float = 0.0) -> Step:
    """Time and energy of one decode step of ``s`` under constants ``c``."""
    f = s.time_features()
    t = c.time_s(s)
    mem = c.k_mem * f["k_mem"]
    comp = c.k_compute * f["k_compute"] + c.k_moe * f["k_moe"]
    k_flop = c.k_compute + (c.k_moe if s.moe else 0.0)
    return Step(
        time_s=t,
        energy_j=c.energy_j(s, t, idle_w=idle_w),
        memory_s=mem,
        compute_s=comp,
        overhead_s=t - mem - comp,
        prefill_s=k_flop * s.prefill_flops() / (s.chips * s.peak_flops),
        bytes=s.step_bytes(),
        flops=s.step_flops(),
        bound="memory" if mem >= comp else "compute",
        crossover_batch=crossover_batch(c, s),
    )


# ------------------------------------------------------------------------------ fitting
@dataclass(frozen=True)
class Point:
    """A measured configuration: its setup, measured step time and step energy."""

    setup: Setup
    step_s: float  # batch / output tokens per second
    step_energy_j: float  # J per output token x batch (accelerators)
    group: str = ""  # e.g. the model: groups are weighted equally
    label: dict[str, Any] = field(default_factory=dict)


def _weights(points: Sequence[Point]) -> list[float]:
    count = Counter(p.group for p in points)
    return [1.0 / math.sqrt(count[p.group]) for p in points]


def fit(points: Sequence[Point], source: str = "") -> Constants:
    """Fit all ten constants on ``points`` (NNLS on relative errors, groups weighted equally)."""
    if not points:
        raise ValueError("no points to fit")
    w = _weights(points)
    rows, y = [], []
    for p, wi in zip(points, w):
        f = p.setup.time_features()
        base = sum(f[k] for k in FLOORED)
        rows.append([wi * f[k] / p.step_s for k in TIME_TERMS])
        y.append(wi * (1.0 - base / p.step_s))
    x = nnls(rows, y)
    t = dict(zip(TIME_TERMS, x))
    for k in FLOORED:
        t[k] += 1.0
    partial = Constants.from_dict({**t, "p_static": 0.0, "e_byte_j": 0.0, "e_flop_j": 0.0})
    erows = []
    for p, wi in zip(points, w):
        s = p.setup
        tp = partial.time_s(s)
        erows.append([wi * v / p.step_energy_j for v in (s.tdp_w * s.chips * tp, s.step_bytes(), s.step_flops())])
    e = nnls(erows, w)
    return Constants.from_dict({**t, **dict(zip(ENERGY_TERMS, e)), "source": source})


def fit_scales(c: Constants, points: Sequence[Point]) -> tuple[float, float]:
    """One time scale and one energy scale that best correct ``c`` on ``points``.

    What a few measured points of one deployment can determine: the geometric mean ratio of
    measured to predicted step time, then of measured to predicted energy at the measured
    time scale. Used by ``greenlm estimate calibrate --bench``.
    """
    if not points:
        raise ValueError("no points to fit")
    lt = [math.log(p.step_s / c.time_s(p.setup)) for p in points]
    ts = math.exp(sum(lt) / len(lt))
    scaled = c.scaled(time_scale=ts)
    le = [math.log(p.step_energy_j / scaled.energy_j(p.setup, scaled.time_s(p.setup))) for p in points]
    return ts, math.exp(sum(le) / len(le))
