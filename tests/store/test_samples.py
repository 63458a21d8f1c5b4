"""Samples: downsampling of old ones (energy exact at bucket edges), pages, bounded traces."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import pytest

from greenlm.errors import ConfigError
from greenlm.store import open_store
from greenlm.store import samples as SM
from greenlm.tracking.sink import Progress, RunStart, SampleRow
from tests.store.helpers import sql, tracked_run


def _run_with_samples(url: str, run_id: str, hours_ago: float, seconds: float, rate_hz: float, comps=("gpu:0", "cpu")):
    """A run that started ``hours_ago`` with samples every 1/rate_hz s (a varying power trace).

    Written through the store's writer like a tracker would (begin_run, add_samples). Returns
    ``{component: [(t_s, cumulative energy_j)]}`` as written.
    """
    st = open_store(url)
    started = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=hours_ago)
    st.begin_run(
        RunStart(
            run_id,
            "samples",
            started.isoformat(),
            0,
            "elsewhere",
            0.0,
            {"code": "FRA", "intensity_g_per_kwh": 44.0},
            1.0,
        )
    )
    n = int(seconds * rate_hz)
    written: dict[str, list[tuple[float, float]]] = {c: [] for c in comps}
    rows = []
    e = dict.fromkeys(comps, 0.0)
    for i in range(1, n + 1):
        t = i / rate_hz
        for k, c in enumerate(comps):
            p = 100.0 + 50.0 * math.sin(t / 7.0 + k)  # W
            e[c] += p / rate_hz
            rows.append(SampleRow(t, c, e[c], p))
            written[c].append((t, e[c]))
    # large batches (the writer path used by every flush); the row count is what matters here
    step = 20_000
    for i in range(0, len(rows), step):
        batch = rows[i : i + step]
        st.add_samples(run_id, batch, Progress(batch[-1].t_s, sum(e.values()), sum(e.values()), 0.0, dict(e)))
    return written


def _stored(url: str, run_id: str) -> dict[str, list[tuple[float, float, float | None]]]:
    out: dict[str, list[tuple[float, float, float | None]]] = {}
    for s in open_store(url, read_only=True).get_samples(run_id):
        out.setdefault(s.component, []).append((s.t_s, s.energy_j, s.power_w))
    return out


def test_plan_keeps_the_last_sample_of_each_bucket_with_its_mean_power() -> None:
    rows = [(i, float(t), "c", float(e)) for i, (t, e) in enumerate([(10, 1), (50, 5), (70, 9), (119, 12), (130, 20)])]
    delete, keep = SM.plan_buckets(rows, 60.0, {"c": (0.0, 0.0)})
    assert sorted(delete) == [0, 2]
    assert keep == [(1, 5 / 50), (3, (12 - 5) / (119 - 50)), (4, (20 - 12) / (130 - 119))]


def test_old_samples_are_downsampled_and_recent_ones_kept(store_url: str) -> None:
    # 30 h of a 1 Hz run that started 30 h ago: the first ~6 h are older than a day
    # (each flush of a running run downsamples its own part that has become old)
    written = _run_with_samples(store_url, "long-run", hours_ago=30.0, seconds=8 * 3600, rate_hz=1.0)
    before = sum(len(v) for v in written.values())
    st = open_store(store_url)
    stored = _stored(store_url, "long-run")
    (cutoff,) = sql(store_url, "SELECT samples_compacted_to_s FROM runs WHERE run_id = 'long-run'")[0]
    assert 6 * 3600 <= cutoff <= 6 * 3600 + 2 * SM.BUCKET_S  # run time older than a day, at a bucket edge
    for comp, pts in written.items():
        kept = stored[comp]
        old = [p for p in kept if p[0] < cutoff - SM.BUCKET_S]
        recent = [p for p in kept if p[0] >= cutoff]
        # one sample per minute where old ...
        assert cutoff / SM.BUCKET_S - 2 <= len(old) <= cutoff / SM.BUCKET_S
        # ... every sample where recent
        assert [(t, e) for t, e, _ in recent] == [(t, e) for t, e in pts if t >= cutoff]
        # cumulative energy is exact at every kept sample, and the mean power over each bucket
        # times its length is the energy of that bucket
        truth = dict(pts)
        prev_t, prev_e = 0.0, 0.0
        for t, e, p in kept:
            assert e == truth[t]
            assert p == pytest.approx((e - prev_e) / (t - prev_t), rel=1e-9)
            prev_t, prev_e = t, e
    after = sql(store_url, "SELECT COUNT(*) FROM samples WHERE run_id = 'long-run'")[0][0]
    assert after < before * 0.27  # 6 of 8 h kept at full resolution
    assert st.compact_samples() == 0, "nothing is looked at twice"


def _two_days_pass(url: str, run_id: str) -> None:
    """Time passes: the run's start moves two days into the past."""
    then = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=49)).isoformat()
    sql(url, "UPDATE runs SET started_at = ? WHERE run_id = ?", then, run_id)


