"""Measure what compression and efficiency techniques save in energy and cost in quality.

The assess, optimize, re-assess loop: :func:`optimize` measures a model and variants of it
(one module per technique: :mod:`.quantize`, :mod:`.prune`, :mod:`.lowrank`,
:mod:`.distill`, :mod:`.lora`) with the harness (:mod:`.harness`), and recommends the
lowest-energy variant within a quality budget (:mod:`.pareto`). Names are resolved lazily
so that ``import greenlm.optimize`` does not import torch.
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
