"""Fixtures for the integration tests: an isolated GREENLM_HOME and replay meters."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from greenlm.meters.fake import ReplayMeter


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Every test gets its own store and no inherited GREENLM_* settings."""
    for k in list(os.environ):
        if k.startswith("GREENLM_"):
            monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("GREENLM_HOME", str(tmp_path / "greenlm-home"))
    monkeypatch.setenv("GREENLM_LOCATION", "DEU")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    from greenlm.store.runs import clear_store_cache

    clear_store_cache()
    yield
    clear_store_cache()


@pytest.fixture
def replay_gpu() -> ReplayMeter:
    """A stand-in for one GPU at a constant 200 W (no GPU on the test machine)."""
    return ReplayMeter("gpu:0", "gpu", power_w=200.0, provenance="sampled")
