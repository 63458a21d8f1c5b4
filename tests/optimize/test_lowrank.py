import pytest
import torch

from greenlm.optimize import _arch, lowrank
from greenlm.optimize.errors import NotApplicableError


def test_exact_for_a_matrix_of_that_rank():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 48)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(48, 4) @ torch.randn(4, 64))
    model = torch.nn.Sequential(lin)
    t = lowrank.factorize(model, {"rank": 4})
    x = torch.randn(5, 64)
    torch.testing.assert_close(t.model(x), model(x), atol=1e-4, rtol=1e-4)
    first, second = t.model[0]
    assert (first.out_features, second.in_features) == (4, 4)
    assert _arch.parameter_count(t.model) == 4 * (64 + 48) + 48  # + bias
    assert t.facts["retained_energy_mean"] == pytest.approx(1.0, abs=1e-5)


def test_ratio_shrinks_a_transformer_and_keeps_its_shapes(bert, ids):
    t = lowrank.factorize(bert, {"ratio": 0.25})
    assert _arch.parameter_count(t.model) < _arch.parameter_count(bert)
    assert t.model(ids).last_hidden_state.shape == bert(ids).last_hidden_state.shape
    assert t.facts["layers_factorized"] > 0


def test_energy_ratio_picks_the_smallest_sufficient_rank():
    s = torch.tensor([3.0, 2.0, 1.0, 0.5])
    # shares of sum(s^2) = 14.25: 0.63, 0.91, 0.98, 1.0
    assert lowrank.choose_rank(s, 4, {"energy": 0.9}) == 2
    assert lowrank.choose_rank(s, 4, {"energy": 0.95}) == 3
    assert lowrank.choose_rank(s, 4, {"ratio": 0.5}) == 2
    assert lowrank.choose_rank(s, 4, {"rank": 99}) == 4


def test_no_saving_means_not_applicable(bert):
    with pytest.raises(NotApplicableError, match="pays only when"):
        lowrank.factorize(bert, {"energy": 1.0})