def test_a_new_run_downsamples_the_old_ones_of_others(store_url: str) -> None:
    _run_with_samples(store_url, "old-run", hours_ago=1.0, seconds=3600, rate_hz=2.0, comps=("gpu:0",))
    _two_days_pass(store_url, "old-run")
    assert sql(store_url, "SELECT COUNT(*) FROM samples WHERE run_id = 'old-run'")[0][0] == 7200
    tracked_run(store_url)  # its sink's begin does the housekeeping
    # one per minute of the first hour, and the last sample (past the last full bucket)
    assert sql(store_url, "SELECT COUNT(*) FROM samples WHERE run_id = 'old-run'")[0][0] == 61


def test_readers_never_downsample(store_url: str) -> None:
    _run_with_samples(store_url, "old-run", hours_ago=1.0, seconds=600, rate_hz=2.0, comps=("gpu:0",))
    _two_days_pass(store_url, "old-run")
    st = open_store(store_url, read_only=True)
    st.list_runs()
    st.get_run("old-run")
    st.power_trace("old-run")
    assert sql(store_url, "SELECT COUNT(*) FROM samples WHERE run_id = 'old-run'")[0][0] == 1200


def test_pages_cover_every_sample_once_in_order(store_url: str) -> None:
    r = tracked_run(store_url, seconds=0.4)
    st = open_store(store_url, read_only=True)
    every = st.get_samples(r.run_id)
    assert len(every) > 20
    got, cursor, pages = [], None, 0
    while True:
        page = st.sample_page(r.run_id, limit=7, cursor=cursor)
        got += page.samples
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert got == every and pages == math.ceil(len(every) / 7)
    with pytest.raises(ConfigError, match="next_cursor"):
        st.sample_page(r.run_id, cursor="not-a-cursor")
    for bad in (0, -1, SM.MAX_PAGE + 1):
        with pytest.raises(ConfigError, match="limit"):
            st.sample_page(r.run_id, limit=bad)


def test_power_trace_is_bounded_and_keeps_the_energy(store_url: str) -> None:
    written = _run_with_samples(store_url, "trace", hours_ago=1.0, seconds=5000, rate_hz=2.0)
    st = open_store(store_url, read_only=True)
    trace = st.power_trace("trace", max_points=200)
    assert trace.n_samples == 2 * 10_000 and trace.bucket_s == pytest.approx(25.0)
    for s in trace.series:
        assert 190 <= len(s.points) <= 201
        energy = 0.0
        prev = 0.0
        for t, p in s.points:  # the area under the drawn curve is the measured energy
            energy += p * (t - prev)
            prev = t
        assert energy == pytest.approx(written[s.component][-1][1], rel=1e-9)
        assert all(50.0 - 1e-6 <= p <= 150.0 + 1e-6 for _, p in s.points)  # a mean of the trace
    small = st.power_trace("trace", max_points=20_000)
    assert small.bucket_s is None and len(small.series[0].points) == 10_000


def test_samples_api_pages_and_refuses_bad_cursors(store_url: str) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from greenlm.server.app import ServerSettings, create_app

    r = tracked_run(store_url, seconds=0.3)
    every = [dataclasses.asdict(s) for s in open_store(store_url).get_samples(r.run_id)]
    c = TestClient(create_app(ServerSettings(store_url=store_url)), base_url="http://127.0.0.1")
    got, url = [], f"/api/v1/runs/{r.run_id}/samples?limit=5"
    while True:
        body = c.get(url).json()
        got += body["samples"]
        if body["next_cursor"] is None:
            break
        url = f"/api/v1/runs/{r.run_id}/samples?limit=5&cursor={body['next_cursor']}"
    assert got == every
    assert c.get(f"/api/v1/runs/{r.run_id}/samples?cursor=zzzz").status_code == 422
    assert c.get(f"/api/v1/runs/{r.run_id}/samples?limit=0").status_code == 422
    assert c.get(f"/api/v1/runs/{r.run_id}/samples").json()["next_cursor"] is None  # default page holds all


def test_run_page_draws_a_bounded_number_of_points(store_url: str) -> None:
    pytest.importorskip("fastapi")
    import json
    import re

    from fastapi.testclient import TestClient

    from greenlm.server.app import ServerSettings, create_app

    _run_with_samples(store_url, "big", hours_ago=1.0, seconds=3000, rate_hz=4.0)
    c = TestClient(create_app(ServerSettings(store_url=store_url, read_only=True)), base_url="http://127.0.0.1")
    page = c.get("/runs/big")
    assert page.status_code == 200
    specs = json.loads(re.search(r'id="greenlm-charts">(.*?)</script>', page.text, re.S).group(1))
    lines = specs["power"]["data"]["datasets"]
    assert len(lines) == 2
    assert all(100 <= len(d["data"]) <= SM.TRACE_POINTS + 1 for d in lines)  # of 12000 samples each
    assert "24000 stored samples" in page.text
