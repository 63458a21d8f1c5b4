"""Tracker overhead on a CPU training loop: off vs greenlm (1 s, 10 Hz) vs CodeCarbon.

Three measurements, all side by side in one run:

1. Idle-job cost: the main thread sleeps inside the window, so every CPU second the process
   burns is the tracker's own (greenlm at 1 s and 10 Hz, CodeCarbon at 1 s and 10 Hz).
2. Paired blocks: the same training loop alternates untracked and tracked blocks of a few
   seconds (ABBA order) in one process; the median of per-pair ratios cancels slow drifts
   of machine speed. Each tracked block pays its own construct + start + stop.
3. Whole runs of ``--seconds`` per configuration, interleaved round by round (rotating the
   order), with the sampler thread's own CPU time read from its thread clock.

Setup cost (construct + start + stop, median of 20) is measured with and without the store.

Run: ``.venv/bin/python benchmarks/bench_tracker_overhead.py`` (about 15 minutes; options
``--pairs``, ``--block-seconds``, ``--seconds``, ``--rounds``, ``--idle-only``). Writes
``benchmarks/results/tracker_overhead.json`` and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def make_job(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.TransformerEncoder(
        torch.nn.TransformerEncoderLayer(d_model=128, nhead=4, dim_feedforward=256, batch_first=True),
        num_layers=2,
    )
    head = torch.nn.Linear(128, 2)
    opt = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=1e-3)
    x = torch.randn(32, 64, 128)
    y = torch.randint(0, 2, (32,))

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(head(model(x).mean(1)), y)
        loss.backward()
        opt.step()
        opt.zero_grad()

    return step


def calibrate(seconds: float) -> int:
    step = make_job()
    for _ in range(3):
        step()
    t = time.perf_counter()
    n = 0
    while time.perf_counter() - t < 2.0:
        step()
        n += 1
    return max(1, int(n * seconds / (time.perf_counter() - t)))


def sampler_cpu_s() -> float:
    """CPU seconds used so far by greenlm's sampling thread (0 if none)."""
    for th in threading.enumerate():
        if th.name == "greenlm-sampler" and th.native_id is not None:
            try:
                return time.clock_gettime(time.pthread_getcpuclockid(th.ident))  # type: ignore[arg-type]
            except (OSError, AttributeError):
                return 0.0
    return 0.0


def run(config: str, steps: int, store_url: str) -> dict[str, float]:
    step = make_job()
    step()  # warm-up outside the window
    cpu0 = time.process_time()
    if config == "off":
        t = time.perf_counter()
        for _ in range(steps):
            step()
        wall = time.perf_counter() - t
        return {"wall_s": wall, "cpu_s": time.process_time() - cpu0, "sampler_cpu_s": 0.0}
    if config.startswith("greenlm"):
        from greenlm import EnergyTracker

        interval = 1.0 if config == "greenlm_1s" else 0.1
        t = time.perf_counter()
        tr = EnergyTracker(project="bench", location="DEU", interval_s=interval, store=store_url)
        tr.start()
        for _ in range(steps):
            step()
        sampler = sampler_cpu_s()
        tr.stop()
        wall = time.perf_counter() - t
        return {"wall_s": wall, "cpu_s": time.process_time() - cpu0, "sampler_cpu_s": sampler}
    if config == "codecarbon":
        from codecarbon import OfflineEmissionsTracker

        t = time.perf_counter()
        cc = OfflineEmissionsTracker(
            country_iso_code="DEU", measure_power_secs=1, save_to_file=False, log_level="error"
        )
        cc.start()
        for _ in range(steps):
            step()
        cc.stop()
        wall = time.perf_counter() - t
        return {"wall_s": wall, "cpu_s": time.process_time() - cpu0, "sampler_cpu_s": float("nan")}
    raise ValueError(config)


