import pytest
import torch

from greenlm.optimize import _arch, quantize
from greenlm.optimize.errors import NotApplicableError


def _cos(a, b):
    a, b = a.detach(), b.detach()
    return float(torch.nn.functional.cosine_similarity(a.flatten().float(), b.flatten().float(), dim=0))


def test_int8_keeps_outputs_close_and_shrinks_the_weights(llama, ids):
    base = llama(ids).logits
    t = quantize.dynamic_int8(llama)
    out = t.model(ids).logits
    assert out.shape == base.shape
    assert _cos(out, base) > 0.99
    assert t.facts["layers_quantized"] == 4 * 7 + 1  # 7 projections per layer + tied head
    linear_left = [m for m in t.model.modules() if type(m) is torch.nn.Linear]
    assert linear_left == []
    # the caller's model is untouched
    assert any(type(m) is torch.nn.Linear for m in llama.modules())


def test_int8_is_smaller_on_disk_for_an_encoder(bert):
    t = quantize.dynamic_int8(bert)
    # embeddings stay fp32, so the saving is on the Linear weights only
    assert _arch.size_bytes(t.model) < _arch.size_bytes(bert)


@pytest.mark.parametrize("name, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_half_precision_halves_the_size(bert, ids, name, dtype):
    t = quantize.half(bert, name)
    assert next(t.model.parameters()).dtype == dtype
    assert _arch.size_bytes(t.model) < 0.6 * _arch.size_bytes(bert)
    out = t.model(ids).last_hidden_state
    assert _cos(out, bert(ids).last_hidden_state) > 0.99


@pytest.mark.parametrize("bits", [8, 4])
def test_bitsandbytes_is_skipped_with_a_reason_on_cpu(bert, bits):
    with pytest.raises(NotApplicableError, match="CUDA"):
        quantize.bitsandbytes_quant(bert, bits)


def test_int8_without_linear_layers_is_not_applicable():
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4))
    with pytest.raises(NotApplicableError, match=r"no nn\.Linear"):
        quantize.dynamic_int8(model)
