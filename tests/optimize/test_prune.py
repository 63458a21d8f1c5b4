import pytest
import torch

from greenlm.optimize import _arch, prune
from greenlm.optimize.errors import NotApplicableError

from .conftest import tiny_bert


def _n_params(m):
    return _arch.parameter_count(m)


def test_magnitude_pruning_zeroes_the_fraction_but_stays_dense(bert, ids):
    t = prune.magnitude(bert, 0.3)
    assert t.facts["sparsity_achieved"] == pytest.approx(0.3, abs=0.01)
    for _, _, _, lin in _arch.linear_layers(t.model):
        assert float((lin.weight == 0).float().mean()) == pytest.approx(0.3, abs=0.02)
    # dense storage: same shapes, same number of weights, same size on disk
    assert _n_params(t.model) == _n_params(bert)
    assert _arch.size_bytes(t.model) == pytest.approx(_arch.size_bytes(bert), rel=0.01)
    assert t.model(ids).last_hidden_state.shape == bert(ids).last_hidden_state.shape
    assert "dense" in t.description


def test_zero_sparsity_changes_nothing(bert, ids):
    t = prune.magnitude(bert, 0.0)
    torch.testing.assert_close(t.model(ids).last_hidden_state, bert(ids).last_hidden_state)


def test_head_pruning_shrinks_bert_attention(bert, ids):
    t = prune.heads(bert, 0.5)
    assert t.facts == {"heads_removed": 8, "heads_total": 16}
    att = t.model.encoder.layer[0].attention
    assert att.self.query.out_features == 2 * 16  # 2 heads of 16 dims kept
    assert att.output.dense.in_features == 32
    assert _n_params(t.model) < _n_params(bert)
    out = t.model(ids).last_hidden_state
    assert out.shape == bert(ids).last_hidden_state.shape


def test_head_pruning_removes_whole_kv_groups_in_llama(llama, ids):
    t = prune.heads(llama, 0.5)  # 4 query heads over 2 kv heads: one group goes
    attn = t.model.model.layers[0].self_attn
    assert attn.k_proj.out_features == 16 and attn.q_proj.out_features == 32
    assert t.model(ids).logits.shape == llama(ids).logits.shape
    out = t.model.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert out.shape == (2, ids.shape[1] + 3)


def test_head_fraction_that_rounds_to_zero_is_not_applicable(llama):
    with pytest.raises(NotApplicableError, match="rounds to zero"):
        prune.heads(llama, 0.2)


def test_ffn_pruning_removes_neurons_in_both_layouts(bert, llama, ids):
    tb = prune.ffn(bert, 0.25)
    assert tb.model.encoder.layer[0].intermediate.dense.out_features == 96
    assert tb.model.encoder.layer[0].output.dense.in_features == 96
    assert tb.model(ids).last_hidden_state.shape == bert(ids).last_hidden_state.shape
    tl = prune.ffn(llama, 0.25)
    mlp = tl.model.model.layers[0].mlp
    assert (mlp.gate_proj.out_features, mlp.up_proj.out_features, mlp.down_proj.in_features) == (96, 96, 96)
    assert _n_params(tl.model) < _n_params(llama)


def test_ffn_pruning_keeps_the_most_important_neurons(ids):
    model = tiny_bert(num_hidden_layers=1)
    layer = model.encoder.layer[0]
    with torch.no_grad():  # make neuron 7 tiny: it is the first to go
        layer.intermediate.dense.weight[7] *= 1e-4
    t = prune.ffn(model, 1 / 128)
    kept = t.model.encoder.layer[0].intermediate.dense.weight
    assert kept.shape[0] == 127
    assert not any(torch.allclose(r, layer.intermediate.dense.weight[7]) for r in kept)


def test_structured_pruning_needs_a_known_layout():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(NotApplicableError, match="BERT and Llama"):
        prune.heads(model, 0.25)
    with pytest.raises(NotApplicableError, match="BERT and Llama"):
        prune.ffn(model, 0.25)
