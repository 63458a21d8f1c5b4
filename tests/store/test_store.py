"""The run store: schema versioning, concurrent writers, crash survival, status of dead runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import sqlalchemy as sa

from greenlm import EnergyTracker
from greenlm.errors import RunNotFoundError, StoreError
from greenlm.meters import ReplayMeter
from greenlm.store import open_store
from greenlm.store import schema as S


def tracked_run(store_url, project="p", seconds=0.05, power_w=10.0):
    t = EnergyTracker(
        project=project,
        location="DEU",
        interval_s=0.01,
        store=store_url,
        meters=[ReplayMeter("gpu:0", "gpu", power_w=power_w)],
    )
    with t:
        time.sleep(seconds)
    return t.result


def test_new_store_is_migrated_to_the_current_schema(store_url):
    st = open_store(store_url)
    assert st.schema_version == S.SCHEMA_VERSION
    insp = sa.inspect(st.engine)
    assert {"runs", "components", "phases", "samples", "greenlm_meta"} <= set(insp.get_table_names())


def test_a_store_from_a_newer_greenlm_is_refused(store_url):
    st = open_store(store_url)
    with st.begin() as conn:
        conn.execute(S.meta.update().values(value=str(S.SCHEMA_VERSION + 1)))
    from greenlm.store import RunStore

    with pytest.raises(StoreError, match="upgrade greenlm"):
        RunStore(store_url)


def test_completed_run_is_stored_with_samples_and_readable_by_prefix(store_url):
    r = tracked_run(store_url, seconds=0.2)
    st = open_store(store_url)
    got = st.get_run(r.run_id[:8])
    assert got.run_id == r.run_id and got.status == "completed" and not got.partial
    assert got.result.energy_j == pytest.approx(r.energy_j)
    samples = st.get_samples(r.run_id)
    assert len(samples) >= 5
    assert samples[-1].energy_j == pytest.approx(r.energy_j, rel=1e-6)
    assert [s.t_s for s in samples] == sorted(s.t_s for s in samples)


def test_unknown_run_is_a_clear_error(store_url):
    with pytest.raises(RunNotFoundError, match="runs list"):
        open_store(store_url).get_run("deadbeef")


def test_save_is_idempotent(store_url):
    r = tracked_run(store_url)
    st = open_store(store_url)
    st.save_result(r)
    st.save_result(r.to_dict())
    assert [d.run_id for d in st.list_runs()] == [r.run_id]


WRITER = textwrap.dedent("""
    import sys, time
    from greenlm import EnergyTracker
    from greenlm.meters import ReplayMeter
    url, n, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    for i in range(n):
        t = EnergyTracker(project=tag, location="FRA", interval_s=0.005, flush_interval_s=0.01,
                          store=url, meters=[ReplayMeter("gpu:0", "gpu", power_w=5.0)])
        with t:
            time.sleep(0.03)
""")


def test_concurrent_writers_lose_no_run(store_url, tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    procs = [subprocess.Popen([sys.executable, str(script), store_url, "8", f"w{k}"]) for k in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    runs = open_store(store_url).list_runs()
    assert len(runs) == 32
    assert all(r.status == "completed" for r in runs)
    assert {r.project for r in runs} == {"w0", "w1", "w2", "w3"}


VICTIM = textwrap.dedent("""
    import sys, time
    from greenlm import EnergyTracker
    from greenlm.meters import ReplayMeter
    t = EnergyTracker(project="victim", location="FRA", interval_s=0.02, flush_interval_s=0.1,
                      store=sys.argv[1], meters=[ReplayMeter("gpu:0", "gpu", power_w=100.0)])
    t.start()
    print(t.run_id, flush=True)
    time.sleep(60)
""")


def test_sigkilled_run_shows_interrupted_with_energy_up_to_last_flush(store_url, tmp_path):
    script = tmp_path / "victim.py"
    script.write_text(VICTIM)
    p = subprocess.Popen([sys.executable, str(script), store_url], stdout=subprocess.PIPE, text=True)
    run_id = p.stdout.readline().strip()
    time.sleep(1.0)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    got = open_store(store_url).get_run(run_id)
    assert got.status == "interrupted" and got.partial
    d = got.to_dict()
    # ~1 s at 100 W, minus at most one flush interval
    assert 50.0 < d["energy_j"] <= 110.0
    assert d["components"][0]["name"] == "gpu:0" and d["components"][0]["provenance"] == "sampled"
    assert open_store(store_url).get_samples(run_id)
    assert any("killed" in w for w in d["warnings"])


SIGTERMED = VICTIM.replace("print(t.run_id, flush=True)", "print(t.run_id, flush=True)")


def test_sigterm_flushes_and_marks_interrupted(store_url, tmp_path):
    script = tmp_path / "term.py"
    script.write_text(SIGTERMED)
    p = subprocess.Popen([sys.executable, str(script), store_url], stdout=subprocess.PIPE, text=True)
    run_id = p.stdout.readline().strip()
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == -signal.SIGTERM  # default behaviour preserved after the flush
    d = open_store(store_url).get_run(run_id).to_dict()
    assert d["status"] == "interrupted" and d["error"] == "SIGTERM"
    assert d["energy_j"] > 20.0 and d["ended_at"]


def test_list_filters_by_project_and_status(store_url):
    tracked_run(store_url, project="a")
    tracked_run(store_url, project="b")
    st = open_store(store_url)
    assert [r.project for r in st.list_runs(project="a")] == ["a"]
    assert len(st.list_runs(status="completed")) == 2
    assert st.list_runs(status="failed") == []
    assert len(st.list_runs(search="b")) >= 1


def test_bad_store_url_is_a_clear_error():
    with pytest.raises(StoreError, match="sqlite:///"):
        open_store("not a url")


def test_store_failure_never_breaks_the_job(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    t = EnergyTracker(
        location="DEU",
        interval_s=0.01,
        store=f"sqlite:///{blocker}/sub/runs.db",
        meters=[ReplayMeter("gpu:0", "gpu", power_w=1.0)],
    )
    with t:
        time.sleep(0.05)
    assert t.result.status == "completed"
    assert any("not stored" in w for w in t.result.warnings)
    json.dumps(t.result.to_dict())


def test_rank_rows_are_hidden_only_once_their_merged_run_exists(store_url):
    import dataclasses

    st = open_store(store_url)
    r = tracked_run(store_url)
    rank_row = dataclasses.replace(
        r, run_id="rank1row", metadata={"distributed": {"role": "rank", "group_run_id": "g"}}
    )
    st.save_result(rank_row)
    assert "rank1row" in [d.run_id for d in st.list_runs()]  # no merged run: the rank row is the record
    group = dataclasses.replace(r, run_id="grouprow", metadata={"distributed": {"role": "group", "group_run_id": "g"}})
    st.save_result(group)
    ids = [d.run_id for d in st.list_runs()]
    assert "grouprow" in ids and "rank1row" not in ids
    assert "rank1row" in [d.run_id for d in st.list_runs(include_rank_rows=True)]
