"""The pure merge of a distributed job's ranks (tracking/merge.py), on synthetic rank reports."""

from __future__ import annotations

import datetime as dt

import pytest

from greenlm.tracking.merge import RankReport, merge, rank_ranges
from greenlm.tracking.result import ComponentEnergy, PhaseEnergy, RunResult, TimelinePoint

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def result(
    comps: list[tuple[str, str, float, dict]],
    *,
    start_s: float = 0.0,
    duration_s: float = 10.0,
    status: str = "completed",
    phases: tuple[PhaseEnergy, ...] = (),
    steps: int = 0,
    intensity: float = 400.0,
    pue: float = 1.2,
    price: float = 0.3,
    warnings: tuple[str, ...] = (),
    timeline: bool = False,
    metadata: dict | None = None,
) -> RunResult:
    energy = sum(e for _, _, e, _ in comps)
    components = tuple(ComponentEnergy(n, k, e, "counter", e * 0.9, e * 1.1) for n, k, e, _ in comps)
    tl: tuple[TimelinePoint, ...] = ()
    if timeline:  # constant power over 10 intervals
        tl = tuple(
            TimelinePoint(duration_s * (i + 1) / 10, {n: e / duration_s for n, _, e, _ in comps}) for i in range(10)
        )
    return RunResult(
        run_id="r",
        project="p",
        status=status,
        started_at=(T0 + dt.timedelta(seconds=start_s)).isoformat(),
        ended_at=None,
        duration_s=duration_s,
        energy_j=energy,
        energy_low_j=energy * 0.9,
        energy_high_j=energy * 1.1,
        facility_energy_j=energy * pue,
        energy_kwh=energy * pue / 3.6e6,
        co2e_g=energy * pue / 3.6e6 * intensity,
        co2e_low_g=0.0,
        co2e_high_g=0.0,
        cost=0.0,
        currency="EUR",
        price_per_kwh=price,
        price_source="test",
        pue=pue,
        pue_source="test",
        location={"code": "X", "intensity_g_per_kwh": intensity},
        components=components,
        phases=phases,
        steps=steps,
        provenance="counter",
        warnings=warnings,
        timeline=tl,
        metadata=metadata or {},
        host="h",
        meters=tuple({"name": n, "kind": k, **m} for n, k, _, m in comps),
    )


def gpu(name: str, e: float, idx: int) -> tuple[str, str, float, dict]:
    return (name, "gpu", e, {"nvml_index": idx, "model": "X100"})


def test_each_device_once_and_node_meters_by_one_rank():
    r0 = RankReport(result([("cpu", "cpu", 50.0, {}), ("ram", "ram", 10.0, {}), gpu("gpu:0", 1000.0, 0)]), 0, "n")
    r1 = RankReport(result([gpu("gpu:0", 900.0, 1)]), 1, "n")  # CUDA_VISIBLE_DEVICES=1: its cuda:0 is GPU 1
    m = merge([r0, r1], run_id="g", world_size=2)
    assert sorted(c.name for c in m.components) == ["n/cpu", "n/gpu:0", "n/gpu:1", "n/ram"]
    assert m.energy_j == pytest.approx(1960.0)
    assert m.status == "completed" and m.error is None
    assert {c.name: c.rank for c in m.components} == {"n/cpu": 0, "n/ram": 0, "n/gpu:0": 0, "n/gpu:1": 1}
    assert m.metadata["hardware"]["accelerator_count"] == 2 and m.metadata["hardware"]["accelerator"] == "X100"
    assert m.co2e_g == pytest.approx(1960.0 * 1.2 / 3.6e6 * 400.0)
    assert m.facility_energy_j == pytest.approx(1960.0 * 1.2)
    assert m.energy_low_j == pytest.approx(1960.0 * 0.9)


