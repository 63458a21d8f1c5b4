"""torch.compile as a technique: the same outputs, its one-off energy counted, failures skipped."""

from __future__ import annotations

import pytest
import torch

from greenlm.optimize.compiled import compile_forward
from greenlm.optimize.errors import NotApplicableError, TechniqueArgumentError
from greenlm.optimize.spec import parse_techniques
from greenlm.optimize.tasks import build_task

from .conftest import tiny_bert


@pytest.fixture(autouse=True)
def _cxx() -> None:
    """TorchInductor compiles C++ on CPU: skip without g++, unless CI requires it."""
    import os
    import shutil
    import sysconfig
    from pathlib import Path

    missing = [
        what
        for what, ok in (
            ("g++", shutil.which("g++") is not None),
            ("the Python headers", (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file()),
        )
        if not ok
    ]
    if missing:
        reason = f"torch.compile needs {' and '.join(missing)}"
        if os.environ.get("GREENLM_REQUIRE_COMPILER"):
            pytest.fail(f"GREENLM_REQUIRE_COMPILER is set but {reason}")
        pytest.skip(f"{reason}: install g++ and python3-dev to run the compile tests")


TEXTS = [f"sentence {i} about {w} and more words" * (1 + i % 3) for i, w in enumerate(["cats", "rain", "films"] * 6)]


def test_compiled_encoder_gives_the_same_embeddings_and_counts_its_compile_energy(bert, tokenizer, fake_meter):
    task = build_task("embedding", tokenizer, TEXTS, None, samples=6, batch_size=3, seed=0, device="cpu")
    task.prepare(bert)
    t = compile_forward(bert, task, fake_meter)
    # sentences of other lengths than those compiled for: dynamic shapes, same results
    with torch.inference_mode():
        same = task.embed(t.model, task.eval_texts)
    assert torch.allclose(same, task.reference, atol=1e-4)
    assert task.evaluate(t.model).quality.value == pytest.approx(1.0, abs=1e-4)
    assert t.facts["compile_energy_j"] > 0
    assert t.facts["compile_energy_j"] == pytest.approx(fake_meter.windows[-1].energy_j)
    assert "torch.compile" in t.description
    assert bert.forward.__func__ is type(bert).forward, "the caller's model is not compiled"


def test_compiled_decoder_generates_the_same_tokens(llama, tokenizer, fake_meter):
    docs = [f"the {w} sat on the mat and looked at the {w} again." * 3 for w in ("cat", "dog", "owl", "fox")]
    task = build_task("causal-lm", tokenizer, docs, None, samples=2, batch_size=1, seed=0, device="cpu")
    t = compile_forward(llama, task, fake_meter)
    ids = task.measure_batches()[0]
    with torch.inference_mode():
        want = llama.generate(**ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
        got = t.model.generate(**ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert torch.equal(want, got)


def test_a_compiler_failure_is_a_skipped_variant_with_the_reason(tokenizer, fake_meter, monkeypatch):
    import torch._inductor.config as inductor_config

    # the real failure path: TorchInductor cannot find its C++ compiler (no cache to hide it)
    monkeypatch.setattr(inductor_config, "fx_graph_cache", False)
    monkeypatch.setattr(inductor_config.cpp, "cxx", ("/nonexistent/g++",))
    model = tiny_bert(hidden_size=48, num_attention_heads=3, intermediate_size=80)
    task = build_task("embedding", tokenizer, TEXTS, None, samples=3, batch_size=3, seed=0, device="cpu")
    with pytest.raises(NotApplicableError, match="needs a C\\+\\+ compiler"):
        compile_forward(model, task, fake_meter)


def test_compile_comes_last_in_a_variant():
    (spec,) = parse_techniques("heads:0.25+bf16+compile")
    assert [s.name for s in spec.steps] == ["heads", "bf16", "compile"]
    with pytest.raises(TechniqueArgumentError, match="must be the last step"):
        parse_techniques("compile+bf16")
    with pytest.raises(TechniqueArgumentError, match="takes no arguments"):
        parse_techniques("compile:1")
