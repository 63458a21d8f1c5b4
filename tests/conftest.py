"""Shared fixtures: every test gets its own GREENLM_HOME and no GREENLM_* settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: What CI sets to turn a skip for a missing system package into a failure.
_KEEP = ("GREENLM_REQUIRE_POSTGRES", "GREENLM_REQUIRE_BROWSER", "GREENLM_REQUIRE_COMPILER", "GREENLM_REQUIRE_SLURM")


@pytest.fixture(autouse=True)
def _isolated_greenlm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(os.environ):
        if k.startswith("GREENLM_") and k not in _KEEP:
            monkeypatch.delenv(k, raising=False)
    home = tmp_path / "greenlm-home"
    monkeypatch.setenv("GREENLM_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    yield
    from greenlm.store import clear_store_cache

    clear_store_cache()


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"