def test_a_device_measured_twice_is_counted_once_and_phases_follow():
    ph0 = (PhaseEnergy("train", None, 1000.0, 9.0, 100),)
    ph1 = (PhaseEnergy("train", None, 800.0, 8.0, 100),)
    r0 = RankReport(result([gpu("gpu:0", 1000.0, 0)], phases=ph0, steps=100), 0, "n")
    r1 = RankReport(result([gpu("gpu:0", 800.0, 0)], phases=ph1, steps=100, start_s=1.0, duration_s=9.0), 1, "n")
    m = merge([r0, r1], run_id="g", world_size=2)
    assert [c.name for c in m.components] == ["n/gpu:0"]
    assert m.energy_j == 1000.0, "the longer reading of the one device, not the sum"
    assert any("measured by rank 1 and rank 0: counted once" in w for w in m.warnings)
    train = m.phase("train")
    assert train.energy_j == pytest.approx(1000.0), "rank 1's phase energy was all its dropped device"
    assert train.steps == 100 and train.duration_s == 9.0


def test_merging_parts_equals_merging_the_ranks():
    reps = []
    for node in range(3):
        for local in range(2):
            rank = node * 2 + local
            comps = [gpu("gpu:0", 100.0 + rank, local)]
            if local == 0:
                comps += [("cpu", "cpu", 20.0 + node, {}), ("ram", "ram", 5.0, {})]
            ph = (PhaseEnergy("train", None, sum(e for _, _, e, _ in comps), 9.0 + rank / 10, 50),)
            reps.append(
                RankReport(
                    result(comps, start_s=rank * 0.1, phases=ph, steps=50, warnings=("CPU energy is modeled",)),
                    rank,
                    f"node{node}",
                    local,
                )
            )
    flat = merge(reps, run_id="g", world_size=6)
    parts = [
        merge(reps[i : i + 2], run_id=f"g.{i}", world_size=6, role="part", node=f"node{i // 2}", expected_ranks=2)
        for i in (0, 2, 4)
    ]
    assert all(p.status == "completed" for p in parts)
    grouped = merge(parts, run_id="g", world_size=6)
    assert grouped.energy_j == pytest.approx(flat.energy_j)
    assert grouped.co2e_g == pytest.approx(flat.co2e_g)
    assert sorted((c.name, c.energy_j, c.rank) for c in grouped.components) == sorted(
        (c.name, c.energy_j, c.rank) for c in flat.components
    )
    assert grouped.phase("train").energy_j == pytest.approx(flat.phase("train").energy_j)
    assert grouped.phase("train").steps == 50
    assert grouped.duration_s == pytest.approx(flat.duration_s) == pytest.approx(0.5 + 10.0)
    assert grouped.metadata["distributed"]["nodes"] == {"node0": [0, 1], "node1": [2, 3], "node2": [4, 5]}
    assert "CPU energy is modeled (all ranks)" in grouped.warnings
    assert [r["rank"] for r in grouped.metadata["distributed"]["ranks"]] == list(range(6))
    # the per-rank breakdown adds up to the run
    assert sum(r["energy_j"] for r in grouped.metadata["distributed"]["ranks"]) == pytest.approx(grouped.energy_j)


def test_status_names_the_ranks_that_did_not_complete():
    ok = RankReport(result([gpu("gpu:0", 10.0, 0)], status="interrupted"), 0, "n")
    died = RankReport(result([gpu("gpu:0", 5.0, 1)], status="running"), 1, "n", state="died")
    m = merge([ok, died], run_id="g", world_size=3)
    assert m.status == "running", "rank 2 never reported: the job may still run"
    assert m.metadata["distributed"]["missing_ranks"] == [2]
    assert m.error.startswith("ranks that did not complete: rank 1 (failed: the process ended without a final report")
    assert "rank 2 (no report)" in m.error and "rank 0 (interrupted)" in m.error
    assert m.energy_j == 15.0, "the dead rank's last report is kept"
    done = merge([ok, died], run_id="g", world_size=2)
    assert done.status == "failed" and done.metadata["distributed"]["failed_ranks"] == [0, 1]
    assert done.ended_at is not None


def test_a_running_snapshot_is_superseded_by_the_final_report():
    snap = RankReport(result([gpu("gpu:0", 5.0, 0)], status="running", duration_s=5.0), 0, "n", state="running")
    final = RankReport(result([gpu("gpu:0", 10.0, 0)]), 0, "n")
    part = merge([snap], run_id="p", world_size=1, role="part", node="n", expected_ranks=1)
    assert part.status == "running"
    m = merge([part, final], run_id="g", world_size=1)
    assert m.status == "completed" and m.energy_j == 10.0