def paired_blocks(config: str, pairs: int, block_steps: int, store_url: str) -> dict[str, float]:
    """Alternate untracked and tracked blocks of the same loop (ABBA order) in one process.

    Slow drifts of machine speed (other tenants, frequency) hit both halves of a pair alike,
    so the median of per-pair ratios resolves overheads far below the run-to-run noise of
    whole runs. Each tracked block pays its own construct + start + stop.
    """
    step = make_job()
    for _ in range(3):
        step()

    def block(tracked: bool) -> float:
        t = time.perf_counter()
        if not tracked:
            for _ in range(block_steps):
                step()
        elif config.startswith("greenlm"):
            from greenlm import EnergyTracker

            tr = EnergyTracker(
                project="pairs", location="DEU", store=store_url, interval_s=1.0 if config == "greenlm_1s" else 0.1
            )
            tr.start()
            for _ in range(block_steps):
                step()
            tr.stop()
        else:
            from codecarbon import OfflineEmissionsTracker

            cc = OfflineEmissionsTracker(
                country_iso_code="DEU", measure_power_secs=1, save_to_file=False, log_level="error"
            )
            cc.start()
            for _ in range(block_steps):
                step()
            cc.stop()
        return time.perf_counter() - t

    ratios = []
    for i in range(pairs):
        if i % 2 == 0:
            off, on = block(False), block(True)
        else:
            on, off = block(True), block(False)
        ratios.append(on / off - 1)
    q = statistics.quantiles(ratios, n=4)
    return {
        "median_overhead_pct": 100 * statistics.median(ratios),
        "q1_pct": 100 * q[0],
        "q3_pct": 100 * q[2],
        "pairs": pairs,
    }


