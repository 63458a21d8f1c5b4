"""MIG instances measured as what they are, through a REPLACEMENT ``pynvml`` (fake_pynvml; no GPU here).

Layouts: an A100 split 3g + 2g + 2x1g (7 slices), a GI split into two compute instances,
an A30 (4 slices), a GPU in MIG mode with no instance named, the pre-R470 id form, and a
driver that gives an instance its own counter.
"""

from __future__ import annotations

import sys
import time

import pytest

from greenlm.config import TrackerConfig
from greenlm.meters import nvml
from greenlm.meters.detect import DetectContext
from tests.meters import fake_pynvml as fake

GPU0 = "GPU-0aaa0aaa-0000-0000-0000-000000000000"
GPU1 = "GPU-1bbb1bbb-0000-0000-0000-000000000000"


def _a100(uuid: str, power_w: float, migs: list[fake.FakeMig] | None) -> fake.FakeGPU:
    return fake.FakeGPU("NVIDIA A100-SXM4-80GB", uuid, power_w, mig=migs)


@pytest.fixture
def layout(monkeypatch: pytest.MonkeyPatch):
    migs = [
        fake.FakeMig("MIG-3g00aaaa-0000-0000-0000-000000000001", gi=1, ci=0, gi_slices=3, ci_slices=3),
        fake.FakeMig("MIG-2g00bbbb-0000-0000-0000-000000000002", gi=5, ci=0, gi_slices=2, ci_slices=2),
        fake.FakeMig("MIG-1g00cccc-0000-0000-0000-000000000003", gi=13, ci=0, gi_slices=1, ci_slices=1),
        fake.FakeMig("MIG-1g00dddd-0000-0000-0000-000000000004", gi=14, ci=0, gi_slices=1, ci_slices=1),
    ]
    fake.install([_a100(GPU0, 350.0, migs), _a100(GPU1, 200.0, None)])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake.State.gpus


def test_a_mig_instance_is_charged_its_slice_share_of_its_gpu(layout):
    (m,) = nvml.nvml_meters(fake, "MIG-3g00aaaa", clock=fake.clock)
    assert m.name == "gpu:0" and m.provenance == "modeled"
    info = m.describe()
    assert info["scope"] == "instance" and info["share"] == pytest.approx(3 / 7)
    assert info["mig_uuid"].startswith("MIG-3g00aaaa") and "3 of the GPU's 7 compute slices" in info["share_source"]
    m.start()
    fake.advance(2.0)
    assert m.energy_j() == pytest.approx(700.0 * 3 / 7)  # not the GPU's 700 J
    assert m.device_energy_j() == pytest.approx(700.0)


def test_several_instances_of_one_gpu_add_up_to_at_most_the_gpu(layout):
    meters = nvml.nvml_meters(fake, "MIG-3g00aaaa,MIG-2g00bbbb,MIG-1g00cccc,MIG-1g00dddd", clock=fake.clock)
    assert [m.name for m in meters] == ["gpu:0", "gpu:1", "gpu:2", "gpu:3"]
    for m in meters:
        m.start()
    fake.advance(1.0)
    energies = [m.energy_j() for m in meters]
    assert energies == pytest.approx([150.0, 100.0, 50.0, 50.0])
    assert sum(energies) == pytest.approx(350.0)  # the whole GPU once, split by slices
    assert len({m.describe()["device_id"] for m in meters}) == 4  # distributed runs keep each


def test_compute_instances_inside_one_gpu_instance_split_it_by_compute_slices(monkeypatch):
    migs = [
        fake.FakeMig("MIG-ci000001", gi=2, ci=0, gi_slices=3, ci_slices=2),
        fake.FakeMig("MIG-ci000002", gi=2, ci=2, gi_slices=3, ci_slices=1),
    ]
    fake.install([_a100(GPU0, 280.0, migs)])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    a, b = nvml.nvml_meters(fake, "MIG-ci000001,MIG-ci000002", clock=fake.clock)
    assert (a.share, b.share) == (pytest.approx(2 / 7), pytest.approx(1 / 7))


def test_an_a30_has_four_slices(monkeypatch):
    migs = [fake.FakeMig("MIG-a30a0001", gi=1, ci=0, gi_slices=2, ci_slices=2)]
    fake.install([fake.FakeGPU("NVIDIA A30", GPU0, 165.0, mig=migs, full_slices=4, max_limit_w=165.0)])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    (m,) = nvml.nvml_meters(fake, "MIG-a30a0001", clock=fake.clock)
    assert m.share == pytest.approx(0.5) and "2 of the GPU's 4" in m.share_source


def test_without_profile_information_the_share_is_among_existing_instances_and_says_so(layout):
    layout[0].full_slices = None
    meters, warnings = nvml.build_meters(fake, "MIG-3g00aaaa", clock=fake.clock)
    assert meters[0].share == pytest.approx(3 / 7)  # 3 of 3+2+1+1
    assert any("slice count" in w and "overstates" in w for w in warnings)


