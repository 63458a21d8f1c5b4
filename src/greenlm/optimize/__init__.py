"""Measure what compression and efficiency techniques save in energy and cost in quality.

The assess, optimize, re-assess loop: :func:`optimize` measures a model and variants of it
(one module per technique, each registered in :mod:`.techniques`: :mod:`.quantize`,
:mod:`.weight_only`, :mod:`.prune`, :mod:`.lowrank`, :mod:`.distill`, :mod:`.compiled`;
fine-tuning modes in :mod:`.lora`) with the harness (:mod:`.harness`) in interleaved rounds,
and recommends the variant whose saving is significant (:mod:`.stats`) within a quality
budget, or the baseline (:mod:`.pareto`). Names are resolved lazily so that
``import greenlm.optimize`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from greenlm.optimize.lora import FinetuneConfig, FinetuneReport, finetune
    from greenlm.optimize.results import OptimizeReport, Recommendation, VariantResult
    from greenlm.optimize.runner import OptimizeConfig, optimize
    from greenlm.optimize.spec import parse_techniques

_EXPORTS = {
    "OptimizeConfig": "greenlm.optimize.runner",
    "optimize": "greenlm.optimize.runner",
    "OptimizeReport": "greenlm.optimize.results",
    "VariantResult": "greenlm.optimize.results",
    "Recommendation": "greenlm.optimize.results",
    "FinetuneConfig": "greenlm.optimize.lora",
    "FinetuneReport": "greenlm.optimize.lora",
    "finetune": "greenlm.optimize.lora",
    "parse_techniques": "greenlm.optimize.spec",
}

__all__ = [
    "FinetuneConfig",
    "FinetuneReport",
    "OptimizeConfig",
    "OptimizeReport",
    "Recommendation",
    "VariantResult",
    "finetune",
    "optimize",
    "parse_techniques",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'greenlm.optimize' has no attribute {name!r}")
