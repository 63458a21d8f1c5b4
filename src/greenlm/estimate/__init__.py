"""Predict energy, carbon and cost before running: training, fine-tuning, inference, lifecycle.

Python API (mirrors ``greenlm estimate``)::

    from greenlm import estimate
    r = estimate.train(params=7e9, tokens=2e12, hardware="A100", chips=512, location="FRA")
    r.energy_mwh, r.co2e_t, r.to_dict()["low"]
    estimate.finetune(params=7e9, tokens=5e8, hardware="A100", method="lora", lora_rank=16)
    r = estimate.inference(params=7e9, hardware="L4", queries_per_day=5e4, days=365,
                           input_tokens=400, output_tokens=250, batch_size=8, weights_bits=8)
    r.j_per_output_token, r.to_dict()["accelerator_energy_mwh"]   # ML.ENERGY-comparable
    plan = estimate.load_plan("plan.yaml")
    estimate.lifecycle(plan), estimate.compare(plan, ["FRA", "USA"], ["A100", "H100"])
    estimate.forecast_total(step_energies_j, total_steps=10_000, warmup_steps=20)

Modules, one per model: :mod:`flops` (compute), :mod:`timing` (MFU, chip-hours),
:mod:`power` (training power), :mod:`grid` (intensity, PUE, price), :mod:`embodied`,
:mod:`training`, :mod:`serving` (a deployment) over :mod:`serving_model` (decode-step physics)
and :mod:`weights` (weight formats), :mod:`lifecycle_model` (with :mod:`plan`),
:mod:`comparison`, :mod:`calibration`, :mod:`forecast`, :mod:`uncertainty`; every default and
its source is in :mod:`defaults`, every fitted constant in :mod:`fitted` (written by
``scripts/validate_estimator.py``, which cross-validates it: :mod:`validation`,
:mod:`validation_serving`).
Submodules load on first use, so importing ``greenlm.estimate`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from greenlm.estimate.calibration import Calibration, HardwareCalibration, calibrate
    from greenlm.estimate.comparison import Comparison, compare
    from greenlm.estimate.forecast import Forecast, forecast_total
    from greenlm.estimate.hardware import Hardware, HardwareNotFoundError, find_hardware
    from greenlm.estimate.lifecycle_model import LifecycleEstimate, lifecycle
    from greenlm.estimate.plan import Plan, load_plan, parse_plan
    from greenlm.estimate.result import Estimate, InferenceEstimate, TrainEstimate
    from greenlm.estimate.serving import CapacityError, inference
    from greenlm.estimate.training import finetune, train

_EXPORTS = {
    "Calibration": "calibration",
    "HardwareCalibration": "calibration",
    "calibrate": "calibration",
    "Comparison": "comparison",
    "compare": "comparison",
    "Forecast": "forecast",
    "forecast_total": "forecast",
    "Hardware": "hardware",
    "HardwareNotFoundError": "hardware",
    "find_hardware": "hardware",
    "inference": "serving",
    "CapacityError": "serving",
    "LifecycleEstimate": "lifecycle_model",
    "lifecycle": "lifecycle_model",
    "Plan": "plan",
    "load_plan": "plan",
    "parse_plan": "plan",
    "Estimate": "result",
    "InferenceEstimate": "result",
    "TrainEstimate": "result",
    "finetune": "training",
    "train": "training",
}

__all__ = [
    "Calibration",
    "CapacityError",
    "Comparison",
    "Estimate",
    "Forecast",
    "Hardware",
    "HardwareCalibration",
    "HardwareNotFoundError",
    "InferenceEstimate",
    "LifecycleEstimate",
    "Plan",
    "TrainEstimate",
    "calibrate",
    "compare",
    "find_hardware",
    "finetune",
    "forecast_total",
    "inference",
    "lifecycle",
    "load_plan",
    "parse_plan",
    "train",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'greenlm.estimate' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"greenlm.estimate.{module}"), name)
    globals()[name] = value
    return value
