import pytest
import transformers

from greenlm.optimize.errors import TechniqueArgumentError
from greenlm.optimize.lora import FinetuneConfig, finetune, parse_modes

from .conftest import VOCAB

TEXTS = [f"{'great fun' if i % 2 else 'dull and slow'} film number {i}" for i in range(40)]


def test_parse_modes():
    modes = parse_modes("full,lora,lora+amp,full+accum=4,lora:r=16")
    assert [(m.lora, m.amp, m.accum, m.rank) for m in modes] == [
        (False, False, 1, 8),
        (True, False, 1, 8),
        (True, True, 1, 8),
        (False, False, 4, 8),
        (True, False, 1, 16),
    ]


@pytest.mark.parametrize("bad", ["half", "amp", "full+lora", "full+accum=0", "full:r=4", ""])
def test_bad_modes(bad):
    with pytest.raises(TechniqueArgumentError):
        parse_modes(bad)


def test_lora_trains_far_fewer_parameters(tokenizer, fake_meter, monkeypatch):
    import torch

    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        num_labels=2,
    )
    model = transformers.BertForSequenceClassification(cfg)
    import greenlm.optimize.runner as runner

    monkeypatch.setattr(runner, "load_data", lambda task, data: (TEXTS, [i % 2 for i in range(40)]))
    report = finetune(
        FinetuneConfig(compare="full,lora+amp,full+accum=2", epochs=2, batch_size=8, lr_full=1e-3),
        measure=fake_meter,
        loaded=(tokenizer, model),
    )
    full, lora, accum = report.modes
    assert lora.trainable_params < 0.2 * full.trainable_params
    assert accum.trainable_params == full.trainable_params
    for m in report.modes:
        assert m.skipped_reason is None
        assert m.energy_j_per_epoch_min <= m.energy_j_per_epoch <= m.energy_j_per_epoch_max
        assert len(m.quality_by_epoch) == 2 and m.quality.metric == "accuracy"
    assert len(fake_meter.windows) == 3 * 2  # one window per epoch per mode
    assert full.loss_by_epoch[-1] < full.loss_by_epoch[0]
    # the same model object is never trained in place
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == full.trainable_params
