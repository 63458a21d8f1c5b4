"""Parsing technique specifications such as ``int8,prune:0.3,distill:layers=3``.

Grammar: techniques are separated by commas; a technique is ``name`` optionally followed by
``:`` and arguments, each either a bare number (the technique's main argument) or
``key=value``, separated by further colons (``distill:layers=3:epochs=2``). Techniques
joined with ``+`` are applied in order to build one variant (``heads:0.25+int8``).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from greenlm.optimize.errors import TechniqueArgumentError, UnknownTechniqueError

# name -> (main argument key or None, allowed keys)
KNOWN: dict[str, tuple[str | None, frozenset[str]]] = {
    "int8": (None, frozenset()),
    "fp16": (None, frozenset()),
    "bf16": (None, frozenset()),
    "int8w": (None, frozenset()),
    "int4w": ("group", frozenset({"group"})),
    "bnb8": (None, frozenset()),
    "bnb4": (None, frozenset()),
    "prune": ("sparsity", frozenset({"sparsity"})),
    "heads": ("fraction", frozenset({"fraction"})),
    "ffn": ("fraction", frozenset({"fraction"})),
    "lowrank": ("ratio", frozenset({"ratio", "rank", "energy"})),
    "distill": ("layers", frozenset({"layers", "epochs", "temperature", "lr", "batch"})),
    "recover": ("epochs", frozenset({"epochs", "temperature", "lr", "batch"})),
    "compile": (None, frozenset()),
}

#: Steps that shrink the matrices and leave float weights a recovery fine-tune can train.
STRUCTURAL = frozenset({"heads", "ffn", "lowrank"})
#: Steps after which weights are no longer trainable floats (or training would undo them).
_NOT_TRAINABLE_AFTER = frozenset({"int8", "int8w", "int4w", "bnb8", "bnb4", "fp16", "bf16", "prune", "distill"})
_WHY_NOT_BEFORE_RECOVER = {
    "prune": "training would refill the weights it zeroed",
    "distill": "distill already trains its student",
}

DEFAULT_TECHNIQUES = "int8,int8w,int4w,bf16,fp16,prune:0.3,heads:0.25,ffn:0.25,lowrank:0.5,distill:layers=3"


@dataclass(frozen=True)
class Step:
    """One technique with its arguments, e.g. ``prune`` with ``{"sparsity": 0.3}``."""

    name: str
    args: dict[str, float] = field(default_factory=dict)

    def label(self) -> str:
        main = KNOWN[self.name][0]
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
    if name not in KNOWN:
        close = difflib.get_close_matches(name, list(KNOWN), n=3)
        raise UnknownTechniqueError(name, sorted(KNOWN), close)
    main, allowed = KNOWN[name]
    args: dict[str, float] = {}
    for raw in raw_args:
        if not raw:
            continue
        if "=" in raw:
            key, _, value = raw.partition("=")
            key = key.strip().lower()
            if key not in allowed:
                valid = ", ".join(sorted(allowed)) or "none"
                raise TechniqueArgumentError(f"Technique {name!r} has no argument {key!r}; valid arguments: {valid}.")
            args[key] = _number(value.strip(), f"{name}:{key}")
        else:
            if main is None:
                raise TechniqueArgumentError(
                    f"Technique {name!r} takes no arguments (got {raw!r}); write just {name!r}."
                )
            args[main] = _number(raw, name)
    _validate(name, args)
    return Step(name, args)


def _validate(name: str, args: dict[str, float]) -> None:
    def check(key: str, ok: bool, expected: str) -> None:
        if key in args and not ok:
            raise TechniqueArgumentError(f"{name}:{key}={args[key]:g} is out of range; expected {expected}.")

    if name == "prune":
        args.setdefault("sparsity", 0.5)
        check("sparsity", 0.0 <= args["sparsity"] < 1.0, "a sparsity in [0, 1), e.g. prune:0.3")
    elif name == "int4w":
        args.setdefault("group", 32)
        check("group", args["group"] in (32, 64, 128, 256), "a group size of 32, 64, 128 or 256, e.g. int4w:32")
    elif name in ("heads", "ffn"):
        args.setdefault("fraction", 0.25)
        check("fraction", 0.0 < args["fraction"] < 1.0, f"a fraction of units to remove in (0, 1), e.g. {name}:0.25")
    elif name == "lowrank":
        if sum(k in args for k in ("ratio", "rank", "energy")) > 1:
            raise TechniqueArgumentError(
                "lowrank takes one of ratio, rank or energy, not several "
                "(lowrank:0.5, lowrank:rank=64 or lowrank:energy=0.9)."
            )
        if not args:
            args["ratio"] = 0.5
        check("ratio", 0.0 < args.get("ratio", 1.0) <= 1.0, "a fraction of the full rank in (0, 1], e.g. lowrank:0.5")
        check(
            "rank",
            args.get("rank", 1.0) >= 1 and float(args.get("rank", 1)).is_integer(),
            "a whole rank >= 1, e.g. lowrank:rank=64",
        )
        check(
            "energy",
            0.0 < args.get("energy", 1.0) <= 1.0,
            "a retained spectral-energy ratio in (0, 1], e.g. lowrank:energy=0.9",
        )
    elif name in ("distill", "recover"):
        if name == "distill":
            args.setdefault("layers", 3)
            check(
                "layers",
                args["layers"] >= 1 and float(args["layers"]).is_integer(),
                "a whole number of student layers >= 1, e.g. distill:layers=3",
            )
        else:
            args.setdefault("epochs", 3)
        check(
            "epochs",
            args.get("epochs", 1) >= 1 and float(args.get("epochs", 1)).is_integer(),
            "a whole number of epochs >= 1",
        )
        check("temperature", args.get("temperature", 1.0) > 0, "a temperature > 0")
        check("lr", args.get("lr", 1e-4) > 0, "a learning rate > 0")
        check(
            "batch", args.get("batch", 1) >= 1 and float(args.get("batch", 1)).is_integer(), "a whole batch size >= 1"
        )


def _check_order(spec: TechniqueSpec) -> None:
    """``compile`` comes last. ``recover`` fine-tunes what a structural step shrank, so it needs
    one before it and no step in between that makes the weights untrainable or that training
    would undo.
    """
    names = [s.name for s in spec.steps]
    if "compile" in names[:-1]:
        raise TechniqueArgumentError(
            f"{spec.name}: compile must be the last step of a variant (a later step would change the "
            f"model under the compiled graph), e.g. heads:0.25+bf16+compile."
        )
    for i, step in enumerate(spec.steps):
        if step.name != "recover":
            continue
        before = [s.name for s in spec.steps[:i]]
        blocking = [n for n in before if n in _NOT_TRAINABLE_AFTER]
        if blocking:
            why = _WHY_NOT_BEFORE_RECOVER.get(blocking[0], "its weights are no longer trainable floats")
            raise TechniqueArgumentError(
                f"{spec.name}: recover cannot follow {blocking[0]} ({why}); put recover right after "
                f"a structural step and quantize afterwards, e.g. heads:0.25+recover+bf16."
            )
        if not any(n in STRUCTURAL for n in before):
            raise TechniqueArgumentError(
                f"{spec.name}: recover fine-tunes a model that a structural step shrank; put one of "
                f"{', '.join(sorted(STRUCTURAL))} before it, e.g. heads:0.25+recover or ffn:0.25+recover:epochs=3."
            )


def parse_techniques(text: str) -> list[TechniqueSpec]:
    """Parse a ``--techniques`` string into variant specs (duplicates removed, order kept)."""
    specs: list[TechniqueSpec] = []
    seen: set[str] = set()
    for item in text.split(","):
        if not item.strip():
            continue
        spec = TechniqueSpec(tuple(parse_step(part) for part in item.split("+")))
        _check_order(spec)
        if spec.name not in seen:
            seen.add(spec.name)
            specs.append(spec)
    if not specs:
        raise TechniqueArgumentError(
            f"No technique in {text!r}; give a comma-separated list such as {DEFAULT_TECHNIQUES!r}."
        )
    return specs
