"""AMD GPUs through a REPLACEMENT ``amdsmi`` module (tests/meters/fake_amdsmi.py; no AMD GPU here).

Counter scale and wraparound, counter faults (jump, stall, disagreement, reset) and the
fallback to power sampling through a real EnergyTracker, power readings and their bound,
the ROCR/HIP/CUDA visibility variables, and what ``greenlm detect`` says.
"""

from __future__ import annotations

import json
import sys
import time

import pytest

from greenlm.cli import main
from greenlm.config import TrackerConfig
from greenlm.errors import MeterUnavailableError
from greenlm.meters import amd
from greenlm.meters.detect import DetectContext, detect
from tests.meters import fake_amdsmi as fake

MI300X = "AMD Instinct MI300X"


def _gpus() -> list[fake.FakeAmdGpu]:
    return [
        fake.FakeAmdGpu(MI300X, "d1cf7e0a7e6b9b50", "0000:c1:00.0", 600.0, hip_id=2, max_cap_w=750.0),
        fake.FakeAmdGpu(MI300X, "a0b1c2d3e4f50617", "0000:0c:00.0", 300.0, hip_id=0, max_cap_w=750.0),
        fake.FakeAmdGpu(MI300X, "a0b1c2d3e4f5ffff", "0000:22:00.0", 150.0, hip_id=1, max_cap_w=750.0),
    ]


@pytest.fixture
def gpus(monkeypatch: pytest.MonkeyPatch):
    fake.install(_gpus())
    monkeypatch.setitem(sys.modules, "amdsmi", fake)
    for v in amd.VISIBILITY_VARS:
        monkeypatch.delenv(v, raising=False)
    return fake.State.gpus


def _meters(env=None):
    return amd.amd_meters(fake, env or {}, clock=fake.clock)[0]


def _tracker(meters):
    from greenlm import EnergyTracker

    return EnergyTracker(meters=meters, store=False, config=TrackerConfig.resolve(interval_s=0.02, location="FRA"))


# --------------------------------------------------------------------------- counter
def test_the_counter_counts_ticks_times_their_resolution(gpus):
    meters = _meters()
    assert [m.name for m in meters] == ["gpu:0", "gpu:1", "gpu:2"]
    assert [m.gpu.bdf for m in meters] == ["0000:0c:00.0", "0000:22:00.0", "0000:c1:00.0"]  # HIP order
    assert all(m.provenance == "counter" for m in meters)
    for m in meters:
        m.start()
    fake.advance(2.0)
    assert [m.energy_j() for m in meters] == pytest.approx([600.0, 300.0, 1200.0], rel=1e-6)


@pytest.mark.parametrize("resolution_uj", [15.3, 1.0, 976.5625])
def test_the_scale_is_read_from_the_device(gpus, resolution_uj):
    gpus[1].resolution_uj = resolution_uj
    m = _meters()[0]
    m.start()
    fake.advance(10.0)
    assert m.energy_j() == pytest.approx(3000.0, rel=1e-4)


def test_rocm_releases_before_6_4_name_the_accumulator_power(gpus):
    for g in gpus:
        g.old_key = True
    m = _meters()[0]
    m.start()
    fake.advance(1.0)
    assert m.energy_j() == pytest.approx(300.0, rel=1e-6)


def test_a_32_bit_accumulator_that_wraps_is_followed(gpus):
    g = gpus[1]
    g.width_bits = 32
    g.ticks = 2**32 - 1000.0  # a few ms before the wrap
    m = _meters()[0]
    m.start()
    for _ in range(5):
        fake.advance(0.5)
        e = m.energy_j()
    assert e == pytest.approx(750.0, rel=1e-6)
    assert g.ticks > 2**32  # it did wrap


def test_a_reset_counter_is_refused_not_read_as_a_wrap(gpus):
    m = _meters()[0]
    m.start()
    fake.advance(1.0)
    m.energy_j()
    gpus[1].ticks = 10.0  # a GPU reset: the accumulator starts again
    fake.advance(0.1)
    with pytest.raises(Exception, match="jumped"):
        m.energy_j()


def test_power_readings_integrate_and_prefer_current_socket_power(gpus):
    gpus[1].has_counter = False
    gpus[1].current_power = False  # an MI200: only the average socket power
    meters, _, warnings = amd.amd_meters(fake, {}, clock=fake.clock)
    m = meters[0]
    assert m.provenance == "sampled" and m.band.low == pytest.approx(0.95)
    assert any("gpu:0" in w and "no usable AMD SMI energy counter" in w for w in warnings)
    m.start()
    fake.advance(2.0)
    assert m.energy_j() == pytest.approx(600.0)


