"""Finding the repeated pieces of a transformers model: layers, attention, feed-forward.

Structured pruning and distillation need to know where the attention heads and the
feed-forward neurons live. Two layouts are recognised, which cover most encoders and
decoders on the Hub: the BERT family (``query``/``key``/``value`` + ``output.dense``,
``intermediate.dense`` + ``output.dense``) and the Llama family (``q_proj``/``k_proj``/
``v_proj``/``o_proj``, ``gate_proj``/``up_proj``/``down_proj``). Anything else makes the
caller raise :class:`~greenlm.optimize.errors.NotApplicableError`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class Attention:
    """One attention block: where its projections are and how heads map onto rows."""

    module: nn.Module  # owns q/k/v (and the head-count attributes)
    q: tuple[nn.Module, str]  # (parent, attribute) of each projection
    k: tuple[nn.Module, str]
    v: tuple[nn.Module, str]
    o: tuple[nn.Module, str]
    head_dim: int
    n_heads: int
    n_kv_heads: int
    family: str  # "bert" or "llama"


@dataclass
class FeedForward:
    """One feed-forward block: input projections (rows = neurons) and the output projection."""

    ins: list[tuple[nn.Module, str]]
    out: tuple[nn.Module, str]
    family: str


def get(ref: tuple[nn.Module, str]) -> nn.Linear:
    mod = getattr(ref[0], ref[1])
    if not isinstance(mod, nn.Linear):
        raise TypeError(f"{ref[1]} is {type(mod).__name__}, not Linear")
    return mod


def _is_linear(m: Any) -> bool:
    return isinstance(m, nn.Linear)


def attention_blocks(model: nn.Module) -> list[Attention]:
    blocks: list[Attention] = []
    m: Any
    for m in model.modules():
        sub: Any = getattr(m, "self", None)
        out = getattr(m, "output", None)
        if (
            sub is not None
            and out is not None
            and all(_is_linear(getattr(sub, a, None)) for a in ("query", "key", "value"))
            and _is_linear(getattr(out, "dense", None))
            and hasattr(sub, "attention_head_size")
        ):
            hd = int(sub.attention_head_size)
            n = sub.query.out_features // hd
            blocks.append(
                Attention(sub, (sub, "query"), (sub, "key"), (sub, "value"), (out, "dense"), hd, n, n, "bert")
            )
        elif all(_is_linear(getattr(m, a, None)) for a in ("q_proj", "k_proj", "v_proj", "o_proj")):
            hd = int(getattr(m, "head_dim", 0) or 0)
            if hd <= 0:
                continue
            n = m.q_proj.out_features // hd
            nkv = m.k_proj.out_features // hd
            blocks.append(Attention(m, (m, "q_proj"), (m, "k_proj"), (m, "v_proj"), (m, "o_proj"), hd, n, nkv, "llama"))
    return blocks


def ffn_blocks(model: nn.Module) -> list[FeedForward]:
    blocks: list[FeedForward] = []
    for m in model.modules():
        inter = getattr(m, "intermediate", None)
        out = getattr(m, "output", None)
        if (
            inter is not None
            and out is not None
            and _is_linear(getattr(inter, "dense", None))
            and _is_linear(getattr(out, "dense", None))
        ):
            blocks.append(FeedForward([(inter, "dense")], (out, "dense"), "bert"))
        elif all(_is_linear(getattr(m, a, None)) for a in ("gate_proj", "up_proj", "down_proj")):
            blocks.append(FeedForward([(m, "gate_proj"), (m, "up_proj")], (m, "down_proj"), "llama"))
    return blocks


def layer_stack(model: nn.Module) -> tuple[nn.Module, str, nn.ModuleList]:
    """The ModuleList of transformer layers: the longest list matching ``num_hidden_layers``."""
    config = getattr(model, "config", None)
    n_layers = getattr(config, "num_hidden_layers", None)
    best: tuple[nn.Module, str, nn.ModuleList] | None = None
    for parent in model.modules():
        for attr, child in parent.named_children():
            if (
                isinstance(child, nn.ModuleList)
                and len(child) > 0
                and (n_layers is None or len(child) == n_layers)
                and (best is None or len(child) > len(best[2]))
            ):
                best = (parent, attr, child)
    if best is None:
        raise LookupError("no stack of transformer layers found")
    return best


def slice_linear(lin: nn.Linear, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> nn.Linear:
    """A new Linear keeping the given output rows and/or input columns of ``lin``."""
    w = lin.weight.data
    b = lin.bias.data if lin.bias is not None else None
    if rows is not None:
        w = w[rows]
        b = b[rows] if b is not None else None
    if cols is not None:
        w = w[:, cols]
    new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device=w.device, dtype=w.dtype)
    new.weight.data.copy_(w)
    if b is not None and new.bias is not None:
        new.bias.data.copy_(b)
    return new


def tied_weight_ids(model: nn.Module) -> set[int]:
    """Ids of weights shared with an input embedding (a tied LM head must not be changed)."""
    ids: set[int] = set()
    get_in = getattr(model, "get_input_embeddings", None)
    emb = get_in() if callable(get_in) else None
    if emb is not None and getattr(emb, "weight", None) is not None:
        ids.add(id(emb.weight))
    return ids


def linear_layers(model: nn.Module) -> list[tuple[str, nn.Module, str, nn.Linear]]:
    """Every ``nn.Linear`` not tied to the embeddings: (qualified name, parent, attr, layer)."""
    tied = tied_weight_ids(model)
    out = []
    for pname, parent in model.named_modules():
        for attr, child in parent.named_children():
            if isinstance(child, nn.Linear) and id(child.weight) not in tied:
                out.append((f"{pname}.{attr}" if pname else attr, parent, attr, child))
    return out


def parameter_count(model: nn.Module) -> int:
    """Number of weights, packed quantized ones included (counted from the state dict).

    Tied weights count once; integer buffers (position ids) and scalars are left out.
    """
    total = 0
    seen: set[int] = set()
    for m in model.modules():  # weight-only quantized layers pack their weights in integer buffers
        count = getattr(m, "weight_count", None)
        if callable(count):
            total += int(count())
            seen.update(id(b) for b in m.buffers(recurse=False))
    for v in model.state_dict(keep_vars=True).values():
        for t in v if isinstance(v, tuple) else (v,):
            if (
                isinstance(t, torch.Tensor)
                and t.dim() > 0
                and (t.is_floating_point() or t.is_quantized)
                and id(t) not in seen
            ):
                seen.add(id(t))
                total += t.numel()
    return total


def size_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: what the weights take on disk."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


def memory_bytes(model: nn.Module) -> int:
    """Bytes of parameters and buffers held in memory (packed int8 weights included)."""
    total = 0
    seen: set[int] = set()
    for m in model.modules():  # weight-only quantized layers pack their weights in integer buffers
        count = getattr(m, "weight_count", None)
        if callable(count):
            total += int(count())
            seen.update(id(b) for b in m.buffers(recurse=False))
    for v in model.state_dict(keep_vars=True).values():
        for t in v if isinstance(v, tuple) else (v,):
            if isinstance(t, torch.Tensor) and id(t) not in seen:
                seen.add(id(t))
                total += t.numel() * t.element_size()
    return total
