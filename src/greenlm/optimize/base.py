"""What every technique returns: the new model and a sentence saying what was done."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Transformed:
    """A transformed model, a description for the report, and facts about the change.

    ``facts`` holds numbers the transform knows and the harness cannot measure (layers
    replaced, heads removed, the distillation's own energy ...), each named with its unit.
    """

    model: Any
    description: str
    facts: dict[str, Any] = field(default_factory=dict)


def model_device(model: Any) -> str:
    """``"cuda"`` or ``"cpu"``: the device of the model's first parameter (cpu if none)."""
    for p in model.parameters():
        return p.device.type
    return "cpu"


def clone(model: Any) -> Any:
    """A deep copy, so a transform never changes the caller's model."""
    return copy.deepcopy(model)


def one_off_energy_j(facts: dict[str, Any]) -> float | None:
    """The one-off energy spent building a variant (training, compiling), if any: the sum of
    the facts the registered techniques declare as one-off energy.
    """
    from greenlm.optimize.techniques import one_off_energy_j as total

    return total(facts)


def payback_inferences(one_off_j: float, baseline_j_per_1k: float, variant_j_per_1k: float) -> float | None:
    """Inferences after which a variant's savings equal the ``one_off_j`` it cost to build
    (training, compiling); None: never.
    """
    saving_per_inference_j = (baseline_j_per_1k - variant_j_per_1k) / 1000.0
    if saving_per_inference_j <= 0:
        return None
    return one_off_j / saving_per_inference_j
