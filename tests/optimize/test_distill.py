import pytest
import torch

from greenlm.optimize import _arch
from greenlm.optimize.distill import DistillSettings, distill, make_student, payback_inferences
from greenlm.optimize.errors import NotApplicableError
from greenlm.optimize.tasks import build_task

TEXTS = [
    f"sentence number {i} about {w}"
    for i, w in enumerate(["cats", "dogs", "rain", "films", "music", "trains", "books", "food"] * 5)
]


def test_student_keeps_evenly_spaced_layers_and_renumbers_the_cache(llama, ids):
    student, keep = make_student(llama, 2)
    assert keep == [0, 3]
    assert student.config.num_hidden_layers == 2
    assert [layer.self_attn.layer_idx for layer in student.model.layers] == [0, 1]
    assert _arch.parameter_count(student) < _arch.parameter_count(llama)
    out = student.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert out.shape[1] == ids.shape[1] + 3
    assert llama.config.num_hidden_layers == 4  # the teacher is untouched


def test_student_must_be_shallower(bert):
    with pytest.raises(NotApplicableError, match="shallower"):
        make_student(bert, 4)


def test_distillation_lowers_the_loss_and_counts_its_energy(bert, tokenizer, fake_meter):
    task = build_task("embedding", tokenizer, TEXTS, None, samples=4, batch_size=2, seed=0, device="cpu")
    t = distill(bert, task, DistillSettings(layers=2, epochs=4, lr=1e-3, batch=8), fake_meter)
    assert t.facts["distill_loss_last"] < t.facts["distill_loss_first"]
    assert t.facts["distill_energy_j"] == pytest.approx(fake_meter.windows[0].energy_j)
    assert t.model.config.num_hidden_layers == 2
    assert not t.model.training
    assert any(p.requires_grad for p in bert.parameters())  # the teacher is left as it was


def test_payback():
    assert payback_inferences(100.0, 50.0, 30.0) == pytest.approx(5000)
    assert payback_inferences(100.0, 30.0, 50.0) is None


def test_distill_on_classification_uses_soft_labels(bert, tokenizer, fake_meter):
    labels = [i % 2 for i in range(len(TEXTS))]
    task = build_task("classification", tokenizer, TEXTS, labels, samples=4, batch_size=2, seed=0, device="cpu")
    task.prepare(bert)
    t = distill(bert, task, DistillSettings(layers=2, epochs=2, batch=8), fake_meter)
    ev = task.evaluate(t.model)
    assert ev.quality.metric == "accuracy" and 0.0 <= ev.quality.value <= 1.0
    assert torch.isfinite(torch.tensor(t.facts["distill_loss_last"]))
