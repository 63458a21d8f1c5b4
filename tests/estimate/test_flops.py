import pytest

from greenlm.errors import ConfigError
from greenlm.estimate import flops


def test_training_is_six_n_d():
    assert flops.train_flops(1e9, 1e10) == pytest.approx(6e19)


def test_attention_term_added_only_with_full_shape():
    base = flops.train_flops(1e9, 1e10)
    assert flops.train_flops(1e9, 1e10, layers=24, d_model=2048) == base
    with_att = flops.train_flops(1e9, 1e10, layers=24, d_model=2048, seq_len=2048)
    # PaLM appendix B: 6N + 12 * L * d * T per token
    assert with_att - base == pytest.approx(12 * 24 * 2048 * 2048 * 1e10)


def test_lora_costs_about_two_thirds_of_full_finetuning():
    full = flops.finetune_flops(7e9, 1e8, method="full")
    lora = flops.finetune_flops(7e9, 1e8, method="lora", trainable_params=4e6)
    assert 0.66 < lora / full < 0.68


def test_lora_parameter_count_matches_the_lora_paper():
    # Hu et al. 2021, Sec. 7.1: on GPT-3 175B (96 layers, d_model 12288) an 18M-parameter
    # budget is r=8 on one matrix type, r=4 on two, or r=2 on all four attention matrices.
    shape = flops.Shape.resolve(175e9, 96, 12288)
    for rank, targets in ((8, ["q"]), (4, ["q", "v"]), (2, ["q", "k", "v", "o"])):
        n = flops.lora_trainable_params(shape, rank, targets)
        assert n == pytest.approx(18.9e6, rel=0.01)


def test_lora_targets_accept_hf_names_and_all():
    assert flops.normalise_targets("q_proj,v_proj") == ("q", "v")
    assert len(flops.normalise_targets("all")) == 7
    with pytest.raises(ConfigError, match="Unknown LoRA target"):
        flops.normalise_targets(["q", "attention"])


def test_inferred_shape_is_plausible_for_a_7b_model():
    s = flops.Shape.resolve(7e9, None, None)
    assert s.inferred
    assert 3500 < s.d_model < 5000 and 25 < s.layers < 40


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "many"])
def test_bad_sizes_are_rejected(bad):
    with pytest.raises(ConfigError):
        flops.train_flops(bad, 1e9)
    with pytest.raises(ConfigError):
        flops.train_flops(1e9, bad)
