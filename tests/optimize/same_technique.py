"""A technique defined outside greenlm, for the registry and stability tests.

``same`` is the baseline in disguise: an identical copy of the model, the same weights and
the same computation. Its argument (``same:2``, key ``copy``) only tells copies apart, so
one run can hold several. It must be the first step of a variant, a rule for the tests to
see enforced (``same+bf16`` is fine, ``bf16+same`` is refused).

Registered the way a built-in technique is: importing this module runs the decorator, and
listing the module in ``greenlm.optimize.techniques.TECHNIQUE_MODULES`` is the one line
that makes greenlm import it.
"""

from __future__ import annotations

from typing import Any

from greenlm.optimize.base import Transformed, clone
from greenlm.optimize.techniques import Context, Order, check_whole, technique


def _parse(args: dict[str, float]) -> dict[str, float]:
    args.setdefault("copy", 1)
    check_whole("same", args, "copy", 1, "a whole copy number >= 1, e.g. same:2")
    return args


@technique(
    "same",
    summary="an identical copy of the model (the baseline in disguise)",
    main="copy",
    parse=_parse,
    order=Order(first="it stands for the unmodified model", example="same+bf16"),
)
def same(model: Any, args: dict[str, float], ctx: Context) -> Transformed:
    return Transformed(
        clone(model), f"an identical copy of the model (copy {args['copy']:g})", {"copy_number": args["copy"]}
    )
