"""The typed read side: StoredRun around a RunResult, one JSON form, partial runs built like final ones."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from greenlm.carbon.price import DEFAULT_CURRENCY, DEFAULT_PRICE_PER_KWH
from greenlm.store import StoredRun, open_store
from greenlm.tracking.result import JSON_KEYS, RunResult
from greenlm.tracking.sink import RunStart
from tests.store.helpers import killed_row, sql, tracked_run

KILLED = textwrap.dedent("""
    import sys, time
    from greenlm import EnergyTracker
    from greenlm.meters import ReplayMeter
    from greenlm.meters.base import Band
    t = EnergyTracker(project="priced", location="FRA", pue=1.3, price_per_kwh=0.5, currency="EUR",
                      interval_s=0.02, flush_interval_s=0.1, store=sys.argv[1],
                      meters=[ReplayMeter("gpu:0", "gpu", power_w=100.0, band=Band(0.8, 1.25, "test band")),
                              ReplayMeter("ram", "ram", power_w=10.0, provenance="modeled")])
    t.start()
    print(t.run_id, flush=True)
    time.sleep(60)
""")


def test_json_keys_are_the_contract() -> None:
    r = RunResult.from_dict(
        {
            "run_id": "x",
            "project": "p",
            "status": "completed",
            "started_at": "2025-01-01T00:00:00+00:00",
            "duration_s": 1.0,
            "energy_j": 1.0,
            "facility_energy_j": 1.0,
            "energy_kwh": 1 / 3.6e6,
            "co2e_g": 0.0,
            "cost": 0.0,
            "currency": "USD",
            "pue": 1.0,
            "location": {"code": "FRA", "intensity_g_per_kwh": 44.0},
        }
    )
    assert tuple(r.to_dict()) == JSON_KEYS
    readme = {"run_id", "project", "status", "started_at", "duration_s", "energy_j", "facility_energy_j"}
    readme |= {"energy_kwh", "co2e_g", "cost", "currency", "pue", "location", "components", "phases", "warnings"}
    readme |= {"energy_low_j", "co2e_high_g", "metadata", "forecast"}
    assert readme <= set(JSON_KEYS)


def test_a_finished_run_reads_back_as_its_result(store_url: str) -> None:
    r = tracked_run(store_url)
    got = open_store(store_url, read_only=True).get_run(r.run_id)
    assert isinstance(got, StoredRun) and not got.partial and got.damaged is None
    assert got.result == dataclasses.replace(r, timeline=got.result.timeline)
    assert got.to_dict() == r.to_dict()
    assert got.host and got.updated_at and got.updated_at <= time.time()


def test_the_status_is_the_rows(store_url: str) -> None:
    r = tracked_run(store_url)
    open_store(store_url).mark(r.run_id, "failed")  # e.g. a distributed run whose rank died
    got = open_store(store_url, read_only=True).get_run(r.run_id)
    assert got.status == "failed" and got.result.status == "failed" and got.to_dict()["status"] == "failed"


def test_a_killed_run_is_a_full_result_built_like_the_trackers(store_url: str, tmp_path: Path) -> None:
    script = tmp_path / "killed.py"
    script.write_text(KILLED)
    p = subprocess.Popen([sys.executable, str(script), store_url], stdout=subprocess.PIPE, text=True)
    run_id = p.stdout.readline().strip()
    time.sleep(1.0)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    out = subprocess.run(
        [sys.executable, "-m", "greenlm", "runs", "show", run_id, "--store", store_url, "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    d = json.loads(out.stdout)
    assert tuple(d) == JSON_KEYS, "the same keys as a finished run"
    assert d["status"] == "interrupted" and d["ended_at"] is None
    gpu, ram = (next(c for c in d["components"] if c["name"] == n) for n in ("gpu:0", "ram"))
    # figures from the last flush, with the carbon factors recorded at the start
    assert 50.0 < gpu["energy_j"] <= 110.0
    assert gpu["low_j"] == pytest.approx(0.8 * gpu["energy_j"]) and gpu["high_j"] == pytest.approx(
        1.25 * gpu["energy_j"]
    )
    assert gpu["detail"] == "test band" and ram["provenance"] == "modeled"
    assert d["energy_j"] == pytest.approx(gpu["energy_j"] + ram["energy_j"])
    assert d["energy_low_j"] == pytest.approx(gpu["low_j"] + ram["low_j"])
    assert d["facility_energy_j"] == pytest.approx(1.3 * d["energy_j"])
    kwh = d["facility_energy_j"] / 3.6e6
    assert d["energy_kwh"] == pytest.approx(kwh)
    assert d["co2e_g"] == pytest.approx(kwh * d["location"]["intensity_g_per_kwh"])
    assert d["co2e_high_g"] == pytest.approx(d["energy_high_j"] * 1.3 / 3.6e6 * d["location"]["intensity_g_per_kwh"])
    assert d["cost"] == pytest.approx(kwh * 0.5) and d["currency"] == "EUR"
    assert d["price_per_kwh"] == 0.5 and d["price_source"] == "user value" and d["pue_source"] == "user value"
    assert d["provenance"] == "modeled"  # the weakest of its components
    assert d["location"]["code"] == "FRA" and d["location"]["source"]
    assert any("killed" in w for w in d["warnings"])


def test_a_killed_run_from_an_older_greenlm_says_which_defaults_it_used(store_url: str) -> None:
    old_start = {
        "location": {"code": "FRA", "intensity_g_per_kwh": 44.0},
        "meters": [{"name": "gpu:0", "kind": "gpu", "provenance": "sampled", "band": "hardware counter"}],
        "metadata": {"tag": "old"},
    }
    killed_row(store_url, "old-killed", energy_j=7.2e6, start_json=old_start)
    got = open_store(store_url, read_only=True).get_run("old-killed")
    r = got.result
    assert got.partial and got.status == "interrupted" and r is not None
    assert r.price_per_kwh == DEFAULT_PRICE_PER_KWH and r.currency == DEFAULT_CURRENCY
    assert "not recorded" in r.price_source and "not recorded" in r.pue_source
    assert r.cost == pytest.approx(r.energy_kwh * DEFAULT_PRICE_PER_KWH)
    assert r.energy_low_j == r.energy_j == r.energy_high_j == pytest.approx(7.2e6)
    assert any("price was not recorded" in w for w in r.warnings)
    assert any("no uncertainty band recorded for gpu:0" in w for w in r.warnings)
    assert r.metadata == {"tag": "old"}


def test_creating_a_run_by_id_is_race_free(store_url: str) -> None:
    st = open_store(store_url)
    start = RunStart(
        "same-id", "race", "2025-01-01T00:00:00+00:00", 0, "h", 0.0, {"code": "FRA", "intensity_g_per_kwh": 1.0}, 1.0
    )
    barrier = threading.Barrier(8)
    got: list[object] = []

    def create() -> None:
        barrier.wait()
        try:
            got.append(st.begin_run(start))
        except Exception as e:
            got.append(e)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(str, got)) == ["False"] * 7 + ["True"]
    assert sql(store_url, "SELECT COUNT(*) FROM runs WHERE run_id = 'same-id'") == [(1,)]