def test_ranks_with_their_own_carbon_settings():
    a = RankReport(result([gpu("gpu:0", 3.6e6, 0)], intensity=100.0, pue=1.0), 0, "a")
    b = RankReport(result([gpu("gpu:0", 3.6e6, 0)], intensity=500.0, pue=1.5), 1, "b")
    m = merge([a, b], run_id="g", world_size=2)
    assert m.co2e_g == pytest.approx(100.0 + 1.5 * 500.0)
    assert m.facility_energy_j == pytest.approx(3.6e6 * 2.5)
    assert any("different carbon settings" in w for w in m.warnings)


def test_timelines_on_one_grid_conserve_energy():
    a = RankReport(result([gpu("gpu:0", 1000.0, 0)], duration_s=10.0, timeline=True), 0, "n")
    b = RankReport(result([gpu("gpu:0", 500.0, 1)], start_s=5.0, duration_s=10.0, timeline=True), 1, "n")
    m = merge([a, b], run_id="g", world_size=2)
    assert m.duration_s == 15.0 and len(m.timeline) == 600
    width = m.duration_s / 600
    energy = {k: sum(p.power_w.get(k, 0.0) * width for p in m.timeline) for k in ("n/gpu:0", "n/gpu:1")}
    assert energy == pytest.approx({"n/gpu:0": 1000.0, "n/gpu:1": 500.0})
    assert m.timeline[0].power_w["n/gpu:1"] == 0.0 and m.timeline[-1].power_w["n/gpu:0"] == 0.0


def test_user_metadata_and_slurm_facts_of_the_job():
    meta0 = {"params": 7e9, "slurm": {"job_id": "12", "step_id": "0", "task": 0, "step_tasks": 2}}
    meta1 = {"tokens": 1e9, "slurm": {"job_id": "12", "step_id": "0", "task": 1, "step_tasks": 2}}
    m = merge(
        [
            RankReport(result([gpu("gpu:0", 1.0, 0)], metadata=meta0), 0, "n"),
            RankReport(result([gpu("gpu:0", 1.0, 1)], metadata=meta1), 1, "n"),
        ],
        run_id="g",
        world_size=2,
    )
    assert m.metadata["params"] == 7e9 and m.metadata["tokens"] == 1e9
    assert m.metadata["slurm"] == {"job_id": "12", "step_id": "0", "step_tasks": 2}, "per-task facts stay per rank"


def test_rank_ranges():
    assert rank_ranges([5, 0, 1, 2, 7, 8, 8]) == "0-2, 5, 7-8"
    assert rank_ranges([]) == ""


def test_nothing_to_merge_is_an_error():
    with pytest.raises(ValueError, match="at least one"):
        merge([], run_id="g", world_size=1)


def test_a_thousand_ranks_through_node_parts_count_each_device_once():
    nodes, per_node = 125, 8
    parts, expected = [], 0.0
    for n in range(nodes):
        reps = []
        for local in range(per_node):
            rank = n * per_node + local
            comps = [gpu("gpu:0", 1000.0 + rank, local)] + ([("cpu", "cpu", 70.0, {})] if local == 0 else [])
            expected += sum(e for _, _, e, _ in comps)
            reps.append(RankReport(result(comps), rank, f"node{n}", local))
        parts.append(merge(reps, run_id=f"g.{n}", world_size=1000, role="part", node=f"node{n}", expected_ranks=8))
    m = merge(parts, run_id="g", world_size=1000)
    assert m.status == "completed" and m.metadata["distributed"]["missing_ranks"] == []
    assert m.energy_j == pytest.approx(expected, rel=1e-12)
    assert len(m.components) == len({c.name for c in m.components}) == 1000 + 125
    assert sum(c.kind == "cpu" for c in m.components) == 125
    assert m.metadata["hardware"]["accelerator_count"] == 1000 and m.metadata["hardware"]["nodes"] == 125
