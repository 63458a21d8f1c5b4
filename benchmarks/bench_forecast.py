"""Cost of the in-run forecast per tracker flush, as a run's step count grows.

The tracker refreshes its forecast at every flush. Recomputing it from every step so far
(``forecast_total`` over the list, what the tracker did until this change) costs time linear in
the steps, spent in the sampling thread under the GIL, so a long run slows its own job more
and more. The tracker now keeps a :class:`StepForecaster` and adds each step once. This
measures, side by side in one process, the time one flush spends on the forecast both ways
at 1e3 ... 1e6 completed steps (the incremental figure includes the steps added since the
previous flush, at 100 steps per flush).

    .venv/bin/python benchmarks/bench_forecast.py

Writes ``benchmarks/results/forecast.json`` and ``benchmarks/results/forecast.md``.
"""

from __future__ import annotations

import json
import platform
import random
import time
from collections.abc import Callable
from pathlib import Path

from greenlm.estimate.forecast import StepForecaster, forecast_total

RESULTS = Path(__file__).parent / "results"
STEPS_PER_FLUSH = 100


def _best_of(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    rng = random.Random(0)
    rows = []
    for n in (1_000, 10_000, 100_000, 1_000_000):
        energies = [rng.uniform(90, 110) for _ in range(n)]
        times = [rng.uniform(0.09, 0.11) for _ in range(n)]
        full_s = _best_of(lambda e=energies, t=times, n=n: forecast_total(e, 2 * n, 1, t), 3 if n >= 100_000 else 10)
        fc = StepForecaster(1)
        for e, t in zip(energies, times):
            fc.add(e, t)

        def flush(fc: StepForecaster = fc, n: int = n) -> None:
            for _ in range(STEPS_PER_FLUSH):  # the steps finished since the previous flush
                fc.add(rng.uniform(90, 110), rng.uniform(0.09, 0.11))
            fc.forecast(10 * n)

        inc_s = _best_of(flush, 20)
        check = StepForecaster(1)
        for e, t in zip(energies, times):
            check.add(e, t)
        same = abs(check.forecast(2 * n).energy_j / forecast_total(energies, 2 * n, 1, times).energy_j - 1) < 1e-9
        rows.append({"steps": n, "full_ms": full_s * 1e3, "incremental_ms": inc_s * 1e3, "same_forecast": same})
        print(f"{n:>9,} steps: full {full_s * 1e3:9.3f} ms  incremental {inc_s * 1e3:7.3f} ms  same={same}")
    out = {"machine": platform.processor() or platform.machine(), "python": platform.python_version(), "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "forecast.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        "| completed steps | recompute from all steps (ms/flush) | incremental (ms/flush, 100 new steps) | ratio |",
        "|---|---|---|---|",
    ]
    for r in rows:
        ratio = r["full_ms"] / r["incremental_ms"]
        lines.append(f"| {r['steps']:,} | {r['full_ms']:.3f} | {r['incremental_ms']:.3f} | {ratio:,.0f}x |")
    (RESULTS / "forecast.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
