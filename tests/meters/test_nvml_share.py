"""A process tree's share of a shared NVIDIA GPU, through a REPLACEMENT ``pynvml`` (fake_pynvml).

The GPU and NVML's per-process samples are simulated; the processes are real (``sleep``
children of this test), so greenlm's real process-tree code decides who is "tracked".
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from greenlm.config import TrackerConfig
from greenlm.meters import nvml
from greenlm.meters._proctree import ProcessTree
from greenlm.meters.detect import DetectContext
from greenlm.meters.nvml_share import NvmlShareMeter
from greenlm.tracking.result import RunResult
from tests.meters import fake_pynvml as fake

UUID = "GPU-5a5a5a5a-0000-0000-0000-000000000000"
NO_SUCH_PID = 2**22 + 5  # above Linux's PID_MAX_LIMIT: never a local process


@pytest.fixture
def procs():
    """Two real processes, A and B (B has a child, C), that 'use the GPU'."""
    a = subprocess.Popen(["sleep", "60"])
    b = subprocess.Popen(["sh", "-c", "sleep 60 & wait"])
    try:
        deadline = time.monotonic() + 5
        while not ProcessTree(b.pid, refresh_s=0).pids() - {b.pid} and time.monotonic() < deadline:
            time.sleep(0.01)
        (c,) = ProcessTree(b.pid, refresh_s=0).pids() - {b.pid}
        yield a.pid, b.pid, c
    finally:
        for p in (a, b):
            p.kill()
            p.wait()


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch):
    fake.install([fake.FakeGPU("NVIDIA H100 80GB HBM3", UUID, 400.0, max_limit_w=700.0)])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake.State.gpus[0]


def _share_meter(root_pid: int, **kw) -> NvmlShareMeter:
    (dev,) = nvml.nvml_meters(fake, "0", clock=fake.clock)
    tree = ProcessTree(root_pid, refresh_s=0)
    return NvmlShareMeter(fake, dev, fake.State.gpus[0], tree, refresh_s=1.0, clock=fake.clock, **kw)


def _step(meters, n: int, dt: float = 0.5) -> list[float]:
    """Advance the simulated GPU ``n`` times by ``dt``; the energy each meter charged over it."""
    before = [m.energy_j() for m in meters]
    for _ in range(n):
        fake.advance(dt)
        for m in meters:
            m.energy_j()
    return [m.energy_j() - b for m, b in zip(meters, before)]


def test_two_processes_in_known_proportions_get_shares_that_follow_them_and_add_up(gpu, procs):
    a_pid, b_pid, _ = procs
    gpu.procs = [fake.FakeProc(a_pid, 60), fake.FakeProc(b_pid, 20)]
    fake.advance(1.0)  # NVML already holds samples when the window opens
    a, b = _share_meter(a_pid), _share_meter(b_pid)
    a.start()
    b.start()
    ea, eb = _step([a, b], 10)
    device = 400.0 * 10 * 0.5
    assert (ea, eb) == (pytest.approx(0.75 * device), pytest.approx(0.25 * device))
    gpu.procs = [fake.FakeProc(a_pid, 10), fake.FakeProc(b_pid, 90)]  # the mix changes
    _step([a, b], 2)  # at most one poll (1 s) of delay
    ea, eb = _step([a, b], 10)
    assert (ea, eb) == (pytest.approx(0.1 * device), pytest.approx(0.9 * device))
    assert a.energy_j() + b.energy_j() == pytest.approx(a.device_energy_j())  # nothing lost, nothing twice
    for m in (a, b):
        assert m.provenance == "modeled" and m.describe()["scope"] == "process"
        assert m.device_energy_j() == pytest.approx(400.0 * 22 * 0.5)


def test_one_process_alone_is_measured_as_the_device(gpu, procs):
    a_pid, _, _ = procs
    gpu.procs = [fake.FakeProc(a_pid, 80)]
    a = _share_meter(a_pid)
    a.start()
    (ea,) = _step([a], 4)
    assert ea == pytest.approx(400.0 * 2.0)
    assert a.provenance == "counter" and a.describe()["scope"] == "device"
    assert a.device_energy_j() is None and a.warnings() == []
    assert a.bounds_j(ea) == (pytest.approx(ea), pytest.approx(ea))


def test_an_idle_gpu_with_nobody_on_it_is_charged_to_the_tracked_run(gpu, procs):
    a = _share_meter(procs[0])
    a.start()
    (ea,) = _step([a], 2)
    assert ea == pytest.approx(400.0) and a.provenance == "counter"


def test_a_child_of_the_tracked_process_counts_as_the_tree(gpu, procs):
    a_pid, b_pid, c_pid = procs
    gpu.procs = [fake.FakeProc(a_pid, 30), fake.FakeProc(c_pid, 30)]  # B's child runs the kernels
    fake.advance(1.0)
    b = _share_meter(b_pid)
    b.start()
    (eb,) = _step([b], 4)
    assert eb == pytest.approx(0.5 * 400.0 * 2.0)


def test_while_everyone_is_idle_the_gpu_is_split_evenly(gpu, procs):
    a_pid, b_pid, _ = procs
    gpu.procs = [fake.FakeProc(a_pid, 0), fake.FakeProc(b_pid, 0)]
    fake.advance(1.0)
    a = _share_meter(a_pid)
    a.start()
    (ea,) = _step([a], 4)
    assert ea == pytest.approx(0.5 * 800.0)
    assert "equal split while idle" in a.describe()["share_source"]


def test_the_band_of_a_share_is_plus_minus_25_percent_and_never_above_the_device(gpu, procs):
    a_pid, b_pid, _ = procs
    gpu.procs = [fake.FakeProc(a_pid, 90), fake.FakeProc(b_pid, 10)]
    fake.advance(1.0)
    a = _share_meter(a_pid)
    a.start()
    (ea,) = _step([a], 4)
    lo, hi = a.bounds_j(ea)
    assert lo == pytest.approx(0.75 * ea)
    assert hi == pytest.approx(min(1.25 * ea, 800.0))


def test_without_per_process_activity_the_whole_gpu_is_charged_with_a_warning(gpu, procs):
    a_pid, b_pid, _ = procs
    gpu.util_supported = False  # accounting is off too
    gpu.procs = [fake.FakeProc(a_pid, 60), fake.FakeProc(b_pid, 20)]
    a = _share_meter(a_pid)
    a.start()
    (ea,) = _step([a], 4)
    assert ea == pytest.approx(800.0) and a.provenance == "counter"
    (w,) = a.warnings()
    assert f"pids {b_pid}" in w and "no per-process activity" in w and "accounting mode is off" in w
    assert "whole GPU is charged" in w


def test_accounting_stands_in_when_the_driver_has_no_utilisation_samples(gpu, procs):
    a_pid, b_pid, _ = procs
    gpu.util_supported = False
    gpu.accounting = True
    gpu.procs = [fake.FakeProc(a_pid, 60), fake.FakeProc(b_pid, 20)]
    a, b = _share_meter(a_pid), _share_meter(b_pid)
    a.start()
    b.start()
    _step([a, b], 4)  # the first polls set the accounting baseline
    ea, eb = _step([a, b], 20)
    # accounting keeps integer percentages over each process's life: about 3:1
    assert ea / (ea + eb) == pytest.approx(0.75, abs=0.05)
    assert "accounting" in a.describe()["share_source"]


def test_pids_from_another_namespace_mean_the_whole_gpu_with_a_warning(gpu, procs):
    gpu.procs = [fake.FakeProc(NO_SUCH_PID, 50), fake.FakeProc(NO_SUCH_PID + 1, 50)]
    fake.advance(1.0)
    a = _share_meter(procs[0])
    a.start()
    (ea,) = _step([a], 2)
    assert ea == pytest.approx(400.0)
    assert any("another pid namespace" in w for w in a.warnings())


def test_under_mps_the_clients_are_hidden_so_the_whole_gpu_is_charged(gpu, procs):
    a_pid, b_pid, _ = procs
    gpu.procs = [fake.FakeProc(b_pid, 80)]  # NVML lists the MPS server, whose clients include A
    fake.advance(1.0)
    a = _share_meter(a_pid, pid_name=lambda p: "nvidia-cuda-mps-server" if p == b_pid else "python")
    a.start()
    (ea,) = _step([a], 2)
    assert ea == pytest.approx(400.0) and a.provenance == "counter"
    assert any("runs under MPS" in w for w in a.warnings())


def test_a_driver_that_lists_no_processes_is_reported(gpu, procs):
    gpu.proc_list_supported = False
    gpu.util_supported = False
    a = _share_meter(procs[0])
    a.start()
    (ea,) = _step([a], 2)
    assert ea == pytest.approx(400.0)
    assert any("lists no processes" in w and "counted here too" in w for w in a.warnings())


def test_process_information_is_polled_once_per_refresh_not_at_every_sample(gpu, procs):
    a = _share_meter(procs[0])
    a.start()
    for _ in range(50):
        fake.advance(0.1)
        a.energy_j()
    assert fake.State.calls["processes"] == 1 + 5  # at start, then once per simulated second


def _tracker(meters):
    from greenlm import EnergyTracker

    return EnergyTracker(meters=meters, store=False, config=TrackerConfig.resolve(interval_s=0.05, location="FRA"))


def test_two_tracked_runs_sharing_a_gpu_split_it_under_real_trackers(gpu, procs):
    a_pid, b_pid, _ = procs
    gpu.procs = [fake.FakeProc(a_pid, 75), fake.FakeProc(b_pid, 25)]
    fake.advance(1.0)
    found = {
        p: nvml.find(DetectContext(pid=p, attribution="process", env={"CUDA_VISIBLE_DEVICES": "0"}))
        for p in (a_pid, b_pid)
    }
    assert "shared GPUs are split" in found[a_pid].detail
    ta, tb = _tracker(found[a_pid].meters), _tracker(found[b_pid].meters)
    with fake.ticking(), ta, tb:
        time.sleep(1.5)
    ca, cb = ta.result.component("gpu:0"), tb.result.component("gpu:0")
    for c, want in ((ca, 0.75), (cb, 0.25)):
        assert c.scope == "process" and c.provenance == "modeled"
        assert c.energy_j / c.device_energy_j == pytest.approx(want, abs=0.08)
        assert c.low_j == pytest.approx(0.75 * c.energy_j, rel=0.01) and c.high_j <= c.device_energy_j
    device = (ca.device_energy_j + cb.device_energy_j) / 2
    assert ca.energy_j + cb.energy_j == pytest.approx(device, rel=0.1)
    assert ta.result.provenance == "modeled"
    (w,) = [w for w in ta.result.warnings if w.startswith("gpu:0")]
    assert f"pids {b_pid}" in w and "device_energy_j" in w
    d = ta.result.to_dict()["components"][0]
    assert d["device_energy_j"] == ca.device_energy_j and d["scope"] == "process"
    back = RunResult.from_dict(json.loads(ta.result.to_json())).component("gpu:0")
    assert back == ca  # the JSON form keeps the share, its band and the device total


def test_a_shared_gpu_whose_counter_fails_keeps_its_share_on_sampled_power(gpu, procs):
    a_pid, b_pid, _ = procs
    gpu.procs = [fake.FakeProc(a_pid, 50), fake.FakeProc(b_pid, 50)]
    fake.advance(1.0)
    found = nvml.find(DetectContext(pid=a_pid, attribution="process", env={"CUDA_VISIBLE_DEVICES": "0"}))
    t = _tracker(found.meters)
    with fake.ticking(), t:
        time.sleep(0.6)
        gpu.has_counter = False
        time.sleep(0.6)
    c = t.result.component("gpu:0")
    assert c.energy_j / c.device_energy_j == pytest.approx(0.5, abs=0.08)
    assert c.device_energy_j == pytest.approx(400.0 * t.result.duration_s, rel=0.15)
    assert sum("continued with" in w for w in t.result.warnings) == 1


def test_a_gpu_is_one_device_of_its_node_whatever_a_rank_calls_it():
    """The distributed merge and the node's GPU claims name a device by its physical id."""
    from greenlm.tracking.merge import device_label

    assert device_label("gpu:1", "gpu", {"device_id": "nvml:0"}) == device_label("gpu:0", "gpu", {"nvml_index": 0})
    mig_a = device_label("gpu:0", "gpu", {"device_id": "nvml:0/MIG-aaaa", "nvml_index": 0})
    mig_b = device_label("gpu:1", "gpu", {"device_id": "nvml:0/MIG-bbbb", "nvml_index": 0})
    assert mig_a != mig_b, "two MIG instances of one GPU are two devices"
    assert device_label("gpu:0", "gpu", {"device_id": "amdsmi:0000:c1:00.0"}) == "gpu:amdsmi:0000:c1:00.0"