def test_the_pre_r470_mig_id_form_is_understood(layout):
    (v,) = nvml.visible_gpus(fake, f"MIG-{GPU0}/5/0")
    assert v.index == 0 and v.mig_uuid.startswith("MIG-2g00bbbb")
    (v,) = nvml.visible_gpus(fake, "MIG-GPU-0aaa/13/0")  # a prefix of the GPU uuid
    assert v.mig_uuid.startswith("MIG-1g00cccc")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ("MIG-2g00bbbb,MIG-3g00aaaa", ["MIG-2g00bbbb", "MIG-3g00aaaa"]),  # CUDA order
        ("MIG-1g00", []),  # ambiguous prefix: CUDA stops here
        ("MIG-3g00aaaa,MIG-nope,MIG-2g00bbbb", ["MIG-3g00aaaa"]),  # stops at the first invalid entry
        ("MIG-3g00aaaa,MIG-3g00aaaa", ["MIG-3g00aaaa"]),  # named twice, measured once
        ("1,MIG-3g00aaaa", [None, "MIG-3g00aaaa"]),  # the plain GPU, then an instance
        ("0,MIG-3g00aaaa", [None]),  # GPU 0 whole and one of its instances: once, whole
        ("MIG-3g00aaaa,0", [None]),
    ],
)
def test_mig_ids_in_cuda_visible_devices(layout, env, expected):
    got = [v.mig_uuid[:12] if v.mig_uuid else None for v in nvml.visible_gpus(fake, env)]
    assert got == expected


def test_a_gpu_in_mig_mode_without_an_instance_named_is_measured_whole_once(layout):
    meters, warnings = nvml.build_meters(fake, None, clock=fake.clock)
    assert [m.name for m in meters] == ["gpu:0", "gpu:1"]  # two GPUs, not 4 instances + 1
    assert meters[0].provenance == "counter" and meters[0].describe()["scope"] == "device"
    (w,) = [w for w in warnings if "MIG mode" in w]
    assert "gpu:0" in w and "measured, once" in w and "CUDA_VISIBLE_DEVICES=MIG-" in w


def test_an_instance_with_its_own_counter_is_read_directly(layout):
    layout[0].mig[0].has_counter = True
    (m,) = nvml.nvml_meters(fake, "MIG-3g00aaaa", clock=fake.clock)
    assert m.provenance == "counter" and m.describe()["scope"] == "instance"
    m.start()
    fake.advance(1.0)
    assert m.energy_j() == pytest.approx(150.0)  # the instance's own counter: 3/7 of 350 W in the fake


def test_a_mig_run_under_the_tracker_keeps_the_gpu_total_and_a_band(layout, tmp_path):
    from greenlm import EnergyTracker

    found = nvml.find(DetectContext(pid=1, attribution="machine", env={"CUDA_VISIBLE_DEVICES": "MIG-3g00aaaa"}))
    assert "MIG instance" in found.detail
    config = TrackerConfig.resolve(interval_s=0.02, location="FRA")
    t = EnergyTracker(meters=found.meters, store=False, config=config)
    with fake.ticking(), t:
        time.sleep(1.3)  # more than one floor window
    c = t.result.component("gpu:0")
    assert c.scope == "instance" and c.provenance == "modeled"
    assert c.device_energy_j == pytest.approx(350.0 * t.result.duration_s, rel=0.15)
    assert c.energy_j == pytest.approx(c.device_energy_j * 3 / 7, rel=0.02)
    # the GPU drew 350 W throughout: idle is taken as 175 W, and the band runs from
    # 3/7 of idle (others drew the rest) to all but 4/7 of idle (this instance drew the rest)
    e = c.device_energy_j
    assert c.low_j == pytest.approx(3 / 7 * 0.5 * e, rel=0.1)
    assert c.high_j == pytest.approx(e - 4 / 7 * 0.5 * e, rel=0.1)
    assert c.low_j < c.energy_j < c.high_j < e
    assert t.result.to_dict()["components"][0]["device_energy_j"] == c.device_energy_j


def test_a_failing_gpu_counter_under_a_mig_instance_continues_with_the_same_share_of_power(layout, tmp_path):
    from greenlm import EnergyTracker

    (m,) = nvml.nvml_meters(fake, "MIG-2g00bbbb")
    config = TrackerConfig.resolve(interval_s=0.02, location="FRA")
    t = EnergyTracker(meters=[m], store=False, config=config)
    with fake.ticking(), t:
        time.sleep(0.2)
        layout[0].has_counter = False
        time.sleep(0.3)
    r = t.result
    c = r.component("gpu:0")
    assert c.energy_j == pytest.approx(350.0 * 2 / 7 * r.duration_s, rel=0.2)
    assert c.device_energy_j == pytest.approx(350.0 * r.duration_s, rel=0.2)
    assert sum("continued with modeled" in w for w in r.warnings) == 1
