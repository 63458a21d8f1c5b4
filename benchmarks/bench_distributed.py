"""A simulated many-rank job: what merging and assembling a distributed run costs as it grows.

Synthetic rank reports shaped like a real 8-GPU node (each rank: one GPU with its NVML
index; local rank 0 also the node's CPU and RAM; three phases; a 600-point timeline), for
jobs of 8 to 8,000 ranks (1 to 1,000 nodes), through the code greenlm runs:

1. **node part**: :func:`greenlm.tracking.merge.merge` of a node's 8 rank reports (what the
   node's last rank does at the end);
2. **group merge**: ``merge`` of the nodes' parts (what the store does once, when the last
   part arrives);
3. **store assembly**: every node sends a running part then its final part to a real SQLite
   store (``RunStore.save_result``, which assembles the group): the cost of one interim
   assembly (a part arriving while others run) and of the final one, and the size of the
   stored group run.

Each configuration is repeated (``--repeats``, interleaved round by round) and reported as
the median with its min-max spread. Every merge is checked: the group's energy equals the sum
of the ranks' energies and each GPU, CPU and RAM appears exactly once (nothing counted
twice).

Run: ``.venv/bin/python benchmarks/bench_distributed.py`` (a few minutes; ``--nodes 1 10 100
1000``, ``--repeats 5``, ``--store-nodes 10 100 1000``). Writes
``benchmarks/results/distributed.json`` and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from greenlm.tracking.merge import RankReport, merge
from greenlm.tracking.result import ComponentEnergy, PhaseEnergy, RunResult, TimelinePoint

RESULTS = Path(__file__).parent / "results"
GPUS_PER_NODE = 8
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def rank_result(rank: int, local: int, duration_s: float = 3600.0, points: int = 600) -> RunResult:
    gpu_j = (300.0 + rank % 7) * duration_s
    comps = [ComponentEnergy("gpu:0", "gpu", gpu_j, "counter", gpu_j, gpu_j)]
    meters: list[dict] = [{"name": "gpu:0", "kind": "gpu", "provenance": "counter", "nvml_index": local}]
    if local == 0:
        for name, kind, w in (("cpu", "cpu", 180.0), ("ram", "ram", 40.0)):
            comps.append(ComponentEnergy(name, kind, w * duration_s, "modeled", w * duration_s * 0.7, w * duration_s))
            meters.append({"name": name, "kind": kind, "provenance": "modeled"})
    energy = sum(c.energy_j for c in comps)
    phases = (
        PhaseEnergy("train", None, energy * 0.95, duration_s * 0.95, 10_000),
        PhaseEnergy("forward", "train", energy * 0.4, duration_s * 0.4, 10_000),
        PhaseEnergy("eval", None, energy * 0.05, duration_s * 0.05, 0),
    )
    timeline = tuple(
        TimelinePoint(duration_s * (i + 1) / points, {c.name: c.energy_j / duration_s for c in comps})
        for i in range(points)
    )
    return RunResult(
        run_id="x",
        project="bench",
        status="completed",
        started_at=(T0 + dt.timedelta(seconds=rank % 5)).isoformat(),
        ended_at=None,
        duration_s=duration_s,
        energy_j=energy,
        energy_low_j=energy,
        energy_high_j=energy,
        facility_energy_j=energy * 1.1,
        energy_kwh=energy * 1.1 / 3.6e6,
        co2e_g=energy * 1.1 / 3.6e6 * 300.0,
        co2e_low_g=0.0,
        co2e_high_g=0.0,
        cost=0.0,
        currency="USD",
        price_per_kwh=0.1,
        price_source="bench",
        pue=1.1,
        pue_source="bench",
        location={"code": "X", "intensity_g_per_kwh": 300.0},
        components=tuple(comps),
        phases=phases,
        steps=10_000,
        provenance="modeled",
        warnings=("CPU energy is modeled (utilisation x TDP; no RAPL counter): see the band",) if local == 0 else (),
        timeline=timeline,
        metadata={"model": "bench-7b", "hardware": {"cpu": "bench"}},
        host=f"node{rank // GPUS_PER_NODE}",
        meters=tuple(meters),
    )


def node_reports(node: int) -> list[RankReport]:
    return [
        RankReport(rank_result(node * GPUS_PER_NODE + i, i), node * GPUS_PER_NODE + i, f"node{node:04d}", i)
        for i in range(GPUS_PER_NODE)
    ]


def node_part(node: int, world: int, nodes: int, gid: str = "0" * 32, running: bool = False) -> RunResult:
    reps = node_reports(node)
    if running:
        reps = [RankReport(r.result, r.rank, r.node, r.local_rank, "running") for r in reps]
    return merge(
        reps,
        run_id=f"{gid}.n{node:010d}",
        world_size=world,
        role="part",
        node=f"node{node:04d}",
        expected_ranks=GPUS_PER_NODE,
        job={"group_run_id": gid, "launcher": "bench", "nodes_expected": nodes},
        timeline_by_kind=nodes != 1,  # as tracking/group.py does
    )


def check(group: RunResult, nodes: int) -> None:
    """Nothing counted twice: every device once, the total the sum of the ranks'."""
    ranks = nodes * GPUS_PER_NODE
    expected = sum(rank_result(r, r % GPUS_PER_NODE, points=0).energy_j for r in range(ranks))
    assert abs(group.energy_j - expected) <= 1e-9 * expected, (group.energy_j, expected)
    names = [c.name for c in group.components]
    assert len(names) == len(set(names)) == ranks + 2 * nodes
    assert sum(c.kind == "cpu" for c in group.components) == nodes
    assert len(group.metadata["distributed"]["ranks"]) == ranks and group.status == "completed"


