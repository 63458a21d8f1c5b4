"""NVML meters through a REPLACEMENT ``pynvml`` module (tests/meters/fake_pynvml.py; no GPU here)."""

from __future__ import annotations

import sys
import time

import pytest

from greenlm.config import TrackerConfig
from greenlm.errors import MeterUnavailableError
from greenlm.meters import nvml
from greenlm.meters.detect import detect
from tests.meters import fake_pynvml as fake


@pytest.fixture
def gpus(monkeypatch: pytest.MonkeyPatch):
    fake.install(
        [
            fake.FakeGPU("NVIDIA A100-SXM4-80GB", "GPU-aaaa-1111", 300.0),
            fake.FakeGPU("NVIDIA A100-SXM4-80GB", "GPU-bbbb-2222", 200.0),
            fake.FakeGPU("Tesla P100-PCIE-16GB", "GPU-cccc-3333", 150.0, has_counter=False, max_limit_w=250.0),
        ]
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return fake.State.gpus


def _tracker(meters, tmp_path):
    from greenlm import EnergyTracker

    config = TrackerConfig.resolve(interval_s=0.02, location="FRA", rapl_root=str(tmp_path / "none"))
    return EnergyTracker(meters=meters, store=False, config=config)


def test_counter_gpus_use_the_energy_counter_and_old_gpus_sample_power(gpus):
    meters = nvml.nvml_meters(clock=fake.clock)
    assert [m.name for m in meters] == ["gpu:0", "gpu:1", "gpu:2"]
    assert [m.provenance for m in meters] == ["counter", "counter", "sampled"]
    for m in meters[:2]:
        m.start()
    fake.advance(2.0)
    assert meters[0].energy_j() == pytest.approx(600.0)
    assert meters[1].energy_j() == pytest.approx(400.0)


def test_power_sampling_integrates_watts_over_time(gpus):
    clock = iter([0.0, 1.0, 3.0]).__next__
    m = nvml.NvmlPowerMeter(fake, 2, gpus[2], 0, clock=clock)
    m.start()
    assert m.energy_j() == pytest.approx(150.0)
    assert m.energy_j() == pytest.approx(450.0)


@pytest.mark.parametrize(
    ("env", "expected"),
    [("1", [1]), ("2,0", [2, 0]), ("GPU-bbbb", [1]), ("0,7,1", [0]), ("", []), ("GPU-zzzz,1", []), ("1,1,0", [1, 0])],
)
def test_cuda_visible_devices_is_respected(gpus, env, expected):
    assert [i for i, _ in nvml.visible_handles(fake, env)] == expected


def test_only_visible_gpus_are_measured_and_named_in_cuda_order(gpus, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    (m,) = nvml.nvml_meters(clock=fake.clock)
    assert m.name == "gpu:0" and m.index == 1
    m.start()
    fake.advance(1.0)
    assert m.energy_j() == pytest.approx(200.0)


def test_hidden_gpus_and_missing_library_say_why(gpus, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(MeterUnavailableError, match="no GPU visible"):
        nvml.nvml_meters()
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(MeterUnavailableError, match="library not found"):
        nvml.load_nvml()


def test_detect_reports_gpus_and_records_sampling_fallback(gpus, tmp_path):
    det = detect(rapl_root=str(tmp_path / "none"))
    gpu = [m for m in det.meters if m.kind == "gpu"]
    assert len(gpu) == 3
    assert any("gpu:2" in w and "sampled" in w for w in det.warnings)
    nv = next(r for r in det.report if r.backend == "NVML")
    assert nv.used and "3 GPU" in nv.detail


def test_the_bound_is_the_boards_maximum_power_limit(gpus):
    (m,) = nvml.nvml_meters(env="0", clock=fake.clock)
    assert m.limit.max_power_w == pytest.approx(400.0)
    assert "maximum power limit" in m.limit.source
    gpus[0].max_limit_w = None  # a driver that reports no limit: the stated ceiling
    (m,) = nvml.nvml_meters(env="0", clock=fake.clock)
    assert m.limit.max_power_w == pytest.approx(1500.0) and "assumed" in m.limit.source
    assert m.describe()["max_power_w"] == pytest.approx(1500.0)


def test_counter_failure_mid_run_degrades_to_power_sampling(gpus, tmp_path):
    meters = nvml.nvml_meters()[:1]
    t = _tracker(meters, tmp_path)
    with t:
        fake.advance(0.2)
        time.sleep(0.1)
        gpus[0].has_counter = False  # the driver stops answering the energy query
        time.sleep(0.2)
    c = t.result.component("gpu:0")
    assert c.provenance == "sampled"  # the weakest method used in the run
    assert c.energy_j >= 60.0  # the counted part is kept, sampled power adds to it
    assert sum("continued with sampled" in w for w in t.result.warnings) == 1


def test_a_megawatt_counter_jump_is_refused_and_sampling_takes_over(gpus, tmp_path):
    """A counter artefact worth 12.6 MW for a tenth of a second never reaches the result."""
    meters = nvml.nvml_meters(env="0")
    t = _tracker(meters, tmp_path)
    with fake.ticking(), t:
        time.sleep(0.15)
        gpus[0].counter_jump_mj = int(12.6e6 * 0.1 * 1e3)  # 1.26 MJ at the next read
        time.sleep(0.3)
    r = t.result
    c = r.component("gpu:0")
    assert c.provenance == "sampled"
    assert c.energy_j < 400.0 * (r.duration_s + 1.0)  # bounded by the board, not 1.26 MJ
    assert c.energy_j == pytest.approx(300.0 * r.duration_s, rel=0.25)
    (w,) = [w for w in r.warnings if "gpu:0" in w]
    assert "jumped" in w and "more than the board can draw" in w and "continued with sampled" in w


def test_a_counter_that_goes_backwards_is_refused(gpus):
    (m,) = nvml.nvml_meters(env="0", clock=fake.clock)
    m.start()
    fake.advance(1.0)
    assert m.energy_j() == pytest.approx(300.0)
    gpus[0].energy_mj = 5  # a GPU reset zeroes the counter
    fake.advance(0.1)
    with pytest.raises(Exception, match="went backwards"):
        m.energy_j()
    fb = m.fallback()
    assert fb.provenance == "sampled" and fb.name == "gpu:0"


def test_implausible_power_readings_are_discarded_and_reported(gpus, tmp_path):
    (m,) = nvml.nvml_meters(env="2")  # the P100: power sampling only, limit 250 W
    t = _tracker([m], tmp_path)
    with t:
        time.sleep(0.1)
        gpus[2].power_glitch_w = 12.6e6
        time.sleep(0.2)
    r = t.result
    c = r.component("gpu:0")
    assert c.energy_j == pytest.approx(150.0 * r.duration_s, rel=0.2)
    (w,) = [w for w in r.warnings if "discarded" in w]
    assert "12.6 MW" in w and "250 W" in w
