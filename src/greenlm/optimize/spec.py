"""Parsing technique specifications such as ``int8,prune:0.3,distill:layers=3``.

Grammar: techniques are separated by commas; a technique is ``name`` optionally followed by
``:`` and arguments, each either a bare number (the technique's main argument) or
``key=value``, separated by further colons (``distill:layers=3:epochs=2``). Techniques
joined with ``+`` are applied in order to build one variant (``heads:0.25+int8``).

The names, their arguments and where each may stand in a stacked variant come from the
technique registry (:mod:`greenlm.optimize.techniques`); this module only reads it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from greenlm.optimize import techniques
from greenlm.optimize.errors import TechniqueArgumentError, UnknownTechniqueError

DEFAULT_TECHNIQUES = "int8,int8w,int4w,bf16,fp16,prune:0.3,heads:0.25,ffn:0.25,lowrank:0.5,distill:layers=3"


@dataclass(frozen=True)
class Step:
    """One technique with its arguments, e.g. ``prune`` with ``{"sparsity": 0.3}``."""

    name: str
    args: dict[str, float] = field(default_factory=dict)

    def label(self) -> str:
        main = techniques.get(self.name).main
        parts = [self.name]
        for k, v in self.args.items():
            text = f"{v:g}"
            parts.append(text if k == main else f"{k}={text}")
        return ":".join(parts)


@dataclass(frozen=True)
class TechniqueSpec:
    """A variant to build: one or more steps applied in order."""

    steps: tuple[Step, ...]

    @property
    def name(self) -> str:
        return "+".join(s.label() for s in self.steps)

    @property
    def technique(self) -> str:
        return "+".join(s.name for s in self.steps)

    @property
    def params(self) -> dict[str, float]:
        if len(self.steps) == 1:
            return dict(self.steps[0].args)
        return {f"{s.name}.{k}": v for s in self.steps for k, v in s.args.items()}


def _number(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise TechniqueArgumentError(
            f"{where}: {text!r} is not a number (write e.g. prune:0.3 or lowrank:rank=64)."
        ) from None


def parse_step(text: str) -> Step:
    """Parse one ``name[:arg[:key=value...]]``; validates names, keys and ranges."""
    name, *raw_args = [p.strip() for p in text.strip().split(":")]
    name = name.lower()
    known = techniques.registry()
    if name not in known:
        close = difflib.get_close_matches(name, list(known), n=3)
        raise UnknownTechniqueError(name, sorted(known), close)
    t = known[name]
    args: dict[str, float] = {}
    for raw in raw_args:
        if not raw:
            continue
        if "=" in raw:
            key, _, value = raw.partition("=")
            key = key.strip().lower()
            if key not in t.keys:
                valid = ", ".join(sorted(t.keys)) or "none"
                raise TechniqueArgumentError(f"Technique {name!r} has no argument {key!r}; valid arguments: {valid}.")
            args[key] = _number(value.strip(), f"{name}:{key}")
        else:
            if t.main is None:
                raise TechniqueArgumentError(
                    f"Technique {name!r} takes no arguments (got {raw!r}); write just {name!r}."
                )
            args[t.main] = _number(raw, name)
    return Step(name, t.parse_args(args))


def parse_techniques(text: str) -> list[TechniqueSpec]:
    """Parse a ``--techniques`` string into variant specs (duplicates removed, order kept)."""
    specs: list[TechniqueSpec] = []
    seen: set[str] = set()
    for item in text.split(","):
        if not item.strip():
            continue
        spec = TechniqueSpec(tuple(parse_step(part) for part in item.split("+")))
        techniques.check_order(spec.name, [s.name for s in spec.steps])
        if spec.name not in seen:
            seen.add(spec.name)
            specs.append(spec)
    if not specs:
        raise TechniqueArgumentError(
            f"No technique in {text!r}; give a comma-separated list such as {DEFAULT_TECHNIQUES!r}."
        )
    return specs
