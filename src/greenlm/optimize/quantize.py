"""Post-training quantization: dynamic int8 on CPU, fp16/bf16 weights, bitsandbytes on GPU.

* ``int8``: ``torch.ao`` dynamic quantization of every ``nn.Linear``. Weights are stored as
  int8 with one scale per output channel; activations are quantized on the fly per batch. Runs
  on CPU only (fbgemm / x86 / qnnpack kernels).
* ``fp16`` / ``bf16``: every floating weight cast to 16 bits. Halves the size; whether it
  saves energy depends on the kernels (bf16 is fast on CPUs with AMX / AVX-512-BF16, fp16
  matmuls are often slower than fp32 on CPU).
* ``bnb8`` / ``bnb4``: LLM.int8() and NF4 through the optional ``bitsandbytes`` package,
  on a CUDA GPU only.
"""

from __future__ import annotations

import warnings
from typing import Any

from greenlm.optimize._arch import linear_layers
from greenlm.optimize.base import Transformed, clone, model_device
from greenlm.optimize.errors import NotApplicableError
from greenlm.optimize.techniques import NOT_TRAINABLE_FLOATS, UNTRAINABLE, Context, technique

_QUANTIZED = {UNTRAINABLE: NOT_TRAINABLE_FLOATS}


def dynamic_int8(model: Any) -> Transformed:
    """Dynamic int8 quantization of all Linear layers (CPU only)."""
    import torch
    from torch import nn

    if model_device(model) != "cpu":
        raise NotApplicableError("int8 (torch.ao dynamic quantization) runs on CPU only; on a GPU use bnb8 or bnb4")
    engines = getattr(torch.backends.quantized, "supported_engines", [])
    if not any(e in engines for e in ("x86", "fbgemm", "qnnpack", "onednn")):
        raise NotApplicableError(f"this torch build has no int8 CPU kernels (quantized engines: {engines})")
    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError as e:
        raise NotApplicableError(
            "this torch has no torch.ao dynamic quantization (removed in newer releases); "
            "install torchao and use its int8 dynamic quantization"
        ) from e
    n_linear = len(linear_layers(model))
    n_tied = sum(isinstance(m, nn.Linear) for m in model.modules()) - n_linear
    if n_linear == 0:
        raise NotApplicableError("the model has no nn.Linear layer to quantize")
    float_model = clone(model)
    if any(p.dtype != torch.float32 for p in float_model.parameters()):
        float_model = float_model.float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        q = quantize_dynamic(float_model, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
    q.eval()
    return Transformed(
        q,
        f"dynamic int8 quantization of {n_linear + n_tied} Linear layers (torch.ao, per-channel "
        "weight scales, activations quantized per batch); embeddings and norms stay fp32"
        + (" (a tied LM head gets its own int8 copy)" if n_tied else ""),
        {"layers_quantized": n_linear + n_tied},
    )


def half(model: Any, dtype_name: str) -> Transformed:
    """Cast every floating weight to ``fp16`` or ``bf16``."""
    import torch

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
    if dtype_name == "bf16" and model_device(model) == "cuda" and not torch.cuda.is_bf16_supported():
        raise NotApplicableError("this GPU has no bf16 support; use fp16")
    new = clone(model).to(dtype)
    new.eval()
    return Transformed(new, f"all floating weights cast to {dtype_name}; compute in {dtype_name}")


def bitsandbytes_quant(model: Any, bits: int) -> Transformed:
    """LLM.int8() (``bits=8``) or NF4 (``bits=4``) Linear layers through bitsandbytes, on CUDA."""
    import torch

    name = f"bnb{bits}"
    if model_device(model) != "cuda" or not torch.cuda.is_available():
        raise NotApplicableError(f"{name} (bitsandbytes) needs the model on a CUDA GPU")
    try:
        import bitsandbytes as bnb
    except ImportError as e:
        raise NotApplicableError(f"{name} needs the optional package bitsandbytes: pip install bitsandbytes") from e
    new = clone(model)
    layers = linear_layers(new)
    for _, parent, attr, lin in layers:
        w = lin.weight.data.to(torch.float16).cpu()
        has_bias = lin.bias is not None
        if bits == 8:
            q = bnb.nn.Linear8bitLt(
                lin.in_features, lin.out_features, bias=has_bias, has_fp16_weights=False, threshold=6.0
            )
            q.weight = bnb.nn.Int8Params(w, requires_grad=False, has_fp16_weights=False)
        else:
            q = bnb.nn.Linear4bit(
                lin.in_features, lin.out_features, bias=has_bias, compute_dtype=torch.float16, quant_type="nf4"
            )
            q.weight = bnb.nn.Params4bit(w, requires_grad=False, quant_type="nf4")
        if has_bias:
            q.bias = torch.nn.Parameter(lin.bias.data.to(torch.float16).cpu(), requires_grad=False)
        setattr(parent, attr, q.cuda())  # moving to CUDA quantizes the weights
    new.half().eval()
    kind = "LLM.int8() (outliers above 6.0 kept in fp16)" if bits == 8 else "NF4 4-bit"
    return Transformed(
        new, f"{kind} weights in {len(layers)} Linear layers via bitsandbytes", {"layers_quantized": len(layers)}
    )


@technique("int8", summary="torch.ao dynamic int8 of every nn.Linear (CPU)", tags=_QUANTIZED)
def _int8(model: Any, args: dict[str, float], ctx: Context) -> Transformed:
    return dynamic_int8(model)


@technique("fp16", summary="all weights and compute in float16", tags=_QUANTIZED)
def _fp16(model: Any, args: dict[str, float], ctx: Context) -> Transformed:
    return half(model, "fp16")


@technique("bf16", summary="all weights and compute in bfloat16", tags=_QUANTIZED)
def _bf16(model: Any, args: dict[str, float], ctx: Context) -> Transformed:
    return half(model, "bf16")


@technique("bnb8", summary="LLM.int8() Linear layers via bitsandbytes (CUDA)", tags=_QUANTIZED)
def _bnb8(model: Any, args: dict[str, float], ctx: Context) -> Transformed:
    return bitsandbytes_quant(model, 8)


@technique("bnb4", summary="NF4 4-bit Linear layers via bitsandbytes (CUDA)", tags=_QUANTIZED)
def _bnb4(model: Any, args: dict[str, float], ctx: Context) -> Transformed:
    return bitsandbytes_quant(model, 4)
