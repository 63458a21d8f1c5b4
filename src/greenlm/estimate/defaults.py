"""Every default the estimator uses, with its range and its source, in one place.

docs/estimate.md explains the reasoning behind each figure. A default is a
:class:`~greenlm.estimate.uncertainty.Range` plus the sentence that says where it comes from;
that sentence is copied into the ``inputs`` of every result that uses it.

Published figures that are also rows of the validation set (tests/data/footprints_dev.csv)
were deliberately *not* used to set these defaults, so that validation stays honest.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from greenlm.data import read_csv
from greenlm.estimate.uncertainty import Range


@dataclass(frozen=True)
class Default:
    """A default value with its plausible range and the source that justifies it."""

    range: Range
    source: str

    @property
    def value(self) -> float:
        return self.range.value


def _d(value: float, low: float, high: float, source: str) -> Default:
    return Default(Range(value, low, high), source)


# ---------------------------------------------------------------- model FLOPs utilisation
#: Keyed by (hardware class, generation): see :func:`mfu_class`.
MFU: dict[str, Default] = {
    "gpu-2017": _d(
        0.25,
        0.18,
        0.32,
        "V100-generation GPUs: Megatron-LM 8.3B on 512 V100 sustained 29.5 TFLOP/s "
        "per GPU = 24% of peak (Shoeybi et al. 2019); ZeRO 100B on 400 V100 ~38 "
        "TFLOP/s = 30% (Rajbhandari et al. 2020)",
    ),
    "gpu-2020": _d(
        0.40,
        0.30,
        0.55,
        "A100-generation GPUs: MT-NLG 530B 30.2% MFU (Smith et al. 2022, as tabulated "
        "by Chowdhery et al. 2022, Table 3); Megatron 1.7B-1T 44-52% of peak incl. "
        "recomputation = 33-39% MFU (Narayanan et al. 2021, Table 1); 54.2% MFU for a "
        "530B model on 2,240 A100s with selective recomputation, 42.1% with full "
        "recomputation (Korthikanti et al. 2022, MLSys 2023)",
    ),
    "gpu-2022": _d(
        0.40,
        0.30,
        0.50,
        "H100-generation GPUs: Llama 3 405B 38-43% BF16 MFU on 8K-16K H100 "
        "(Llama Team 2024, The Llama 3 Herd of Models, Table 4)",
    ),
    "amd": _d(
        0.32,
        0.20,
        0.40,
        "AMD Instinct: 38.38%, 36.14% and 31.96% of peak for 22B, 175B and 1T models on "
        "Frontier's MI250X (Dash et al. 2024, Optimizing Distributed Training on Frontier "
        "for LLMs, ISC 2024)",
    ),
    "tpu-2017": _d(
        0.33,
        0.25,
        0.40,
        "TPU v2/v3: Gopher 280B 32.5% MFU on TPU v3 (Rae et al. 2021, as tabulated by Chowdhery et al. 2022, Table 3)",
    ),
    "tpu-2021": _d(0.46, 0.35, 0.55, "TPU v4 and later: PaLM 540B 46.2% MFU (Chowdhery et al. 2022)"),
    "other": _d(
        0.35,
        0.20,
        0.50,
        "other accelerators: no large-scale MFU published in greenlm's sources; the "
        "spread of the GPU and TPU classes above",
    ),
}

#: MFU defaults are steady-state figures measured at these scales (chips); larger runs lose MFU.
MFU_REFERENCE_CHIPS: dict[str, float] = {
    "gpu-2017": 512,
    "gpu-2020": 2048,
    "gpu-2022": 8192,
    "amd": 1024,
    "tpu-2017": 4096,
    "tpu-2021": 6144,
    "other": 1024,
}
MFU_SCALE_LOSS_PER_DOUBLING = _d(
    0.05,
    0.03,
    0.08,
    "MFU falls ~5% per doubling of chips beyond the scale of the reference run: Llama 3 405B "
    "went from 43% on 8,192 to 41% on 16,384 H100 with the same parallelism, 38% with context "
    "parallelism (Llama Team 2024, Table 4); floor 0.6",
)
MOE_MFU_FACTOR = _d(
    0.85,
    0.70,
    1.00,
    "mixture-of-experts runs reach less MFU than dense ones (expert all-to-all, load imbalance, "
    "small expert GEMMs): DeepSeek-V3 pre-trained 37B-active on 14.8T tokens in 2.664M H800-hours "
    "= 35% of BF16 peak (DeepSeek-AI 2024, Table 1), against 38-43% for dense Llama 3 405B on H100",
)
GOODPUT = _d(
    0.90,
    0.80,
    1.00,
    "share of a run's chip-hours that train: MFU figures are steady-state, while whole runs also "
    "hold chips through failures, restarts, checkpoints and evaluation; Llama 3 405B kept >90% "
    "effective training time over 54 days (Llama Team 2024, Sec. 3.3.4)",
)
DEVELOPMENT_SOURCE = (
    "development runs (experiments, ablations, failed runs) as a share of the final run: ~0.5 for "
    "the OLMo 1/2 family (Morrison et al. 2025, ICLR: development ~50% of the final training "
    "runs' impact), ~4.6 for Olmo 3 (82% of all compute in experimentation and failed runs); "
    "the same work also showed power swinging between ~15% and ~85% of the hardware's maximum "
    "draw, which averages out in the mean power used here"
)

#: Below this many active parameters the MFU default is reduced (small matrices).
MFU_SMALL_MODEL_PARAMS = 1e9
MFU_SMALL_MODEL_SOURCE = (
    "reduced by 25% per decade below 1B parameters (floor 50%): small hidden sizes give "
    "matrix multiplies too small to fill the chip; published MFU is flat from 1.7B up "
    "(Narayanan et al. 2021, Table 1). Judgement, not validated (no small-model row has the "
    "inputs)"
)

# ------------------------------------------------------------------------- power model
#: Average accelerator draw as a fraction of its TDP under sustained training load.
POWER_FRACTION_TRAIN: dict[str, Default] = {
    "gpu": _d(
        0.80,
        0.60,
        0.95,
        "GPU average draw while training, as a fraction of TDP: TDP is a board limit, "
        "not average draw (accelerators.csv README); large dense training runs hold GPUs "
        "near but below their limit (Patel et al. 2024, Characterizing Power Management "
        "Opportunities for LLMs in the Cloud, ASPLOS)",
    ),
    "tpu": _d(
        0.70,
        0.55,
        0.90,
        "TPU average draw as a fraction of TDP: TPU v4 mean 170 W vs 192 W max measured "
        "(Jouppi et al. 2023, 0.89); TPU v3 TDP 450 W is a design limit far above "
        "typical draw (Jouppi et al. 2020)",
    ),
    "other": _d(0.75, 0.55, 0.95, "other accelerators: the spread of the GPU and TPU classes"),
}

#: System power per GPU while training, as a share of the vendor server's rated maximum per GPU.
NODE_TRAIN_FRACTION = _d(
    0.76,
    0.65,
    0.83,
    "measured 8-GPU NVIDIA H100 HGX node during training: computationally intensive workloads drew "
    "76% of the 10.2 kW rating, the maximum observed 8.4 kW (82%) (Newkirk et al. 2025, "
    "arXiv:2506.14551; Latif et al. 2024, arXiv:2412.08602); applied to the rated maximum of each "
    "GPU's reference server (DGX datasheets in accelerators.csv): system power incl. CPUs, memory, "
    "NICs, switches and fans; GPUs run near their power limit whenever busy, so the share depends "
    "little on MFU",
)
#: Accelerator-only share of TDP while training (GPUs), for the accelerator scope.
GPU_TRAIN_FRACTION = _d(
    0.70,
    0.55,
    0.90,
    "GPU-only draw while training, as a share of TDP: a 6.1B transformer on 256 A100 for 8 days "
    "measured 13.8 MWh of GPU energy, 281 W per GPU = 0.70 of 400 W (Dodge et al. 2022, FAccT, "
    "Table 2)",
)
TPU_CHIP_RANGE = 0.15  # +-15% around a published fleet-mean chip power
TPU_CHIP_RANGE_SOURCE = "+-15% around the published fleet mean (a run's draw depends on its utilisation)"

#: Serving is mostly memory-bound decoding: chips draw less than while training.
POWER_FRACTION_INFERENCE = _d(
    0.60,
    0.40,
    0.80,
    "accelerator draw while serving, as a fraction of TDP: LLM inference rarely reaches the "
    "power limit, and memory-bound decode draws less than prefill (Patel et al. 2024, ASPLOS)",
)

#: CPU, RAM, NIC, fans and switches per accelerator, as a fraction of the accelerator's TDP.
HOST_FRACTION: dict[str, Default] = {
    "gpu": _d(
        0.25,
        0.10,
        0.40,
        "host share per GPU (CPU, RAM, NICs, fans): NVIDIA DGX A100 datasheet gives 6.5 kW "
        "max system power for 8 x 400 W GPUs (3.3 kW for the rest at maximum), DGX H100 "
        "10.2 kW for 8 x 700 W; hosts run well below maximum during GPU-bound training, "
        "so a quarter to a third of that maximum",
    ),
    "tpu": _d(
        0.10,
        0.05,
        0.20,
        "host share per TPU chip: one host serves a board of 4 chips (Jouppi et al. "
        "2020), so the per-chip host share is small; judgement",
    ),
    "other": _d(0.20, 0.10, 0.40, "other accelerators: between the GPU and TPU host shares"),
}

# ---------------------------------------------------------------------------------- PUE
PUE_DATACENTRE_ENTITY = "Public cloud industry average (IDC estimate)"
PUE_LOW_ENTITY = "Google (fleet)"
PUE_HIGH_ENTITY = "Industry average (Uptime Institute survey)"


@functools.lru_cache(maxsize=1)
def pue_datacentre() -> Default:
    """PUE when none is given and the location is not a cloud region (from pue.csv)."""
    rows = read_csv("pue.csv")

    def newest(entity: str) -> float:
        hits = [r for r in rows if r["entity"] == entity]
        return float(max(hits, key=lambda r: int(r["year"] or 0))["pue"])

    return _d(
        newest(PUE_DATACENTRE_ENTITY),
        newest(PUE_LOW_ENTITY),
        newest(PUE_HIGH_ENTITY),
        f"default data-centre PUE: {PUE_DATACENTRE_ENTITY}; range from {PUE_LOW_ENTITY} "
        f"(newest) to {PUE_HIGH_ENTITY} (newest), data/pue.csv",
    )


# ----------------------------------------------------------------------------- embodied
EMBODIED_DEVICE_KG = _d(
    150.0,
    150.0,
    150.0,
    "manufacturing of one A100 GPU, the per-GPU approximation used for BLOOM (Luccioni, Viguier "
    "& Ligozat 2023, JMLR; accelerators.csv); used for any chip whose table row has no "
    "whole-device figure",
)
EMBODIED_SERVER_KG_PER_CHIP = _d(
    312.5,
    312.5,
    312.5,
    "server share: 2,500 kgCO2e per 8-GPU HPE Apollo 6500 node / 8 (Luccioni et al. 2023)",
)
EMBODIED_TOTAL_LOW_KG_PER_CHIP = 318.0
EMBODIED_TOTAL_LOW_SOURCE = (
    "low bound 318 kgCO2e per GPU incl. host share: 1/8 of an 8xA100 instance (Chien et al. 2023, HotCarbon)"
)
LIFETIME_YEARS = _d(
    6.0,
    5.0,
    6.0,
    "hardware lifetime 6 years (Luccioni et al. 2023; Microsoft and Alphabet depreciate servers "
    "over 6 years since 2022); 5 years as the short end (Amazon shortened some servers to 5 in "
    "2025)",
)
LIFETIME_UTILIZATION = _d(0.85, 0.85, 0.85, "share of the lifetime the hardware is in use: 85% (Luccioni et al. 2023)")

# ------------------------------------------------------------------ inference specifics
IDLE_FRACTION = _d(
    0.15,
    0.08,
    0.30,
    "idle draw of an accelerator that is up but serves nothing, as a share of TDP: data-centre "
    "GPUs idle at roughly 50-100 W against 400-700 W TDPs (A100, H100 as nvidia-smi reports them at "
    "rest); the high end is TPU v3/v4's lowest measured production draw, 123 W of 450 W and 90 W of "
    "192 W (Jouppi et al. 2023, ISCA); judgement, pass --idle-power-w when known",
)
MEMORY_UTILIZATION = _d(
    0.90,
    0.90,
    0.90,
    "weights and KV cache may use 90% of accelerator memory: vLLM's default gpu_memory_utilization "
    "(the rest holds activations and the CUDA context)",
)

# --------------------------------------------------------------------- fine-tuning (LoRA)
LORA_RANK = 8
LORA_RANK_SOURCE = "rank 8: default r of Hugging Face PEFT LoraConfig"
LORA_TARGETS = ("q", "v")
LORA_TARGETS_SOURCE = "W_q and W_v, as in the LoRA paper (Hu et al. 2021, Sec. 7.1)"
DMODEL_PER_LAYER = 128.0
SHAPE_SOURCE = (
    "shape inferred from the parameter count: N = 12 * layers * d_model^2 (Kaplan et al. 2020) "
    "with d_model / layers = 128 (GPT-3 175B, LLaMA 7B/13B; Brown et al. 2020, Touvron et al. "
    "2023)"
)
FFN_MULTIPLIER = 4.0
FFN_SOURCE = "feed-forward width 4 x d_model (Vaswani et al. 2017; Brown et al. 2020)"

# ------------------------------------------------------------------- storage and network
STORAGE_W_PER_TB = _d(
    1.2,
    0.65,
    1.2,
    "1.2 W per TB stored on SSD, 0.65 W per TB on HDD (Cloud Carbon Footprint methodology, "
    "storage coefficients from manufacturer specifications)",
)
STORAGE_REPLICAS = _d(
    3.0,
    2.0,
    3.0,
    "3 copies: object stores keep data in at least three places (e.g. Amazon S3 across three "
    "Availability Zones); 2 for block storage",
)
NETWORK_KWH_PER_GB = _d(
    0.005,
    0.001,
    0.06,
    "data transfer: 0.06 kWh/GB in 2015, halving every 2 years (Aslan et al. 2018, J. Ind. "
    "Ecology) gives ~0.005 kWh/GB by 2022; 0.001 kWh/GB used by Cloud Carbon Footprint as the "
    "low end; the 2015 value as the high end",
)

# ------------------------------------------------------------------- composite score
SCORE_WEIGHTS: dict[str, float] = {"compute": 1 / 3, "energy": 1 / 3, "carbon": 1 / 3}
SCORE_WEIGHTS_SOURCE = "equal weights (no component preferred by default)"
#: Normalisation references: the score adds "how many of these" per component.
SCORE_REFERENCES: dict[str, tuple[float, str, str]] = {
    "compute": (8760.0, "chip_hours", "one accelerator running for a year (8,760 chip-hours)"),
    "energy": (
        3.6,
        "energy_mwh",
        "world electricity use per person per year, ~3.6 MWh (Our World in Data / Ember, 2022)",
    ),
    "carbon": (
        4.7,
        "total_co2e_t",
        "world fossil CO2 emissions per person per year, ~4.7 t (Global Carbon Budget 2023, 2022 data)",
    ),
}

PRECISION_DEFAULT = "bf16"
PRECISION_SOURCE = "bf16/fp16 mixed precision, the usual training and serving precision"