def spread(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def bench_merge(node_counts: list[int], repeats: int) -> list[dict]:
    reports = {n: node_reports(0) for n in node_counts}
    parts_for = {n: [node_part(k, n * GPUS_PER_NODE, n) for k in range(n)] for n in node_counts}
    times: dict[int, dict[str, list[float]]] = {n: {"part": [], "group": []} for n in node_counts}
    sizes: dict[int, int] = {}
    for _ in range(repeats):
        for n in node_counts:  # interleaved: every size in every round
            t = time.perf_counter()
            merge(
                reports[n],
                run_id="p",
                world_size=n * GPUS_PER_NODE,
                role="part",
                node="node0000",
                timeline_by_kind=n != 1,
            )
            times[n]["part"].append(time.perf_counter() - t)
            t = time.perf_counter()
            group = merge(parts_for[n], run_id="g", world_size=n * GPUS_PER_NODE, job={"nodes_expected": n})
            times[n]["group"].append(time.perf_counter() - t)
            check(group, n)
            sizes[n] = len(group.to_json(timeline=True, indent=None))
    return [
        {
            "nodes": n,
            "ranks": n * GPUS_PER_NODE,
            "node_part_s": spread(times[n]["part"]),
            "group_merge_s": spread(times[n]["group"]),
            "group_json_bytes": sizes[n],
            "part_json_bytes": len(parts_for[n][0].to_json(timeline=True, indent=None)),
        }
        for n in node_counts
    ]


def bench_store(node_counts: list[int], repeats: int) -> list[dict]:
    from greenlm.store import clear_store_cache, open_store

    out: dict[int, dict[str, list[float]]] = {n: {"interim": [], "final": [], "total": []} for n in node_counts}
    stored_bytes: dict[int, int] = {}
    for rep in range(repeats):
        for n in node_counts:
            running = [node_part(k, n * GPUS_PER_NODE, n, running=True) for k in range(n)]
            final = [node_part(k, n * GPUS_PER_NODE, n) for k in range(n)]
            with tempfile.TemporaryDirectory() as d:
                st = open_store(f"sqlite:///{d}/runs.db")
                t_all = time.perf_counter()
                for p in running:  # every node announces its part, then the job runs
                    st.save_result(p)
                interim = []
                for p in final[:-1]:  # nodes finish one after the other; the group waits
                    t = time.perf_counter()
                    st.save_result(p)
                    interim.append(time.perf_counter() - t)
                t = time.perf_counter()
                st.save_result(final[-1])  # the last part completes the group: the one full merge
                out[n]["final"].append(time.perf_counter() - t)
                out[n]["total"].append(time.perf_counter() - t_all)
                out[n]["interim"].append(statistics.median(interim) if interim else 0.0)
                (g,) = st.list_runs()
                assert g["status"] == "completed" and len(g["metadata"]["distributed"]["ranks"]) == n * 8
                stored_bytes[n] = Path(f"{d}/runs.db").stat().st_size
                clear_store_cache()
        print(f"  store round {rep + 1}/{repeats} done", flush=True)
    return [
        {
            "nodes": n,
            "ranks": n * GPUS_PER_NODE,
            "interim_assembly_s": spread(out[n]["interim"]),
            "final_assembly_s": spread(out[n]["final"]),
            "all_parts_s": spread(out[n]["total"]),
            "db_bytes": stored_bytes[n],
        }
        for n in node_counts
    ]


def fmt(s: dict[str, float], unit: float = 1e3) -> str:
    return f"{s['median'] * unit:.3g} ({s['min'] * unit:.3g}-{s['max'] * unit:.3g})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, nargs="+", default=[1, 10, 100, 1000])
    ap.add_argument("--store-nodes", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--store-repeats", type=int, default=3)
    args = ap.parse_args()
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln),
        platform.processor(),
    )
    merges = bench_merge(args.nodes, args.repeats)
    print("| nodes | ranks | node part (8 ranks), ms | group merge, ms | group JSON | part JSON |")
    print("|---:|---:|---:|---:|---:|---:|")
    for m in merges:
        print(
            f"| {m['nodes']} | {m['ranks']} | {fmt(m['node_part_s'])} | {fmt(m['group_merge_s'])} | "
            f"{m['group_json_bytes'] / 1e6:.2f} MB | {m['part_json_bytes'] / 1e3:.0f} kB |"
        )
    stores = bench_store(args.store_nodes, args.store_repeats)
    print("\n| nodes | ranks | one interim assembly, ms | final assembly, ms | all 2 x nodes part writes, s | db |")
    print("|---:|---:|---:|---:|---:|---:|")
    for s in stores:
        print(
            f"| {s['nodes']} | {s['ranks']} | {fmt(s['interim_assembly_s'])} | {fmt(s['final_assembly_s'])} | "
            f"{fmt(s['all_parts_s'], 1.0)} | {s['db_bytes'] / 1e6:.1f} MB |"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "distributed.json").write_text(
        json.dumps({"cpu": cpu, "python": platform.python_version(), "merge": merges, "store": stores}, indent=2)
    )
    print(f"\nCPU: {cpu}")


if __name__ == "__main__":
    main()
