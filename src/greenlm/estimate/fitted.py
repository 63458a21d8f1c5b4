"""Constants fitted on measurements, with their cross-validated errors (generated).

Written by ``scripts/validate_estimator.py`` from
``tests/data/footprints_dev.csv`` and ``tests/data/inference_dev.csv``;
do not edit by hand (tests/estimate/test_validation.py fails when this file is stale).
docs/validation.md gives the leave-one-model-out errors of the fitting procedure; these are
its values on every row.
"""

from __future__ import annotations

#: Serving model constants (:class:`greenlm.estimate.serving_model.Constants`).
SERVING: dict[str, float] = {
    "c_layer_s": 0.000110571,
    "c_tp_s": 7.74077e-06,
    "c_ep_s": 0.000222015,
    "k_mem": 1.0,
    "k_compute": 1.28567,
    "k_moe": 2.741,
    "c_seq_s": 4.48207e-05,
    "p_static": 0.470032,
    "e_byte_j": 7.16316e-11,
    "e_flop_j": 5.72446e-13,
}
SERVING_SOURCE = (
    "fitted on 342 measured vLLM configurations of 15 models (ML.ENERGY v3, H100/B200); "
    "leave-one-model-out median abs. error 15.6% on J/output token"
)
#: Cross-validated predicted/measured J per output token: spread used as the estimate's band.
SERVING_CV: dict[str, float] = {
    "median_abs_pct": 15.5877,
    "within_2x": 0.982456,
    "ratio_p10": 0.642744,
    "ratio_p90": 1.28678,
}
#: Training constants fitted on measured power.
TRAINING: dict[str, float] = {
    "tpu_host_share": 0.281687,
}
TRAINING_SOURCE = (
    "host share fitted on measured TPU system power (Patterson et al. 2021) over published chip "
    "means (Jouppi et al. 2023); cross-validated leave-one-model-out in docs/validation.md"
)
