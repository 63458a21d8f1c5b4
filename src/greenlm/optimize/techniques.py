"""The technique registry: every ``--techniques`` name, its arguments, placement and effect.

A technique registers itself with the :func:`technique` decorator on its apply function,
in its own module, which is listed once in :data:`TECHNIQUE_MODULES`. The registration
says everything the rest of optimize needs to know about it:

* its name and one-line summary;
* its arguments: the bare-number one (``prune:0.3`` sets ``sparsity``), the keywords it
  accepts, and a ``parse`` function that fills defaults and refuses values out of range
  with a :class:`~greenlm.optimize.errors.TechniqueArgumentError` saying what would be right;
* where it may stand in a stacked variant (:class:`Order`: first, last, after a step of
  some kind, never after a step of another kind), and the kinds it carries itself
  (``tags``) for the rules of the others;
* the one-off energy facts it reports (training, compiling), which the report pays back
  from the variant's saving per inference;
* ``apply(model, args, ctx)``: a new model as a :class:`~greenlm.optimize.base.Transformed`
  (never the caller's model changed), or :class:`~greenlm.optimize.errors.NotApplicableError`
  with the reason to skip the variant.

The spec parser, the runner, the report and the CLI read the registry and nothing else, so a
new technique is one module plus one line in :data:`TECHNIQUE_MODULES` (or, from outside
greenlm, an import of a module that uses :func:`technique`). docs/optimize.md has an example.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from greenlm.optimize.base import Transformed
from greenlm.optimize.errors import TechniqueArgumentError

logger = logging.getLogger(__name__)

#: Modules whose ``@technique`` functions make up the built-in techniques, in listing order.
TECHNIQUE_MODULES: list[str] = [
    "greenlm.optimize.quantize",
    "greenlm.optimize.weight_only",
    "greenlm.optimize.prune",
    "greenlm.optimize.lowrank",
    "greenlm.optimize.distill",
    "greenlm.optimize.compiled",
]

#: Tags the built-in ordering rules use. A technique carries a tag with the reason it
#: applies to it (``{"untrainable": "training would refill the weights it zeroed"}``).
STRUCTURAL = "structural"  #: shrinks matrices and leaves float weights a fine-tune can train
UNTRAINABLE = "untrainable"  #: after it, weights are no longer trainable floats (or training would undo it)
NOT_TRAINABLE_FLOATS = "its weights are no longer trainable floats"


@dataclass(frozen=True)
class Context:
    """What a technique may use besides the model it transforms."""

    original: Any  #: the unmodified model: distillation teacher and fidelity reference
    task: Any  #: the :class:`~greenlm.optimize.tasks.Task` (data, loop, losses)
    measure: Callable[[Callable[[], Any]], Any]  #: measures one-off work (training, compiling)
    seed: int = 0
    on_step: Callable[[], None] | None = None  #: called after each training step, if any


ApplyFn = Callable[[Any, dict[str, float], Context], Transformed]
ParseFn = Callable[[dict[str, float]], dict[str, float]]


@dataclass(frozen=True)
class Order:
    """Where a technique may stand among the steps of one variant (``a+b+c``).

    ``first`` / ``last``: it must be the first / last step, for the reason given.
    ``after``: one earlier step must carry this tag (``after_why`` says what for).
    ``not_after``: no earlier step may carry these tags (the earlier one says why).
    ``example`` is a variant that places it right, ``fix`` how to get there.
    """

    first: str | None = None
    last: str | None = None
    after: str | None = None
    after_why: str = ""
    after_example: str = ""
    not_after: frozenset[str] = frozenset()
    fix: str = ""
    example: str = ""


@dataclass(frozen=True)
class Technique:
    """One registered technique (see the module docstring)."""

    name: str
    apply: ApplyFn
    summary: str = ""
    main: str | None = None
    keys: frozenset[str] = frozenset()
    parse: ParseFn | None = None
    order: Order = field(default_factory=Order)
    tags: Mapping[str, str] = field(default_factory=dict)
    one_off_energy: Mapping[str, str] = field(default_factory=dict)
    module: str = ""

    def parse_args(self, args: dict[str, float]) -> dict[str, float]:
        """Defaults filled in, ranges checked; raises TechniqueArgumentError."""
        return self.parse(dict(args)) if self.parse is not None else dict(args)


_REGISTRY: dict[str, Technique] = {}
_IMPORTED: dict[str, ModuleType] = {}
_LOCK = threading.RLock()


def register(t: Technique) -> Technique:
    """Add ``t`` to the registry (a technique of the same name is replaced, with a log line)."""
    if not t.name or not t.name.replace("_", "").replace("-", "").isalnum() or t.name != t.name.lower():
        raise ValueError(f"a technique name is lower-case letters, digits, '-' or '_', got {t.name!r}")
    if t.main is not None and t.main not in t.keys:
        raise ValueError(f"technique {t.name!r}: its main argument {t.main!r} is not among its keys")
    with _LOCK:
        old = _REGISTRY.get(t.name)
        if old is not None and old.module != t.module:
            logger.info("technique %s from %s replaces the one from %s", t.name, t.module, old.module)
        _REGISTRY[t.name] = t
    return t


def unregister(name: str) -> None:
    """Remove a technique (tests that register their own clean up with this)."""
    with _LOCK:
        _REGISTRY.pop(name, None)


def technique(
    name: str,
    *,
    summary: str = "",
    main: str | None = None,
    keys: Iterable[str] = (),
    parse: ParseFn | None = None,
    order: Order | None = None,
    tags: Mapping[str, str] | None = None,
    one_off_energy: Mapping[str, str] | None = None,
) -> Callable[[ApplyFn], ApplyFn]:
    """Register the decorated ``apply(model, args, ctx) -> Transformed`` as technique ``name``."""
    key_set = frozenset(keys) | ({main} if main else set())

    def deco(fn: ApplyFn) -> ApplyFn:
        register(
            Technique(
                name=name,
                apply=fn,
                summary=summary,
                main=main,
                keys=key_set,
                parse=parse,
                order=order or Order(),
                tags=dict(tags or {}),
                one_off_energy=dict(one_off_energy or {}),
                module=getattr(fn, "__module__", ""),
            )
        )
        return fn

    return deco


def registry() -> dict[str, Technique]:
    """Every registered technique by name (the modules of :data:`TECHNIQUE_MODULES` are
    imported on first use, and any added to it later on the next call).
    """
    with _LOCK:
        for module in TECHNIQUE_MODULES:
            if _IMPORTED.get(module) is None or sys.modules.get(module) is not _IMPORTED[module]:
                _IMPORTED[module] = importlib.import_module(module)
        return dict(_REGISTRY)


def get(name: str) -> Technique:
    """The technique called ``name``; KeyError when none is registered."""
    return registry()[name]


def names() -> list[str]:
    """Registered technique names, sorted."""
    return sorted(registry())


def tagged(tag: str) -> list[str]:
    """Names of the techniques that carry ``tag``, sorted."""
    return sorted(n for n, t in registry().items() if tag in t.tags)


def one_off_energy_facts() -> dict[str, str]:
    """Every one-off energy fact a technique reports, with what it was spent on."""
    out: dict[str, str] = {}
    for t in registry().values():
        out.update(t.one_off_energy)
    return out


def one_off_energy_j(facts: Mapping[str, Any]) -> float | None:
    """The one-off energy spent building a variant (training, compiling), if any."""
    parts = [float(facts[k]) for k in one_off_energy_facts() if facts.get(k) is not None]
    return sum(parts) if parts else None


def check_range(name: str, args: Mapping[str, float], key: str, ok: bool, expected: str) -> None:
    """Refuse ``args[key]`` (when given) unless ``ok``, saying what was ``expected``."""
    if key in args and not ok:
        raise TechniqueArgumentError(f"{name}:{key}={args[key]:g} is out of range; expected {expected}.")


def check_whole(name: str, args: Mapping[str, float], key: str, minimum: float, expected: str) -> None:
    """Refuse ``args[key]`` (when given) unless it is a whole number >= ``minimum``."""
    value = args.get(key, minimum)
    check_range(name, args, key, value >= minimum and float(value).is_integer(), expected)


def check_order(spec_name: str, steps: list[str]) -> None:
    """Refuse a variant whose steps break a technique's :class:`Order`."""
    reg = registry()
    for i, name in enumerate(steps):
        o = reg[name].order
        where = f"{spec_name}: {name} must be the"
        if o.first and i > 0:
            raise TechniqueArgumentError(f"{where} first step of a variant ({o.first}), e.g. {o.example}.")
        if o.last and i < len(steps) - 1:
            raise TechniqueArgumentError(f"{where} last step of a variant ({o.last}), e.g. {o.example}.")
        before = [reg[n] for n in steps[:i]]
        for b in before:
            blocking = sorted(tag for tag in o.not_after if tag in b.tags)
            if blocking:
                raise TechniqueArgumentError(
                    f"{spec_name}: {name} cannot follow {b.name} ({b.tags[blocking[0]]}); {o.fix}, e.g. {o.example}."
                )
        if o.after and not any(o.after in b.tags for b in before):
            raise TechniqueArgumentError(
                f"{spec_name}: {name} {o.after_why}; put one of {', '.join(tagged(o.after))} before it, "
                f"e.g. {o.after_example}."
            )
