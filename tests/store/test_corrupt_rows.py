"""One corrupt row never breaks a list view: it is listed as damaged, with its id and reason.

Every case damages one row with plain sqlite3 (as a crashed writer, a manual edit, a disk
error or a buggy older version could) next to healthy runs, then reads the store the way a
user does: ``runs list`` / ``show`` / ``export``, the dashboard's pages and the read API.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from greenlm.cli import main
from greenlm.store import open_store
from tests.store.helpers import killed_row, result_json, sql, tracked_run


def _edit_result(url: str, rid: str, change: Callable[[dict[str, Any]], Any]) -> None:
    d = result_json(url, rid)
    change(d)
    sql(url, "UPDATE runs SET result_json = ? WHERE run_id = ?", json.dumps(d), rid)


def _drop(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda d: d.pop(key)


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda d: d.__setitem__(key, value)


#: case -> (kind of row damaged, how, what the reason names)
CASES: dict[str, tuple[str, Callable[[str, str], None], str]] = {
    "result_json is not JSON": (
        "done",
        lambda u, r: sql(u, "UPDATE runs SET result_json = '{\"run_id\": ' WHERE run_id = ?", r),
        "not valid JSON",
    ),
    "result_json is a list": (
        "done",
        lambda u, r: sql(u, "UPDATE runs SET result_json = '[1, 2, 3]' WHERE run_id = ?", r),
        "not a JSON object",
    ),
    "result_json lacks energy_j": ("done", lambda u, r: _edit_result(u, r, _drop("energy_j")), "energy_j"),
    "energy_j is text": ("done", lambda u, r: _edit_result(u, r, _set("energy_j", "lots")), "lots"),
    "energy_j is null": ("done", lambda u, r: _edit_result(u, r, _set("energy_j", None)), "result_json"),
    "location is a string": ("done", lambda u, r: _edit_result(u, r, _set("location", "FRA")), "result_json"),
    "a component has no name": (
        "done",
        lambda u, r: _edit_result(u, r, lambda d: d["components"][0].pop("name")),
        "name",
    ),
    "result_json of another run": (
        "done",
        lambda u, r: _edit_result(u, r, _set("run_id", "someone-else")),
        "someone-else",
    ),
    "status column unknown": (
        "done",
        lambda u, r: sql(u, "UPDATE runs SET status = 'exploded' WHERE run_id = ?", r),
        "exploded",
    ),
    "start_json is not JSON": (
        "killed",
        lambda u, r: sql(u, "UPDATE runs SET start_json = '{' WHERE run_id = ?", r),
        "start_json",
    ),
    "a flushed component energy is text": (
        "killed",
        lambda u, r: sql(u, "UPDATE components SET energy_j = 'abc' WHERE run_id = ?", r),
        "abc",
    ),
    "a meter band is text": (
        "killed",
        lambda u, r: sql(
            u,
            "UPDATE runs SET start_json = json_set(start_json, '$.meters[0].band_low', 'wide') WHERE run_id = ?",
            r,
        ),
        "wide",
    ),
    "pid is text": (
        "killed",
        lambda u, r: sql(u, "UPDATE runs SET pid = 'not-a-pid' WHERE run_id = ?", r),
        "not-a-pid",
    ),
    "duration_s is text": (
        "killed",
        lambda u, r: sql(u, "UPDATE runs SET duration_s = 'long' WHERE run_id = ?", r),
        "long",
    ),
}


def _damage(url: str, case: str, rid: str) -> None:
    kind, how, _ = CASES[case]
    if kind == "done":
        r = tracked_run(url, project="victim")
        st = open_store(url)
        st.save_result(dataclasses.replace(r, run_id=rid))
        st.delete_run(r.run_id)
    else:
        killed_row(url, rid)
    how(url, rid)


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_damaged_row_is_listed_with_its_reason_and_the_others_read(store_url: str, case: str) -> None:
    good = [tracked_run(store_url, project="ok") for _ in range(2)]
    killed_row(store_url, "healthy-killed")
    _damage(store_url, case, "bad-run-1")
    st = open_store(store_url, read_only=True)
    runs = {r.run_id: r for r in st.list_runs()}
    assert set(runs) == {good[0].run_id, good[1].run_id, "healthy-killed", "bad-run-1"}
    bad = runs["bad-run-1"]
    assert bad.result is None and bad.damaged and CASES[case][2] in bad.damaged, bad.damaged
    for r in good:
        assert runs[r.run_id].result is not None and runs[r.run_id].result.energy_j == pytest.approx(r.energy_j)
    assert runs["healthy-killed"].result is not None and runs["healthy-killed"].partial
    # the damaged run keeps the contract's keys (null where unknown) and says why
    d = bad.to_dict()
    assert d["run_id"] == "bad-run-1" and d["damaged"] == bad.damaged
    assert set(good[0].to_dict()) <= set(d)
    json.dumps(d, allow_nan=False)
    assert st.get_run("bad-run-1").damaged == bad.damaged  # show: returned, not raised


@pytest.fixture
def damaged_store(tmp_path: Path) -> dict[str, Any]:
    """Two good runs, one killed run, and one damaged row for every case."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    good = [tracked_run(url, project="ok", location="FRA"), tracked_run(url, project="ok", location="DEU")]
    killed_row(url, "healthy-killed")
    bad = {}
    for i, case in enumerate(sorted(CASES)):
        rid = f"bad-{i:02d}"
        _damage(url, case, rid)
        bad[rid] = case
    return {"url": url, "good": [r.run_id for r in good] + ["healthy-killed"], "bad": bad}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "greenlm", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_runs_list_show_export_with_damaged_rows(damaged_store: dict[str, Any], tmp_path: Path) -> None:
    url, good, bad = damaged_store["url"], damaged_store["good"], damaged_store["bad"]
    p = _cli("runs", "list", "--store", url)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    for rid in [*good, *bad]:
        assert rid[:12] in p.stdout
    assert p.stdout.count("DAMAGED") == len(bad)
    assert f"; {len(bad)} damaged (not in the totals)" in p.stdout

    p = _cli("runs", "list", "--store", url, "--json")
    assert p.returncode == 0, p.stderr
    listed = {d["run_id"]: d for d in json.loads(p.stdout)}
    assert set(listed) == set(good) | set(bad)
    assert {rid for rid, d in listed.items() if d.get("damaged")} == set(bad)
    assert all(f"run {rid} is damaged" in p.stderr for rid in bad)

    p = _cli("runs", "show", "bad-00", "--store", url)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "DAMAGED" in p.stdout and "is damaged" in p.stderr
    p = _cli("runs", "show", good[0], "--store", url, "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["run_id"] == good[0]

    out = tmp_path / "all.csv"
    assert main(["runs", "export", "--store", url, "-o", str(out)]) == 0
    rows = {r["run_id"]: r for r in csv.DictReader(out.open())}
    assert set(rows) == set(good) | set(bad)
    assert {rid for rid, r in rows.items() if r["greenlm_status"] == "damaged"} == set(bad)
    assert all(rows[rid]["energy_consumed"] == "" for rid in bad), "no invented zeros"
    assert float(rows[good[0]]["energy_consumed"]) > 0


def test_export_json_keeps_every_run(damaged_store: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "export", "--store", damaged_store["url"], "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {d["run_id"] for d in out} == set(damaged_store["good"]) | set(damaged_store["bad"])


def test_dashboard_and_api_with_damaged_rows(damaged_store: dict[str, Any]) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from greenlm.server.app import ServerSettings, create_app

    url, good, bad = damaged_store["url"], damaged_store["good"], damaged_store["bad"]
    c = TestClient(create_app(ServerSettings(store_url=url, read_only=True)), base_url="http://127.0.0.1")
    page = c.get("/")
    assert page.status_code == 200
    for rid in [*good, *bad]:
        assert f'data-run-id="{rid}"' in page.text
    assert page.text.count('class="damaged"') == len(bad)
    assert f"{len(bad)} damaged, left out of the totals" in page.text

    api = c.get("/api/v1/runs").json()
    assert api["count"] == len(good) + len(bad) and api["damaged"] == len(bad)
    ok_energy = sum(r.result.energy_j for r in open_store(url, read_only=True).list_runs() if r.ok)
    assert api["totals"]["energy_j"] == pytest.approx(ok_energy)
    assert c.get("/api/v1/runs/bad-03").json()["damaged"]

    cmp = c.get(f"/compare?ids={good[0]},bad-01,{good[1]}")
    assert cmp.status_code == 200 and 'data-damaged="bad-01"' in cmp.text and good[1][:12] in cmp.text
    detail = c.get("/runs/bad-02")
    assert detail.status_code == 200 and "damaged and cannot be read" in detail.text
    assert CASES[bad["bad-02"]][2] in html.unescape(detail.text) and "bad-02" in detail.text
    rep = c.get(f"/report?ids={good[0]}&ids=bad-04")
    assert rep.status_code == 200 and "damaged and cannot be read" in rep.text and good[0] in rep.text
