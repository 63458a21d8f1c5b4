"""Pruning: unstructured magnitude sparsity, and structured removal of heads / FFN neurons.

Unstructured pruning zeroes the smallest weights of each Linear layer but keeps the dense
matrices: with dense kernels the multiply-adds by zero still run, so it saves no time and
no energy (and, stored densely, no disk). It is here to show exactly that.

Structured pruning really shrinks the matrices: removing an attention head deletes its
rows of the query/key/value projections and its columns of the output projection;
removing an FFN neuron deletes a row of the input projection(s) and a column of the output
projection. Units are ranked by a data-free weight-magnitude score (the norm of what a unit
reads times the norm of what it writes) and the same fraction is removed in every layer.
For grouped-query attention (Llama family) whole key/value groups are removed, so the
number of query heads per key/value head stays the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from greenlm.optimize import _arch
from greenlm.optimize.base import Transformed, clone
from greenlm.optimize.errors import NotApplicableError
from greenlm.optimize.techniques import STRUCTURAL, UNTRAINABLE, Context, check_range, technique


def magnitude(model: Any, sparsity: float) -> Transformed:
    """Zero the ``sparsity`` fraction of smallest-magnitude weights in every Linear layer."""
    import torch

    new = clone(model)
    layers = _arch.linear_layers(new)
    if not layers:
        raise NotApplicableError("the model has no nn.Linear layer to prune")
    zeroed = 0
    total = 0
    with torch.no_grad():
        for _, _, _, lin in layers:
            w = lin.weight
            k = int(sparsity * w.numel())
            total += w.numel()
            if k == 0:
                continue
            threshold = w.abs().flatten().float().kthvalue(k).values.to(w.dtype)
            mask = w.abs() > threshold
            w.mul_(mask)
            zeroed += int((~mask).sum())
    new.eval()
    return Transformed(
        new,
        f"unstructured magnitude pruning: {zeroed / max(total, 1):.0%} of the weights of "
        f"{len(layers)} Linear layers set to zero (matrices stay dense)",
        {"sparsity_achieved": zeroed / max(total, 1), "layers_pruned": len(layers)},
    )


def _n_remove(units: int, fraction: float) -> int:
    return min(units - 1, math.floor(units * fraction + 0.5))


def heads(model: Any, fraction: float) -> Transformed:
    """Remove ``fraction`` of the attention heads (or key/value groups) of every layer."""
    import torch

    new = clone(model)
    blocks = _arch.attention_blocks(new)
    if not blocks:
        raise NotApplicableError(
            "no attention block with separate query/key/value and output projections found "
            "(head pruning knows the BERT and Llama layouts)"
        )
    removed_heads = 0
    total_heads = 0
    for b in blocks:
        q, k, v, o = (_arch.get(r) for r in (b.q, b.k, b.v, b.o))
        group = b.n_heads // b.n_kv_heads  # query heads per key/value head
        n_units = b.n_kv_heads
        drop = _n_remove(n_units, fraction)
        total_heads += b.n_heads
        if drop <= 0:
            continue
        hd = b.head_dim
        with torch.no_grad():
            # score a unit (one kv head and its query heads) by value rows x output columns
            v_norm = v.weight.float().view(n_units, hd, -1).norm(dim=(1, 2))
            o_norm = o.weight.float().view(o.out_features, n_units, group * hd).norm(dim=(0, 2))
            score = v_norm * o_norm
        keep_units = torch.sort(torch.topk(score, n_units - drop).indices).values
        kv_rows = (keep_units[:, None] * hd + torch.arange(hd)).flatten()
        q_rows = ((keep_units[:, None] * group + torch.arange(group))[:, :, None] * hd + torch.arange(hd)).flatten()
        setattr(*b.q, _arch.slice_linear(q, rows=q_rows))
        setattr(*b.k, _arch.slice_linear(k, rows=kv_rows))
        setattr(*b.v, _arch.slice_linear(v, rows=kv_rows))
        setattr(*b.o, _arch.slice_linear(o, cols=q_rows))
        kept_heads = (n_units - drop) * group
        removed_heads += b.n_heads - kept_heads
        if b.family == "bert":
            setattr(b.module, "num_attention_heads", kept_heads)  # noqa: B010
            setattr(b.module, "all_head_size", kept_heads * hd)  # noqa: B010
    if removed_heads == 0:
        raise NotApplicableError(
            f"removing {fraction:g} of the heads rounds to zero heads per layer"
            + (
                " (grouped-query attention: whole key/value groups are removed)"
                if any(b.n_kv_heads != b.n_heads for b in blocks)
                else ""
            )
        )
    new.eval()
    return Transformed(
        new,
        f"structured head pruning: {removed_heads} of {total_heads} attention heads removed "
        f"in {len(blocks)} layers (weight-magnitude ranking, no retraining)",
        {"heads_removed": removed_heads, "heads_total": total_heads},
    )


def ffn(model: Any, fraction: float) -> Transformed:
    """Remove ``fraction`` of the feed-forward neurons of every layer."""
    import torch

    new = clone(model)
    blocks = _arch.ffn_blocks(new)
    if not blocks:
        raise NotApplicableError(
            "no feed-forward block with Linear input/output projections found "
            "(FFN pruning knows the BERT and Llama layouts)"
        )
    removed = 0
    total = 0
    for b in blocks:
        ins = [_arch.get(r) for r in b.ins]
        out = _arch.get(b.out)
        n = out.in_features
        drop = _n_remove(n, fraction)
        total += n
        if drop <= 0:
            continue
        with torch.no_grad():
            read = torch.stack([lin.weight.float().norm(dim=1) for lin in ins]).prod(dim=0)
            score = read * out.weight.float().norm(dim=0)
        keep = torch.sort(torch.topk(score, n - drop).indices).values
        for ref, lin in zip(b.ins, ins, strict=True):
            setattr(*ref, _arch.slice_linear(lin, rows=keep))
        setattr(*b.out, _arch.slice_linear(out, cols=keep))
        removed += drop
    if removed == 0:
        raise NotApplicableError(f"removing {fraction:g} of the FFN neurons rounds to zero")
    new.eval()
    return Transformed(
        new,
        f"structured FFN pruning: {removed} of {total} feed-forward neurons removed in "
        f"{len(blocks)} layers (weight-magnitude ranking, no retraining)",
        {"neurons_removed": removed, "neurons_total": total},
    )


def _parse_sparsity(args: dict[str, float]) -> dict[str, float]:
    args.setdefault("sparsity", 0.5)
    check_range("prune", args, "sparsity", 0.0 <= args["sparsity"] < 1.0, "a sparsity in [0, 1), e.g. prune:0.3")
    return args


def _fraction_parser(name: str) -> Callable[[dict[str, float]], dict[str, float]]:
    def parse(args: dict[str, float]) -> dict[str, float]:
        args.setdefault("fraction", 0.25)
        check_range(
            name,
            args,
            "fraction",
            0.0 < args["fraction"] < 1.0,
            f"a fraction of units to remove in (0, 1), e.g. {name}:0.25",
        )
        return args

    return parse


@technique(
    "prune",
    summary="unstructured magnitude pruning (matrices stay dense)",
    main="sparsity",
    parse=_parse_sparsity,
    tags={UNTRAINABLE: "training would refill the weights it zeroed"},
)
def _prune(model: Any, args: dict[str, float], ctx: Context) -> Transformed:
    return magnitude(model, args["sparsity"])


@technique(
    "heads",
    summary="structured removal of a fraction of attention heads",
    main="fraction",
    parse=_fraction_parser("heads"),
    tags={STRUCTURAL: "removes attention heads"},
)
def _heads(model: Any, args: dict[str, float], ctx: Context) -> Transformed:
    return heads(model, args["fraction"])


@technique(
    "ffn",
    summary="structured removal of a fraction of feed-forward neurons",
    main="fraction",
    parse=_fraction_parser("ffn"),
    tags={STRUCTURAL: "removes feed-forward neurons"},
)
def _ffn(model: Any, args: dict[str, float], ctx: Context) -> Transformed:
    return ffn(model, args["fraction"])
