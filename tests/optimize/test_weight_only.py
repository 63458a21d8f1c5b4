"""Weight-only int8 / 4-bit quantization (torch's own CPU kernels) on tiny config-built models."""

from __future__ import annotations

import pytest
import torch

from greenlm.optimize import _arch, weight_only
from greenlm.optimize.errors import NotApplicableError, TechniqueArgumentError
from greenlm.optimize.spec import parse_step
from greenlm.optimize.weight_only import Int4WeightOnlyLinear, Int8WeightOnlyLinear

pytestmark = pytest.mark.skipif(
    not hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu"), reason="torch without CPU weight-only kernels"
)


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten().float(), b.flatten().float(), dim=0))


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@torch.no_grad()
def test_one_layer_int8_and_int4_reproduce_the_float_layer() -> None:
    torch.manual_seed(0)
    lin = torch.nn.Linear(256, 96)
    x = torch.randn(5, 7, 256)
    ref = lin(x)
    y8 = Int8WeightOnlyLinear(lin)(x)
    y4 = Int4WeightOnlyLinear(lin, 32)(x)
    assert y8.shape == y4.shape == ref.shape and y8.dtype == torch.float32
    assert _rel_err(y8, ref) < 0.01, "int8 per channel: about 0.5 % error (bf16 activations included)"
    assert _rel_err(y4, ref) < 0.12, "4-bit in groups of 32: a few percent"
    assert _rel_err(y4, ref) > _rel_err(y8, ref), "fewer bits, more error"
    assert _rel_err(y4, ref) < _rel_err(Int4WeightOnlyLinear(lin, 128)(x), ref), "smaller groups fit the weights better"


@torch.no_grad()
def test_int8w_replaces_every_linear_and_keeps_logits(llama, ids) -> None:
    base = llama(ids).logits
    t = weight_only.int8_weight_only(llama)
    out = t.model(ids).logits
    assert _cos(out, base) > 0.999
    assert (out.argmax(-1) == base.argmax(-1)).float().mean() > 0.95
    assert not [m for m in t.model.modules() if type(m) is torch.nn.Linear]
    assert t.facts["layers_int8"] == 4 * 7 + 1, "7 projections per layer and the tied LM head"
    assert "tied" in t.description
    vocab, hidden = llama.get_input_embeddings().weight.shape
    assert _arch.parameter_count(t.model) == _arch.parameter_count(llama) + vocab * hidden, (
        "same weights, plus the tied head's own copy"
    )
    assert any(type(m) is torch.nn.Linear for m in llama.modules()), "the caller's model is untouched"


@torch.no_grad()
def test_int4w_keeps_the_lm_head_at_int8_and_shrinks_the_layers(llama, ids) -> None:
    base = llama(ids).logits
    t = weight_only.int4_weight_only(llama, 32)
    assert isinstance(t.model.lm_head, Int8WeightOnlyLinear)
    n4 = sum(isinstance(m, Int4WeightOnlyLinear) for m in t.model.modules())
    assert n4 == t.facts["layers_int4"] == 4 * 7
    assert _cos(t.model(ids).logits, base) > 0.98
    layer_bytes = sum(b.numel() * b.element_size() for b in t.model.model.layers.buffers())
    float_bytes = sum(p.numel() * 4 for n, p in llama.model.layers.named_parameters() if "proj" in n)
    assert layer_bytes < 0.25 * float_bytes, "4 bits a weight plus per-group scales: under a quarter of fp32"


@torch.no_grad()
def test_int4w_falls_back_to_int8_for_shapes_the_kernel_cannot_take(ids) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 48), torch.nn.Linear(48, 8)
    )
    x = torch.randn(3, 64)
    t = weight_only.int4_weight_only(model, 32)
    assert isinstance(t.model[3], Int8WeightOnlyLinear), "48 inputs are not a multiple of 32"
    assert t.facts == {"layers_int4": 2, "layers_int8": 1, "int4_group": 32}
    assert "do not fit the 4-bit kernel" in t.description
    assert _cos(t.model(x), model(x)) > 0.98
    with pytest.raises(NotApplicableError, match="no Linear layer of this model fits"):
        weight_only.int4_weight_only(torch.nn.Sequential(torch.nn.Linear(48, 8)), 32)


def test_models_without_linear_layers_are_not_applicable() -> None:
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4))
    for fn in (weight_only.int8_weight_only, weight_only.int4_weight_only):
        with pytest.raises(NotApplicableError, match=r"no nn\.Linear"):
            fn(model)


def test_technique_arguments_are_checked() -> None:
    assert parse_step("int4w").args == {"group": 32}
    assert parse_step("int4w:128").args == {"group": 128}
    with pytest.raises(TechniqueArgumentError, match="group size of 32, 64, 128 or 256"):
        parse_step("int4w:group=48")
    with pytest.raises(TechniqueArgumentError, match="takes no arguments"):
        parse_step("int8w:4")
