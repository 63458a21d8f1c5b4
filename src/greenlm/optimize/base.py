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