def test_a_device_with_neither_counter_nor_power_is_skipped_and_said(gpus):
    gpus[1].has_counter = gpus[1].has_power = False
    meters, _, warnings = amd.amd_meters(fake, {}, clock=fake.clock)
    assert [m.gpu.bdf for m in meters] == ["0000:22:00.0", "0000:c1:00.0"]
    assert any("neither an energy counter" in w and "not measured" in w for w in warnings)


def test_the_bound_is_the_boards_maximum_cap_in_watts(gpus):
    m = _meters()[0]
    assert m.limit.max_power_w == pytest.approx(750.0) and "maximum power cap" in m.limit.source
    gpus[1].max_cap_w = None
    m = _meters()[0]
    assert m.limit.max_power_w == pytest.approx(1500.0) and "assumed" in m.limit.source


# --------------------------------------------------------------------------- faults, through a tracker
def test_a_megawatt_jump_is_refused_and_power_sampling_takes_over(gpus):
    m = _meters({"HIP_VISIBLE_DEVICES": "0"})[0]
    t = _tracker([m])
    with fake.ticking(speed=1.0), t:
        time.sleep(0.15)
        gpus[1].jump_uj = 12.6e6 * 0.1 * 1e6  # 12.6 MW over a tenth of a second
        time.sleep(0.3)
    c = t.result.component("gpu:0")
    assert c.provenance == "sampled"
    assert c.energy_j < 750.0 * (t.result.duration_s + 1.0)
    assert c.energy_j == pytest.approx(300.0 * t.result.duration_s, rel=0.25)
    (w,) = [w for w in t.result.warnings if w.startswith("gpu:0")]
    assert "jumped" in w and "750 W" in w and "continued with sampled" in w


def test_a_stalled_counter_falls_back_once_and_keeps_the_energy_it_missed(gpus):
    m = _meters({"ROCR_VISIBLE_DEVICES": "0"})[0]
    t = _tracker([m])
    with fake.ticking(speed=5.0), t:  # 5 simulated seconds per real one
        time.sleep(0.2)
        gpus[1].stalled = True  # the ROCm 6.0/6.1 symptom
        time.sleep(0.8)
    c = t.result.component("gpu:0")
    assert c.provenance == "sampled"
    simulated_s = 5.0 * t.result.duration_s
    assert c.energy_j == pytest.approx(300.0 * simulated_s, rel=0.15)  # the stall is not lost
    ws = [w for w in t.result.warnings if w.startswith("gpu:0")]
    assert len(ws) == 1 and "stalled" in ws[0] and "continued with sampled" in ws[0]


def test_a_counter_off_by_a_factor_disagrees_with_power_and_is_not_trusted(gpus):
    gpus[1].scale = 2.0  # the accumulator counts twice the energy
    m = _meters()[0]
    m.start()
    with pytest.raises(Exception, match="disagrees with integrated power") as e:
        for _ in range(200):
            fake.advance(0.1)
            m.energy_j()
    assert "more than 25% apart" in str(e.value)
    lo, hi = m.bounds_j(m._e)
    assert lo == pytest.approx(m._e / 2, rel=0.05) and hi == pytest.approx(m._e)  # the band shows the doubt
    fb = m.fallback()
    fb.start()
    fake.advance(1.0)
    assert fb.provenance == "sampled" and fb.energy_j() == pytest.approx(300.0, rel=0.01)


def test_implausible_power_readings_are_discarded_with_a_warning(gpus):
    gpus[1].has_counter = False
    m = _meters()[0]
    t = _tracker([m])
    with fake.ticking(), t:
        time.sleep(0.1)
        gpus[1].power_glitch_w = 12.6e6
        time.sleep(0.2)
    c = t.result.component("gpu:0")
    assert c.energy_j == pytest.approx(300.0 * t.result.duration_s, rel=0.2)
    (w,) = [w for w in t.result.warnings if "discarded" in w]
    assert "12.6 MW" in w and "750 W" in w


def test_a_gcd_that_reports_no_energy_says_so_in_the_result(gpus):
    gpus[1].power_w = 0.0  # the second GCD of an MI250X: the card's power is on the other one
    m = _meters()[0]
    t = _tracker([m])
    with fake.ticking(), t:
        time.sleep(1.1)
    assert t.result.component("gpu:0").energy_j == 0.0
    assert any("reported no energy at all" in w and "MI250" in w for w in t.result.warnings)


