"""Low-rank factorization: each Linear weight W = U·S·Vᵀ truncated to rank r.

The layer becomes two smaller ones, ``x -> (√S·Vᵀ)_r x`` then ``-> (U·√S)_r · + b``. That
costs ``r·(in + out)`` weights instead of ``in·out``, so it pays only when
``r < in·out / (in + out)``; layers where it would not pay are left dense and counted. The
rank is chosen per layer as a fraction of the full rank (``lowrank:0.5``), a fixed rank
(``lowrank:rank=64``) or the smallest rank keeping a share of the spectral energy ΣS²
(``lowrank:energy=0.9``).
"""

from __future__ import annotations

from typing import Any

from greenlm.optimize._arch import linear_layers
from greenlm.optimize.base import Transformed, clone
from greenlm.optimize.errors import NotApplicableError, TechniqueArgumentError
from greenlm.optimize.techniques import STRUCTURAL, Context, check_range, check_whole, technique


def choose_rank(singular_values: Any, full_rank: int, args: dict[str, float]) -> int:
    """The rank for one layer from ``ratio``, ``rank`` or ``energy``."""
    if "rank" in args:
        return max(1, min(full_rank, int(args["rank"])))
    if "energy" in args:
        s2 = singular_values.double() ** 2
        share = s2.cumsum(0) / s2.sum()
        return min(full_rank, int((share < args["energy"] - 1e-12).sum()) + 1)
    return max(1, min(full_rank, round(args.get("ratio", 0.5) * full_rank)))


def factorize(model: Any, args: dict[str, float]) -> Transformed:
    """Replace every Linear layer where it saves weights by its truncated-SVD pair."""
    import torch
    from torch import nn

    new = clone(model)
    layers = linear_layers(new)
    if not layers:
        raise NotApplicableError("the model has no nn.Linear layer to factorize")
    replaced = 0
    weights_before = 0
    weights_after = 0
    kept_energy: list[float] = []
    for _, parent, attr, lin in layers:
        w = lin.weight.data
        out_f, in_f = w.shape
        full = min(out_f, in_f)
        u, s, vh = torch.linalg.svd(w.float(), full_matrices=False)
        r = choose_rank(s, full, args)
        if r * (in_f + out_f) >= in_f * out_f:
            continue
        root = s[:r].sqrt()
        first = nn.Linear(in_f, r, bias=False, device=w.device, dtype=w.dtype)
        second = nn.Linear(r, out_f, bias=lin.bias is not None, device=w.device, dtype=w.dtype)
        first.weight.data.copy_((root[:, None] * vh[:r]).to(w.dtype))
        second.weight.data.copy_((u[:, :r] * root[None, :]).to(w.dtype))
        if lin.bias is not None and second.bias is not None:
            second.bias.data.copy_(lin.bias.data)
        setattr(parent, attr, nn.Sequential(first, second))
        replaced += 1
        weights_before += in_f * out_f
        weights_after += r * (in_f + out_f)
        kept_energy.append(float((s[:r] ** 2).sum() / (s**2).sum()))
    if replaced == 0:
        raise NotApplicableError(
            f"at {_describe(args)} no Linear layer gets smaller: a rank-r factorization of an "
            "in x out matrix pays only when r < in*out/(in+out); use a smaller ratio or rank"
        )
    new.eval()
    mean_energy = sum(kept_energy) / len(kept_energy)
    return Transformed(
        new,
        f"truncated SVD at {_describe(args)}: {replaced} of {len(layers)} Linear layers "
        f"factorized, {weights_before - weights_after:,} weights removed, mean retained "
        f"spectral energy {mean_energy:.3f}",
        {
            "layers_factorized": replaced,
            "layers_total": len(layers),
            "weights_removed": weights_before - weights_after,
            "retained_energy_mean": mean_energy,
        },
    )


def _describe(args: dict[str, float]) -> str:
    if "rank" in args:
        return f"rank {int(args['rank'])}"
    if "energy" in args:
        return f"retained energy {args['energy']:g}"
    return f"rank ratio {args.get('ratio', 0.5):g}"


def _parse(args: dict[str, float]) -> dict[str, float]:
    if sum(k in args for k in ("ratio", "rank", "energy")) > 1:
        raise TechniqueArgumentError(
            "lowrank takes one of ratio, rank or energy, not several "
            "(lowrank:0.5, lowrank:rank=64 or lowrank:energy=0.9)."
        )
    if not args:
        args["ratio"] = 0.5
    check_range(
        "lowrank",
        args,
        "ratio",
        0.0 < args.get("ratio", 1.0) <= 1.0,
        "a fraction of the full rank in (0, 1], e.g. lowrank:0.5",
    )
    check_whole("lowrank", args, "rank", 1, "a whole rank >= 1, e.g. lowrank:rank=64")
    check_range(
        "lowrank",
        args,
        "energy",
        0.0 < args.get("energy", 1.0) <= 1.0,
        "a retained spectral-energy ratio in (0, 1], e.g. lowrank:energy=0.9",
    )
    return args


@technique(
    "lowrank",
    summary="truncated SVD of each Linear into two smaller ones",
    main="ratio",
    keys=("ratio", "rank", "energy"),
    parse=_parse,
    tags={STRUCTURAL: "factorizes the Linear layers"},
)
def _lowrank(model: Any, args: dict[str, float], ctx: Context) -> Transformed:
    return factorize(model, args)
