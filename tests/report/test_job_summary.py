"""``greenlm runs show`` of a distributed run: the per-rank table and a bounded component list."""

from __future__ import annotations

from greenlm.report.summary import MAX_COMPONENT_ROWS, MAX_RANK_ROWS, run_summary
from greenlm.tracking.merge import RankReport, merge
from tests.tracking.test_merge import gpu, result


def test_a_large_job_prints_bounded_tables_that_still_add_up():
    reps = []
    for rank in range(80):
        comps = [gpu("gpu:0", 100.0, rank % 8)] + ([("cpu", "cpu", 10.0, {})] if rank % 8 == 0 else [])
        reps.append(RankReport(result(comps), rank, f"node{rank // 8}", rank % 8))
    d = merge(reps, run_id="g" * 32, world_size=80).to_dict()
    text = run_summary(d)
    lines = text.splitlines()
    rows = [ln for ln in lines if ln.startswith("node")]
    assert len(rows) == MAX_COMPONENT_ROWS, "the component table is bounded"
    shown = 90 - MAX_COMPONENT_ROWS
    assert f"... and {shown} more components (" in text and "--json has them all" in text
    assert f"... and {80 - MAX_RANK_ROWS} more ranks" in text
    assert "80 of 80 rank(s) reported, 10 node(s)" in text
    first = next(i for i, ln in enumerate(lines) if ln.startswith("component "))
    ranks = next(i for i, ln in enumerate(lines) if ln.startswith("rank/task "))
    assert first < ranks
    assert len([ln for ln in lines[ranks + 2 :] if ln[:1].isdigit()]) == MAX_RANK_ROWS
    assert "node0/cpu" in rows[0] and "node0/gpu:0" in rows[1], "per node: CPU first, then GPUs in order"
