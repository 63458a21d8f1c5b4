"""Weight-only quantization on CPU: int8 per output channel, 4-bit per group of inputs.

Only the weights are quantized; activations stay in floating point (bf16 into the kernel,
the layer's own dtype out). That avoids what hurts dynamic int8 on LLMs: quantizing
activations whose few outlier channels set the scale for all the others. Both kernels ship
in torch itself (``aten._weight_int8pack_mm``, ``aten._weight_int4pack_mm_for_cpu``), so no
extra package is needed.

* ``int8w``: ``w ≈ q · s`` with ``q`` int8 in [-127, 127] and one scale ``s`` per output
  channel (absmax / 127).
* ``int4w[:group=G]``: ``w ≈ (q - 8) · s + z`` with ``q`` in [0, 15] and a scale ``s`` and
  offset ``z`` per group of ``G`` consecutive input weights of an output channel (asymmetric
  min/max over the group). The model's output layer (the LM head, often tied to the input
  embeddings) is quantized to int8 instead: on SmolLM2-135M an all-4-bit model loses 5.8 %
  perplexity, with the LM head at int8 0.2 % (docs/optimize.md). Layers whose shapes the
  4-bit kernel cannot take also fall back to int8, and the count is reported.

At batch 1 (token-by-token generation) a Linear layer is a matrix-vector product bound by
memory bandwidth, so fewer bytes per weight is less time and energy per token.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from greenlm.optimize.base import Transformed, clone, model_device
from greenlm.optimize.errors import NotApplicableError
from greenlm.optimize.techniques import NOT_TRAINABLE_FLOATS, UNTRAINABLE, Context, check_range, technique

#: Group sizes the 4-bit CPU kernel takes.
INT4_GROUPS = (32, 64, 128, 256)
_INNER_K_TILES = 8


class _WeightOnlyLinear(nn.Module):
    """What both weight-only layers share: shapes, bias, and float activations in and out."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)

    def weight_count(self) -> int:
        """Weights the layer stands for (its buffers pack them into fewer elements)."""
        return self.in_features * self.out_features

    def _matmul(self, x2d: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        y = self._matmul(x.reshape(-1, self.in_features).to(torch.bfloat16))
        y = y.to(x.dtype).reshape(*lead, self.out_features)
        return y if self.bias is None else y + self.bias


class Int8WeightOnlyLinear(_WeightOnlyLinear):
    """A Linear layer with int8 weights (one scale per output channel) and float activations."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__(linear)
        with torch.no_grad():
            w = linear.weight.detach().float()
            scale = (w.abs().amax(dim=1) / 127.0).clamp(min=torch.finfo(torch.float32).tiny)
            q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
        self.register_buffer("weight_int8", q.contiguous())
        self.register_buffer("scale", scale.to(torch.bfloat16))

    def _matmul(self, x2d: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int8pack_mm(x2d, self.weight_int8, self.scale)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bits=8, per-channel"


class Int4WeightOnlyLinear(_WeightOnlyLinear):
    """A Linear layer with 4-bit weights in groups of ``group`` inputs and float activations."""

    def __init__(self, linear: nn.Linear, group: int) -> None:
        n, k = linear.out_features, linear.in_features
        if k % group:
            raise ValueError(f"in_features {k} is not a multiple of the group size {group}")
        super().__init__(linear)
        self.group = group
        with torch.no_grad():
            w = linear.weight.detach().float().reshape(n, k // group, group)
            lo, hi = w.amin(dim=2, keepdim=True), w.amax(dim=2, keepdim=True)
            scale = ((hi - lo) / 15.0).clamp(min=1e-6)
            zero = lo + 8.0 * scale  # the kernel computes (q - 8) * scale + zero
            q = torch.round((w - lo) / scale).clamp(0, 15).to(torch.int32).reshape(n, k)
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.contiguous(), _INNER_K_TILES)
            scale_zero = torch.cat([scale, zero], dim=2).transpose(0, 1).contiguous()  # (k/group, n, 2)
        self.register_buffer("weight_int4", packed)
        self.register_buffer("scale_zero", scale_zero.to(torch.bfloat16))

    def _matmul(self, x2d: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int4pack_mm_for_cpu(x2d, self.weight_int4, self.group, self.scale_zero)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bits=4, group={self.group}"


def _all_linear(model: nn.Module) -> list[tuple[nn.Module, str, nn.Linear]]:
    return [
        (parent, attr, child)
        for _, parent in model.named_modules()
        for attr, child in parent.named_children()
        if isinstance(child, nn.Linear)
    ]


def _check(model: Any, name: str, op: str) -> None:
    if model_device(model) != "cpu":
        raise NotApplicableError(f"{name} uses torch's CPU weight-only kernels; on a GPU use bnb8 or bnb4")
    if not hasattr(torch.ops.aten, op):
        raise NotApplicableError(
            f"{name} needs torch.ops.aten.{op}, which this torch build lacks (torch >= 2.6 has it)"
        )
    if not _all_linear(model):
        raise NotApplicableError(f"the model has no nn.Linear layer for {name} to quantize")


def _tied_note(model: nn.Module) -> str:
    get_in = getattr(model, "get_input_embeddings", None)
    emb = get_in() if callable(get_in) else None
    tied = emb is not None and any(lin.weight is getattr(emb, "weight", None) for _, _, lin in _all_linear(model))
    return " (the LM head tied to the input embeddings gets its own quantized copy)" if tied else ""


def int8_weight_only(model: Any) -> Transformed:
    """``int8w``: every Linear layer to int8 weights, one scale per output channel."""
    _check(model, "int8w", "_weight_int8pack_mm")
    new = clone(model).float()
    layers = _all_linear(new)
    for parent, attr, lin in layers:
        setattr(parent, attr, Int8WeightOnlyLinear(lin))
    new.eval()
    note = _tied_note(model)
    return Transformed(
        new,
        f"weight-only int8 in {len(layers)} Linear layers (one scale per output channel; activations "
        f"stay float, bf16 into torch's int8-weight kernel){note}; embeddings and norms stay fp32",
        {"layers_int8": len(layers)},
    )


def int4_weight_only(model: Any, group: int = 32) -> Transformed:
    """``int4w``: Linear layers to 4-bit weights in groups; the output layer to int8."""
    if group not in INT4_GROUPS:
        raise NotApplicableError(f"int4w group must be one of {INT4_GROUPS}, got {group}")
    _check(model, "int4w", "_weight_int4pack_mm_for_cpu")
    if not hasattr(torch.ops.aten, "_weight_int8pack_mm"):
        raise NotApplicableError("int4w keeps the output layer at int8 and needs torch.ops.aten._weight_int8pack_mm")
    new = clone(model).float()
    get_out = getattr(new, "get_output_embeddings", None)
    out_layer = get_out() if callable(get_out) else None
    n4, n8_out, n8_shape = 0, 0, 0
    for parent, attr, lin in _all_linear(new):
        if lin is out_layer:
            setattr(parent, attr, Int8WeightOnlyLinear(lin))
            n8_out += 1
            continue
        try:
            setattr(parent, attr, Int4WeightOnlyLinear(lin, group))
            n4 += 1
        except (ValueError, RuntimeError):  # a shape the 4-bit kernel does not take
            setattr(parent, attr, Int8WeightOnlyLinear(lin))
            n8_shape += 1
    new.eval()
    parts = [f"weight-only 4-bit in {n4} Linear layers (groups of {group} inputs, scale and offset per group)"]
    if n8_out:
        parts.append("the output layer (LM head) at int8 per channel: it is the most sensitive")
    if n8_shape:
        parts.append(f"{n8_shape} layers at int8 because their shapes do not fit the 4-bit kernel")
    if n4 == 0:
        raise NotApplicableError(f"no Linear layer of this model fits the 4-bit kernel with groups of {group}")
    return Transformed(
        new,
        "; ".join(parts) + "; activations stay float; embeddings and norms stay fp32",
        {"layers_int4": n4, "layers_int8": n8_out + n8_shape, "int4_group": group},
    )


def _parse_int4(args: dict[str, float]) -> dict[str, float]:
    args.setdefault("group", 32)
    check_range(
        "int4w", args, "group", args["group"] in INT4_GROUPS, "a group size of 32, 64, 128 or 256, e.g. int4w:32"
    )
    return args


@technique(
    "int8w",
    summary="weight-only int8 (per output channel), float activations (CPU)",
    tags={UNTRAINABLE: NOT_TRAINABLE_FLOATS},
)
def _int8w(model: Any, args: dict[str, float], ctx: Context) -> Transformed:
    return int8_weight_only(model)


@technique(
    "int4w",
    summary="weight-only 4-bit in groups of inputs, LM head at int8 (CPU)",
    main="group",
    parse=_parse_int4,
    tags={UNTRAINABLE: NOT_TRAINABLE_FLOATS},
)
def _int4w(model: Any, args: dict[str, float], ctx: Context) -> Transformed:
    return int4_weight_only(model, int(args["group"]))