def setup_cost(store_url: str | None, n: int = 20) -> float:
    from greenlm import EnergyTracker

    times = []
    for _ in range(n):
        t = time.perf_counter()
        tr = EnergyTracker(project="setup", location="DEU", store=store_url if store_url else False)
        tr.start()
        tr.stop()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def codecarbon_setup_cost(n: int = 3) -> float:
    from codecarbon import OfflineEmissionsTracker

    times = []
    for _ in range(n):
        t = time.perf_counter()
        cc = OfflineEmissionsTracker(country_iso_code="DEU", save_to_file=False, log_level="error")
        cc.start()
        cc.stop()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def idle_cost(config: str, seconds: float, store_url: str) -> float:
    """CPU seconds per wall second the tracker itself burns while the job sleeps.

    With the main thread asleep, every CPU second the process uses is the tracker's: a
    precise, side-by-side measure of its cost, free of the training loop's run-to-run noise.
    """
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    if config.startswith("greenlm"):
        from greenlm import EnergyTracker

        tr = EnergyTracker(
            project="idle", location="DEU", interval_s=1.0 if config == "greenlm_1s" else 0.1, store=store_url
        )
        tr.start()
        time.sleep(seconds)
        tr.stop()
    else:
        from codecarbon import OfflineEmissionsTracker

        cc = OfflineEmissionsTracker(
            country_iso_code="DEU",
            measure_power_secs=1 if config == "codecarbon_1s" else 0.1,
            save_to_file=False,
            log_level="error",
        )
        cc.start()
        time.sleep(seconds)
        cc.stop()
    return (time.process_time() - cpu0) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=25.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--idle-seconds", type=float, default=20.0)
    ap.add_argument("--idle-only", action="store_true", help="only the idle-job cost (quick)")
    ap.add_argument("--pairs", type=int, default=24, help="paired blocks per configuration")
    ap.add_argument("--block-seconds", type=float, default=3.0)
    args = ap.parse_args()
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    tmp = tempfile.mkdtemp(prefix="greenlm-bench-")
    os.environ["GREENLM_HOME"] = tmp
    store_url = f"sqlite:///{tmp}/runs.db"
    idle_configs = ("greenlm_1s", "greenlm_10hz", "codecarbon_1s", "codecarbon_10hz")
    for c in idle_configs:  # warm-up: one-time imports and store creation are not per-second costs
        idle_cost(c, 1.5, store_url)
    idle = {c: idle_cost(c, args.idle_seconds, store_url) for c in idle_configs}
    print("\n| tracker, job asleep | tracker CPU time per wall second |\n|---|---|")
    for k, v in idle.items():
        print(f"| {k} | {100 * v:.3f} % of one core |")
    if args.idle_only:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "tracker_idle_cost.json").write_text(
            json.dumps(
                {
                    "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
                    "idle_seconds": args.idle_seconds,
                    "idle_cpu_fraction": idle,
                },
                indent=2,
            )
        )
        return
    block_steps = calibrate(args.block_seconds)
    paired = {
        c: paired_blocks(c, args.pairs, block_steps, store_url) for c in ("greenlm_1s", "greenlm_10hz", "codecarbon")
    }
    print(f"\n| paired blocks ({args.pairs} pairs of ~{args.block_seconds:g} s) | overhead, median (quartiles) |")
    print("|---|---|")
    for k, v in paired.items():
        print(f"| {k} | {v['median_overhead_pct']:+.2f} % ({v['q1_pct']:+.2f} .. {v['q3_pct']:+.2f}) |")
    steps = calibrate(args.seconds)
    configs = ["off", "greenlm_1s", "greenlm_10hz", "codecarbon"]
    rounds: list[dict[str, dict[str, float]]] = []
    for r in range(args.rounds):
        order = configs[r % len(configs) :] + configs[: r % len(configs)]  # rotate the order
        rounds.append({c: run(c, steps, store_url) for c in order})
        print(
            f"round {r + 1}/{args.rounds}: " + ", ".join(f"{c} {rounds[-1][c]['wall_s']:.2f}s" for c in configs),
            flush=True,
        )
    summary: dict[str, dict[str, float]] = {}
    for c in configs:
        walls = [rd[c]["wall_s"] for rd in rounds]
        ratios = [rd[c]["wall_s"] / rd["off"]["wall_s"] - 1 for rd in rounds]
        share = [rd[c]["sampler_cpu_s"] / rd[c]["cpu_s"] for rd in rounds] if c.startswith("greenlm") else []
        summary[c] = {
            "median_wall_s": statistics.median(walls),
            "median_overhead_pct": 100 * statistics.median(ratios) if c != "off" else 0.0,
            "min_overhead_pct": 100 * min(ratios) if c != "off" else 0.0,
            "max_overhead_pct": 100 * max(ratios) if c != "off" else 0.0,
            "sampler_cpu_pct_of_job_cpu": 100 * statistics.median(share) if share else float("nan"),
        }
    setup = {
        "greenlm_no_store_s": setup_cost(None),
        "greenlm_sqlite_store_s": setup_cost(store_url),
        "codecarbon_offline_s": codecarbon_setup_cost(),
    }
    out = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "seconds_per_run": args.seconds,
        "steps_per_run": steps,
        "rounds": args.rounds,
        "summary": summary,
        "setup": setup,
        "idle_cpu_fraction": idle,
        "paired_blocks": paired,
        "raw": rounds,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tracker_overhead.json").write_text(json.dumps(out, indent=2))
    print("\n| configuration | median wall (s) | overhead vs off, median (min..max) | sampler CPU / job CPU |")
    print("|---|---|---|---|")
    for c in configs:
        s = summary[c]
        pct = s["sampler_cpu_pct_of_job_cpu"]
        share = "-" if pct != pct else f"{pct:.3f} %"
        print(
            f"| {c} | {s['median_wall_s']:.2f} | {s['median_overhead_pct']:+.2f} % "
            f"({s['min_overhead_pct']:+.2f}..{s['max_overhead_pct']:+.2f}) | {share} |"
        )
    print("\n| setup (construct + start + stop), median | seconds |\n|---|---|")
    for k, v in setup.items():
        print(f"| {k} | {v:.4f} |")


if __name__ == "__main__":
    main()