# --------------------------------------------------------------------------- visibility
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ["0c", "22", "c1"]),
        ({"ROCR_VISIBLE_DEVICES": "2,0"}, ["c1", "0c"]),
        ({"HIP_VISIBLE_DEVICES": "1"}, ["22"]),
        ({"CUDA_VISIBLE_DEVICES": "2"}, ["c1"]),  # HIP reads it when HIP_VISIBLE_DEVICES is unset
        ({"HIP_VISIBLE_DEVICES": "0", "CUDA_VISIBLE_DEVICES": "2"}, ["0c"]),  # HIP's wins
        ({"ROCR_VISIBLE_DEVICES": "1,2", "HIP_VISIBLE_DEVICES": "1"}, ["c1"]),  # HIP indexes ROCR's list
        ({"ROCR_VISIBLE_DEVICES": "GPU-d1cf7e0a7e6b9b50"}, ["c1"]),
        ({"HIP_VISIBLE_DEVICES": "GPU-D1CF"}, ["c1"]),  # a unique prefix, any case
        ({"HIP_VISIBLE_DEVICES": "GPU-a0b1c2d3e4f5"}, []),  # ambiguous: stops
        ({"ROCR_VISIBLE_DEVICES": "0,5,1"}, ["0c"]),  # stops at the first invalid entry
        ({"ROCR_VISIBLE_DEVICES": "1,1"}, ["22"]),
    ],
)
def test_visibility_variables_follow_the_rocm_runtimes(gpus, env, expected):
    seen, how = amd.visible(amd.all_gpus(fake), env)
    assert [g.bdf[5:7] for g in seen] == expected
    for var, value in env.items():
        assert f"{var}={value}" in how


def test_an_empty_variable_hides_every_gpu_and_detect_says_which(gpus):
    with pytest.raises(MeterUnavailableError, match="ROCR_VISIBLE_DEVICES= hides all 3"):
        amd.amd_meters(fake, {"ROCR_VISIBLE_DEVICES": ""})


def test_without_hip_ids_amdsmi_order_is_used(gpus):
    fake.State.enumeration_info = False  # ROCm before 6.4
    assert [g.bdf[5:7] for g in amd.all_gpus(fake)] == ["c1", "0c", "22"]


# --------------------------------------------------------------------------- detection
def test_greenlm_detect_explains_what_it_found(gpus, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setenv("HIP_VISIBLE_DEVICES", "0,1")
    assert main(["detect", "--json", "--rapl-root", str(tmp_path / "none")]) == 0
    out = json.loads(capsys.readouterr().out)
    (st,) = [r for r in out["report"] if r["backend"] == "AMD SMI"]
    assert st["used"] and st["detail"].startswith(f"2 GPU(s) ({MI300X}), counter; visible by HIP_VISIBLE_DEVICES=0,1")
    assert "bounded by the board's maximum power cap (amdsmi) 750 W" in st["detail"]
    (nv,) = [r for r in out["report"] if r["backend"] == "NVML"]
    assert not nv["available"] and "library not found" in nv["detail"]
    gpu_meters = [m for m in out["meters"] if m["kind"] == "gpu"]
    assert [m["bdf"] for m in gpu_meters] == ["0000:0c:00.0", "0000:22:00.0"]
    assert gpu_meters[0]["device_id"] == "amdsmi:0000:0c:00.0" and gpu_meters[0]["vendor"] == "amd"


def test_detect_says_why_not_when_amdsmi_is_missing(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "amdsmi", None)
    det = detect(rapl_root=str(tmp_path / "none"))
    (st,) = [r for r in det.report if r.backend == "AMD SMI"]
    assert not st.available and "pip install 'greenlm[amd]'" in st.detail and "/opt/rocm" in st.detail


def test_amdsmi_without_its_shared_library_says_so_and_keeps_stdout_clean(monkeypatch, tmp_path, capsys):
    """The real package prints to stdout and fails at import when libamd_smi.so is absent."""
    pkg = tmp_path / "site" / "amdsmi"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "print('libamd_smi.so: cannot open shared object file: No such file or directory')\n"
        "print('Unable to find libamd_smi.so library try installing amd-smi-lib from your package manager')\n"
        "_libraries = {}\n_libraries['libamd_smi.so']\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "amdsmi", raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert main(["detect", "--json", "--rapl-root", str(tmp_path / "none")]) == 0
    out = json.loads(capsys.readouterr().out)  # still JSON: the package's prints were captured
    (st,) = [r for r in out["report"] if r["backend"] == "AMD SMI"]
    assert "libamd_smi.so could not be loaded" in st["detail"] and "cannot open shared object" in st["detail"]


def test_a_driver_that_is_not_loaded_is_reported(gpus, tmp_path):
    fake.State.fail_init = True
    with pytest.raises(MeterUnavailableError, match=r"amdsmi_init failed.*amdgpu"):
        amd.load_amdsmi()


def test_find_reads_the_context_environment(gpus):
    found = amd.find(DetectContext(pid=1, attribution="process", env={"ROCR_VISIBLE_DEVICES": "2"}))
    assert [m.gpu.bdf for m in found.meters] == ["0000:c1:00.0"]  # type: ignore[attr-defined]
    assert "whole devices" in found.detail
