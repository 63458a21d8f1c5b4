"""The CPU power model against recorded /proc data (cpuinfo and two /proc/stat snapshots)."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from greenlm.meters import cpu_model
from greenlm.meters._proctree import machine_busy_s
from greenlm.meters.cpu_model import CpuModelMeter, cpu_spec, match_cpu, read_model_name
from greenlm.meters.ram_model import W_PER_GB, RamModelMeter

PROC = Path(__file__).parent.parent / "data" / "proc"


def test_model_name_is_read_from_cpuinfo():
    assert read_model_name(PROC / "cpuinfo_xeon8375c") == "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"
    assert read_model_name(PROC / "cpuinfo_epyc7763") == "AMD EPYC 7763 64-Core Processor"


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [("cpuinfo_xeon8375c", "Intel Xeon Platinum 8375C"), ("cpuinfo_epyc7763", "AMD EPYC 7763")],
)
def test_fuzzy_match_finds_the_table_row(cpuinfo, expected):
    row = match_cpu(read_model_name(PROC / cpuinfo))
    assert row is not None and row["model"] == expected and float(row["tdp_w"]) > 0


def test_similar_model_numbers_do_not_cross_match():
    row = match_cpu("Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz")
    assert row is None or "6248R" in row["model"]


def test_unknown_cpu_uses_documented_default_and_says_so():
    spec = cpu_spec(read_model_name(PROC / "cpuinfo_generic_vm"))
    p10, med, p90 = cpu_model.default_tdp_per_thread_w()
    assert spec.defaulted and spec.tdp_per_thread_w == med
    assert spec.tdp_per_thread_low_w == p10 < med < p90 == spec.tdp_per_thread_high_w
    assert "not in cpus.csv" in spec.source and "GREENLM_CPU_TDP_W" in spec.source


def test_user_tdp_override_wins():
    spec = cpu_spec("AMD EPYC 7B13", tdp_w=100.0, threads=10)
    assert spec.tdp_per_thread_w == 10.0 and spec.source.startswith("user value")


def test_machine_utilisation_from_recorded_proc_stat(monkeypatch):
    monkeypatch.setattr(psutil, "PROCFS_PATH", str(PROC / "a"))
    a = machine_busy_s()
    monkeypatch.setattr(psutil, "PROCFS_PATH", str(PROC / "b"))
    b = machine_busy_s()
    # 120 user + 30 system ticks at USER_HZ=100 over the snapshot interval
    assert b - a == pytest.approx(1.5, rel=1e-6)


class FakeTree:
    """Stands in for the process tree: reports a scripted cumulative CPU time."""

    def __init__(self, values):
        self.values = iter(values)

    def cpu_busy_s(self):
        return next(self.values)


def test_power_model_attributes_busy_threads_and_idle_share(monkeypatch):
    # Machine: 1.5 busy threads of 2 over 1 s (recorded /proc/stat); process: 1.0 of them.
    snaps = iter([str(PROC / "a"), str(PROC / "b")])
    real = cpu_model.machine_busy_s

    def busy():
        monkeypatch.setattr(psutil, "PROCFS_PATH", next(snaps))
        return real()

    monkeypatch.setattr(cpu_model, "machine_busy_s", busy)
    spec = cpu_spec("x", tdp_w=40.0, threads=2)  # 20 W per thread
    clock = iter([0.0, 1.0]).__next__
    m = CpuModelMeter(spec, tree=FakeTree([100.0, 101.0]))
    m.threads = 2
    m._clock = clock
    m.start()
    e = m.energy_j()
    idle = cpu_model.IDLE_FRACTION[1]
    expected = 20.0 * ((1 - idle) * 1.0 + idle * 2 * (1.0 / 1.5))
    assert e == pytest.approx(expected)
    lo, hi = m.bounds_j(e)
    assert lo < e < hi


def test_machine_attribution_charges_all_busy_threads(monkeypatch):
    spec = cpu_spec("x", tdp_w=40.0, threads=2)
    m = CpuModelMeter(spec, attribution="machine", tree=FakeTree([0.0, 0.0]))
    m.threads = 2
    p = m._power(20.0, 0.1, 1.0, proc_busy=0.0, mach_busy=2.0)
    assert p == pytest.approx(40.0)  # full load: TDP
    assert m._power(20.0, 0.1, 1.0, proc_busy=0.0, mach_busy=0.0) == pytest.approx(4.0)  # idle floor


def test_real_busy_loop_is_charged_more_than_sleep():
    import time

    spec = cpu_spec("x", tdp_w=10.0, threads=1)
    m = CpuModelMeter(spec)
    m.start()
    time.sleep(0.3)
    idle_e = m.energy_j()
    t = time.perf_counter()
    while time.perf_counter() - t < 0.3:
        pass
    busy_e = m.energy_j() - idle_e
    assert busy_e > 3 * max(idle_e, 1e-9)
    # one busy thread of 10 W at most, plus its share of the idle floor of the visible threads
    assert 0.5 < busy_e / 0.3 <= 10.0 * (1 + cpu_model.IDLE_FRACTION[1] * m.threads) + 1e-6


def test_ram_model_is_w_per_gb_of_resident_memory():
    m = RamModelMeter()
    m._clock = iter([0.0, 2.0]).__next__
    m.start()
    e = m.energy_j()
    rss_gb = psutil.Process().memory_info().rss / 1024**3
    assert e == pytest.approx(W_PER_GB[1] * rss_gb * 2.0, rel=0.05)
    assert m.band.low < 1 < m.band.high
