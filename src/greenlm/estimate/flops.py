"""Compute model: FLOPs of training, fine-tuning and inference for dense and MoE transformers.

* Training: ``6 * N * D`` (Kaplan et al. 2020; Hoffmann et al. 2022), with ``N`` the *active*
  parameters per token (for mixture-of-experts, the parameters a token passes through) and
  ``D`` the training tokens; plus the attention term ``12 * layers * d_model * seq_len`` per
  token when the shape is known (Chowdhery et al. 2022, Appendix B).
* Fine-tuning: full = training. LoRA/PEFT: frozen weights still cost the forward pass
  (``2N``) and the activation-gradient half of the backward pass (``2N``); only the trainable
  adapter parameters ``N_t`` also cost weight gradients, and the adapters themselves add
  ``6 * N_t``: ``(4N + 6 N_t) * D``.
* Inference: prefill ``2N`` per input token, decode ``2N`` per output token (compute); the
  time model (:mod:`greenlm.estimate.timing`) bounds decoding below by memory bandwidth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from greenlm._validate import finite
from greenlm.errors import ConfigError
from greenlm.estimate import defaults

#: LoRA target-module names accepted (``q_proj`` etc. are normalised to these).
ATTENTION_MODULES = ("q", "k", "v", "o")
MLP_MODULES = ("gate", "up", "down")
_ALIASES = {
    "query": "q",
    "key": "k",
    "value": "v",
    "out": "o",
    "dense": "o",
    "fc1": "up",
    "fc2": "down",
    "w1": "gate",
    "w3": "up",
    "w2": "down",
}


def positive(name: str, value: object, hint: str = "") -> float:
    """``value`` as a finite float > 0, or a ConfigError naming ``name``."""
    return finite(name, value, minimum=0.0, strict=True, hint=hint)


def train_flops(
    active_params: float,
    tokens: float,
    *,
    layers: int | None = None,
    d_model: int | None = None,
    seq_len: int | None = None,
) -> float:
    """Training FLOPs: ``6 N D`` plus the attention term when the shape is given."""
    n = positive("active parameters", active_params, " Give the parameter count, e.g. 7e9.")
    d = positive("tokens", tokens, " Give the number of training tokens, e.g. 2e12.")
    return (6.0 * n + attention_flops_per_token(layers, d_model, seq_len, passes=3)) * d


def attention_flops_per_token(layers: int | None, d_model: int | None, seq_len: int | None, *, passes: int) -> float:
    """Attention score/value FLOPs per token: ``4 * layers * d_model * seq_len`` per forward.

    ``passes`` is 1 for a forward pass, 3 for training (forward + backward). Zero when any of
    the three shape figures is missing.
    """
    if layers is None or d_model is None or seq_len is None:
        return 0.0
    lay = positive("layers", layers)
    dm = positive("hidden size", d_model)
    sl = positive("sequence length", seq_len)
    return 4.0 * lay * dm * sl * passes


@dataclass(frozen=True)
class Shape:
    """Transformer shape used to count LoRA adapter parameters."""

    layers: int
    d_model: int
    ffn: int
    inferred: bool

    @classmethod
    def resolve(cls, params: float, layers: int | None, d_model: int | None, ffn: int | None = None) -> Shape:
        """Return the given shape, or one inferred from the parameter count (see defaults)."""
        inferred = False
        if d_model is None and layers is None:
            d = (defaults.DMODEL_PER_LAYER * params / 12.0) ** (1.0 / 3.0)
            d_model = round(d)
            layers = max(1, round(d / defaults.DMODEL_PER_LAYER))
            inferred = True
        elif d_model is None:
            assert layers is not None
            d_model = round(math.sqrt(params / (12.0 * positive("layers", layers))))
            inferred = True
        elif layers is None:
            layers = max(1, round(params / (12.0 * positive("hidden size", d_model) ** 2)))
            inferred = True
        lay = int(positive("layers", layers))
        dm = int(positive("hidden size", d_model))
        f = int(positive("ffn size", ffn)) if ffn is not None else int(defaults.FFN_MULTIPLIER * dm)
        return cls(lay, dm, f, inferred)


def normalise_targets(targets: Sequence[str] | str) -> tuple[str, ...]:
    """LoRA target modules as ``q k v o gate up down``; ``all`` / ``all-linear`` = every one."""
    items = [targets] if isinstance(targets, str) else list(targets)
    out: list[str] = []
    for raw in items:
        for part in str(raw).replace(",", " ").split():
            t = part.strip().lower().removesuffix("_proj").removesuffix("-proj")
            t = _ALIASES.get(t, t)
            if t in ("all", "all-linear", "all_linear"):
                new = [*ATTENTION_MODULES, *MLP_MODULES]
            elif t in ATTENTION_MODULES or t in MLP_MODULES:
                new = [t]
            else:
                raise ConfigError(
                    f"Unknown LoRA target module {part!r}; use any of "
                    f"{', '.join(ATTENTION_MODULES + MLP_MODULES)} (q_proj etc. also work) or "
                    "'all'."
                )
            out.extend(x for x in new if x not in out)
    if not out:
        raise ConfigError("LoRA target modules are empty; give e.g. 'q,v' or 'all'.")
    return tuple(out)


def lora_trainable_params(shape: Shape, rank: int, targets: Sequence[str]) -> float:
    """Adapter parameters: ``rank * (d_in + d_out)`` per adapted matrix, per layer (Hu et al.)."""
    r = positive("LoRA rank", rank, " A typical rank is 4-64.")
    per_layer = 0.0
    for t in normalise_targets(targets):
        if t in ATTENTION_MODULES:
            per_layer += r * 2 * shape.d_model
        else:
            per_layer += r * (shape.d_model + shape.ffn)
    return per_layer * shape.layers


def finetune_flops(active_params: float, tokens: float, *, method: str, trainable_params: float = 0.0) -> float:
    """Fine-tuning FLOPs: ``6 N D`` for full, ``(4N + 6 N_t) D`` for LoRA/PEFT."""
    n = positive("active parameters", active_params)
    d = positive("tokens", tokens, " Give the fine-tuning tokens (examples x tokens x epochs).")
    if method == "full":
        return 6.0 * n * d
    if method == "lora":
        nt = finite("trainable parameters", trainable_params, minimum=0.0)
        return (4.0 * n + 6.0 * nt) * d
    raise ConfigError(f"Unknown fine-tuning method {method!r}; use 'full' or 'lora'.")


def inference_flops(active_params: float, input_tokens: float, output_tokens: float) -> float:
    """FLOPs of one query: ``2N`` per input (prefill) and per output (decode) token."""
    n = positive("active parameters", active_params)
    i = finite("input tokens", input_tokens, minimum=0.0)
    o = finite("output tokens", output_tokens, minimum=0.0)
    return 2.0 * n * (i + o)
