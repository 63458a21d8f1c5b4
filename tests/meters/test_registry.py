"""A new GPU vendor is one module and one registration line: the detector and the CLI find it.

The vendor here is a made-up one, defined in this test module (a replacement at the vendor
boundary, not a real GPU): its meter reports a fixed power.
"""

from __future__ import annotations

import importlib
import json

import pytest

from greenlm.cli import main
from greenlm.errors import MeterUnavailableError
from greenlm.meters.base import Band, IntegratingMeter

D = importlib.import_module("greenlm.meters.detect")


class AcmeGpuMeter(IntegratingMeter):
    """Replacement vendor meter (labelled: no real device behind it)."""

    kind = "gpu"
    provenance = "sampled"
    band = Band(0.9, 1.1, "acme power readings (replacement vendor library in tests)")

    def __init__(self, index: int) -> None:
        super().__init__()
        self.name = f"gpu:acme{index}"

    def read_power_w(self) -> float:
        return 42.0


def find_acme(ctx: D.DetectContext) -> D.GpuFound:
    visible = ctx.env.get("ACME_VISIBLE_DEVICES", "0,1")
    meters = [AcmeGpuMeter(int(i)) for i in visible.split(",") if i]
    if not meters:
        raise MeterUnavailableError("ACME", "no ACME GPU visible (ACME_VISIBLE_DEVICES is empty)")
    return D.GpuFound(meters, f"{len(meters)} ACME GPU(s), sampled")


@pytest.fixture
def acme(monkeypatch):
    monkeypatch.setattr(D, "GPU_BACKENDS", list(D.GPU_BACKENDS))
    D.register_gpu_backend("ACME", find_acme)  # the one registration line
    yield


def test_a_registered_backend_is_walked_by_the_detector(acme, tmp_path):
    det = D.detect(rapl_root=str(tmp_path / "none"))
    names = [m.name for m in det.meters]
    assert "gpu:acme0" in names and "gpu:acme1" in names
    (acme_status,) = [r for r in det.report if r.backend == "ACME"]
    assert acme_status.used and "2 ACME GPU(s)" in acme_status.detail
    nvml_status = [r for r in det.report if r.backend == "NVML"]
    assert nvml_status and not nvml_status[0].used  # NVML is still asked, and says why not


def test_a_backend_that_says_no_is_reported_with_its_reason(acme, tmp_path, monkeypatch):
    monkeypatch.setenv("ACME_VISIBLE_DEVICES", "")
    det = D.detect(rapl_root=str(tmp_path / "none"))
    (st,) = [r for r in det.report if r.backend == "ACME"]
    assert not st.available and "ACME_VISIBLE_DEVICES is empty" in st.detail
    assert not [m for m in det.meters if m.name.startswith("gpu:acme")]


def test_a_broken_backend_does_not_hide_the_others(monkeypatch, tmp_path):
    monkeypatch.setattr(D, "GPU_BACKENDS", list(D.GPU_BACKENDS))

    def broken(ctx):
        raise RuntimeError("driver exploded")

    D.register_gpu_backend("BROKEN", broken)
    D.register_gpu_backend("ACME", find_acme)
    det = D.detect(rapl_root=str(tmp_path / "none"))
    assert any(m.name == "gpu:acme0" for m in det.meters)
    (st,) = [r for r in det.report if r.backend == "BROKEN"]
    assert "driver exploded" in st.detail


def test_greenlm_detect_lists_the_registered_backend(acme, tmp_path, capsys):
    assert main(["detect", "--json", "--rapl-root", str(tmp_path / "none")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"backend": "ACME", "available": True, "used": True, "detail": "2 ACME GPU(s), sampled"} in out["report"]
    assert any(m["name"] == "gpu:acme1" for m in out["meters"])


def test_a_tracker_measures_the_registered_gpus(acme, tmp_path):
    import time

    from greenlm import EnergyTracker
    from greenlm.config import TrackerConfig

    config = TrackerConfig.resolve(interval_s=0.02, rapl_root=str(tmp_path / "none"))
    with EnergyTracker(store=False, config=config) as t:
        time.sleep(0.15)
    gpu = t.result.component("gpu:acme0")
    assert gpu.provenance == "sampled"
    assert gpu.energy_j == pytest.approx(42.0 * t.result.duration_s, rel=0.05)
