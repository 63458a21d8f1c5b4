import pytest
import torch

from greenlm.optimize import _arch
from greenlm.optimize.base import payback_inferences
from greenlm.optimize.distill import DistillSettings, distill, make_student
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


def test_recovery_fine_tuning_trains_a_copy_of_the_shrunk_model_and_counts_its_energy(bert, tokenizer, fake_meter):
    # a random tiny model's embeddings barely move under pruning: quality recovered on the
    # real MiniLM is checked in test_end_to_end.py; here, what recovery does to its inputs
    from greenlm.optimize import prune
    from greenlm.optimize.base import one_off_energy_j
    from greenlm.optimize.distill import recover

    task = build_task("embedding", tokenizer, TEXTS, None, samples=8, batch_size=4, seed=0, device="cpu")
    task.prepare(bert)
    before = [p.detach().clone() for p in bert.parameters()]
    pruned = prune.heads(bert, 0.5).model
    pruned_before = [p.detach().clone() for p in pruned.parameters()]
    t = recover(pruned, bert, task, DistillSettings(epochs=8, lr=1e-3, batch=8), fake_meter)
    assert t.facts["recover_loss_last"] < t.facts["recover_loss_first"]
    assert t.facts["recover_steps"] == 8 * len(task.train_batches(8))
    # the recovered model keeps the pruned shape with new weights; neither input changed
    assert _arch.parameter_count(t.model) == _arch.parameter_count(pruned) < _arch.parameter_count(bert)
    assert not all(torch.equal(a, b) for a, b in zip(pruned_before, t.model.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(before, bert.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(pruned_before, pruned.parameters(), strict=True))
    assert not t.model.training and not any(p.requires_grad for p in t.model.parameters())
    assert t.facts["recover_energy_j"] == pytest.approx(fake_meter.windows[-1].energy_j)
    assert one_off_energy_j(t.facts) == pytest.approx(t.facts["recover_energy_j"])
    assert one_off_energy_j({"distill_energy_j": 2.0, "recover_energy_j": 3.0}) == pytest.approx(5.0)
    assert one_off_energy_j({}) is None


def test_recovery_refuses_quantized_weights(bert, tokenizer, fake_meter):
    from greenlm.optimize import quantize
    from greenlm.optimize.distill import recover

    task = build_task("embedding", tokenizer, TEXTS, None, samples=4, batch_size=2, seed=0, device="cpu")
    q = quantize.dynamic_int8(bert).model
    with pytest.raises(NotApplicableError, match="before quantization"):
        recover(q, bert, task, DistillSettings(epochs=1), fake_meter)
    with pytest.raises(NotApplicableError, match="floating-point teacher"):
        distill(q, task, DistillSettings(layers=2, epochs=1), fake_meter)
    assert not fake_meter.windows, "nothing was trained or measured"
