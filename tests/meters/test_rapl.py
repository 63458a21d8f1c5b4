"""RAPL against fixture powercap trees (no RAPL on this machine: the sysfs reader is the real code)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from greenlm.errors import MeterUnavailableError
from greenlm.meters import rapl
from greenlm.meters.detect import detect


def make_domain(root: Path, dirname: str, name: str, energy_uj: int, max_uj: int = 262143328850) -> Path:
    d = root / dirname
    d.mkdir(parents=True)
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text(f"{energy_uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return d


def set_energy(d: Path, uj: int) -> None:
    (d / "energy_uj").write_text(f"{uj}\n")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "powercap"
    make_domain(root, "intel-rapl:0", "package-0", 1_000_000)
    make_domain(root, "intel-rapl:0:0", "core", 500_000)
    make_domain(root, "intel-rapl:0:1", "dram", 200_000)
    make_domain(root, "intel-rapl:1", "package-1", 3_000_000)
    make_domain(root, "intel-rapl:2", "psys", 9_000_000)
    make_domain(root, "intel-rapl-mmio:0", "package-0", 1_000_000)  # MMIO duplicate of package-0
    return root


def test_discovers_packages_and_dram_without_duplicates(tree: Path):
    names = sorted(d.name for d in rapl.discover(tree))
    assert names == ["dram-0", "package-0", "package-1"]


def test_energy_is_the_counter_delta_in_joules(tree: Path):
    meters = {m.name: m for m in rapl.rapl_meters(tree)}
    pkg = meters["cpu:package-0"]
    pkg.start()
    set_energy(tree / "intel-rapl:0", 1_000_000 + 2_500_000)
    assert pkg.energy_j() == pytest.approx(2.5)
    set_energy(tree / "intel-rapl:0", 1_000_000 + 4_000_000)
    assert pkg.energy_j() == pytest.approx(4.0)
    assert pkg.provenance == "counter" and pkg.kind == "cpu"
    assert meters["ram:dram-0"].kind == "ram"


def test_counter_wraparound_at_max_energy_range(tmp_path: Path):
    root = tmp_path / "pc"
    d = make_domain(root, "intel-rapl:0", "package-0", 990_000, max_uj=1_000_000)
    (m,) = [x for x in rapl.rapl_meters(root) if x.kind == "cpu"]
    m.start()
    set_energy(d, 30_000)  # wrapped: 10_000 to the top, then 30_000
    assert m.energy_j() == pytest.approx(0.04)
    set_energy(d, 530_000)
    assert m.energy_j() == pytest.approx(0.54)


def test_missing_tree_says_so(tmp_path: Path):
    with pytest.raises(MeterUnavailableError, match="missing"):
        rapl.discover(tmp_path / "nope")


def test_missing_domains_say_so(tmp_path: Path):
    (tmp_path / "pc").mkdir()
    with pytest.raises(MeterUnavailableError, match="no intel-rapl domains"):
        rapl.discover(tmp_path / "pc")


@pytest.fixture
def unreadable(monkeypatch: pytest.MonkeyPatch):
    """Make mode-000 files unreadable even for root (root bypasses the kernel check)."""
    real = rapl._read_int

    def checked(path: Path) -> int:
        if not os.stat(path).st_mode & (stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(rapl, "_read_int", checked)


def test_root_only_files_explain_the_permission_fix_and_fall_back(tmp_path: Path, unreadable):
    root = tmp_path / "pc"
    d = make_domain(root, "intel-rapl:0", "package-0", 5)
    os.chmod(d / "energy_uj", 0)
    with pytest.raises(MeterUnavailableError) as e:
        rapl.discover(root)
    assert "CVE-2020-8694" in e.value.reason and "chmod" in e.value.reason
    det = detect(rapl_root=str(root), gpus=False)
    assert [m.name for m in det.meters] == ["cpu", "ram"]
    assert {m.provenance for m in det.meters} == {"modeled"}
    assert any("CVE-2020-8694" in w for w in det.warnings)


def test_detect_prefers_rapl_over_the_model(tree: Path):
    det = detect(rapl_root=str(tree), gpus=False)
    assert sorted(m.name for m in det.meters) == ["cpu:package-0", "cpu:package-1", "ram:dram-0"]
    used = {r.backend: r.used for r in det.report}
    assert used["RAPL"] and not used["CPU model"] and not used["RAM model"]


def test_rapl_becoming_unreadable_mid_run_falls_back_to_the_model(tree: Path, unreadable):
    import time

    from greenlm import EnergyTracker

    meters = [m for m in rapl.rapl_meters(tree) if m.name == "cpu:package-0"]
    t = EnergyTracker(meters=meters, store=False, location="FRA", interval_s=0.02)
    with t:
        set_energy(tree / "intel-rapl:0", 1_000_000 + 5_000_000)
        time.sleep(0.1)
        os.chmod(tree / "intel-rapl:0" / "energy_uj", 0)
        time.sleep(0.1)
    c = t.result.component("cpu:package-0")
    assert c.provenance == "modeled" and c.energy_j >= 5.0
    assert any("continued with modeled" in w for w in t.result.warnings)
