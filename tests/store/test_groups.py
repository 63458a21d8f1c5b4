"""The store assembles a distributed run from its nodes' parts (store/groups.py).

Parts are built with the real merge from synthetic rank reports (tests/tracking/test_merge.py
helpers); they reach the store the way nodes send them: ``save_result`` from several
processes at once (SQLite here, PostgreSQL below), and the team server's ingest API.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from greenlm.store import open_store
from greenlm.store.runs import STALE_AFTER_S
from greenlm.tracking.merge import RankReport, merge
from greenlm.tracking.result import RunResult
from tests.tracking.test_merge import gpu, result

GID = "0123456789abcdef0123456789abcdef"


def part(node: int, *, ranks_per_node: int = 2, world: int = 4, running: bool = False, nodes: int = 2) -> RunResult:
    reps = []
    for local in range(ranks_per_node):
        rank = node * ranks_per_node + local
        comps = [gpu("gpu:0", 1000.0 + rank, local)] + ([("cpu", "cpu", 50.0, {})] if local == 0 else [])
        r = result(comps, status="running" if running else "completed", start_s=node)
        reps.append(RankReport(r, rank, f"node{node}", local, "running" if running else "final"))
    return merge(
        reps,
        run_id=f"{GID}.n{node:010d}",
        world_size=world,
        role="part",
        node=f"node{node}",
        expected_ranks=ranks_per_node,
        job={"group_run_id": GID, "launcher": "torchrun", "nodes_expected": nodes},
    )


def test_the_group_runs_while_a_part_is_missing_then_completes(store_url):
    st = open_store(store_url)
    st.save_result(part(0))
    st.save_result(part(1, running=True))
    (live,) = [_r.to_dict() for _r in st.list_runs()]
    assert live["run_id"] == GID and live["status"] == "running", "one run, the parts hidden"
    assert live["energy_j"] == pytest.approx(part(0).energy_j + part(1, running=True).energy_j)
    assert sorted(c["name"] for c in live["components"]) == [
        "node0/cpu",
        "node0/gpu:0",
        "node0/gpu:1",
        "node1/cpu",
        "node1/gpu:0",
        "node1/gpu:1",
    ]
    assert live["metadata"]["distributed"]["node_parts"] == {"node0": "completed", "node1": "running"}
    st.save_result(part(1))
    (done,) = [_r.to_dict() for _r in st.list_runs()]
    assert done["status"] == "completed" and done["error"] is None
    assert done["energy_j"] == pytest.approx(part(0).energy_j + part(1).energy_j)
    assert sorted(r["rank"] for r in done["metadata"]["distributed"]["ranks"]) == [0, 1, 2, 3]
    assert len([_r.to_dict() for _r in st.list_runs(include_rank_rows=True)]) == 3, "the parts stay, as evidence"


def test_a_group_whose_node_never_reports_reads_interrupted(store_url, tmp_path):
    st = open_store(store_url)
    st.save_result(part(0, nodes=3, world=6))
    st.save_result(part(1, nodes=3, world=6))
    (live,) = [_r.to_dict() for _r in st.list_runs()]
    assert live["status"] == "running" and live["metadata"]["distributed"]["nodes_reported"] == 2
    db = store_url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as c:  # an hour without a write from any node
        c.execute("UPDATE runs SET updated_at = ? WHERE run_id = ?", (time.time() - STALE_AFTER_S - 60, GID))
    (gone,) = [_r.to_dict() for _r in st.list_runs()]
    assert gone["status"] == "interrupted"
    assert gone["energy_j"] == pytest.approx(part(0).energy_j + part(1).energy_j), "what the nodes sent is kept"


WRITER = textwrap.dedent("""
    import sys, time
    from greenlm.store import open_store
    from tests.store.test_groups import part
    url, node, nodes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    st = open_store(url)
    st.save_result(part(node, world=2 * nodes, nodes=nodes, running=True))
    time.sleep(0.2)
    st.save_result(part(node, world=2 * nodes, nodes=nodes))
""")


def _concurrent_parts(url: str, nodes: int, tmp_path: Path) -> dict:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    root = str(Path(__file__).resolve().parents[2])
    procs = [
        subprocess.Popen([sys.executable, str(script), url, str(n), str(nodes)], cwd=root, env={"PYTHONPATH": root})
        for n in range(nodes)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * nodes
    runs = [_r.to_dict() for _r in open_store(url).list_runs()]
    assert len(runs) == 1, [(r["run_id"], r["status"]) for r in runs]
    return runs[0]


def test_parts_arriving_at_once_from_many_nodes_are_all_in_the_group(store_url, tmp_path):
    run = _concurrent_parts(store_url, 4, tmp_path)
    assert run["status"] == "completed"
    assert sorted(r["rank"] for r in run["metadata"]["distributed"]["ranks"]) == list(range(8))
    assert run["energy_j"] == pytest.approx(sum(part(n, world=8, nodes=4).energy_j for n in range(4)))


def test_parts_through_the_team_server(tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from greenlm.server.app import ServerSettings, create_app

    app = create_app(ServerSettings(store_url=f"sqlite:///{tmp_path / 'server.db'}"))
    _tid, token = app.state.tokens.create("nodes")
    c = TestClient(app, base_url="http://127.0.0.1")
    h = {"Authorization": f"Bearer {token}"}
    for p in (part(1), part(0)):
        body = json.loads(p.to_json(timeline=True))
        assert c.post("/api/v1/runs", json=body, headers=h).status_code == 201
    runs = c.get("/api/v1/runs", headers=h).json()
    items = runs["runs"] if isinstance(runs, dict) else runs
    assert [r["run_id"] for r in items] == [GID], "the server lists the job's run, not its parts"
    got = c.get(f"/api/v1/runs/{GID}", headers=h).json()
    assert got["status"] == "completed" and sorted(got["metadata"]["distributed"]["nodes"]) == ["node0", "node1"]


pytest.importorskip("psycopg")
from tests.server.test_postgres import postgres_url  # noqa: E402,F401  (the fixture)


@pytest.mark.postgres
def test_parts_arriving_at_once_on_postgresql(postgres_url, tmp_path):  # noqa: F811
    run = _concurrent_parts(postgres_url, 4, tmp_path)
    assert run["status"] == "completed", "the group row lock serialised the nodes"
    assert sorted(r["rank"] for r in run["metadata"]["distributed"]["ranks"]) == list(range(8))
