"""Does ``greenlm optimize`` give the same answer twice? Runs one optimize command several
times back to back and counts the distinct recommendations.

The scenario is issue 15's: ``greenlm optimize --model minilm --techniques int8,bf16,...``
at batch 1, on a machine shared with other work (energy modeled from CPU time). ``prune:0``
is the baseline in disguise (zero sparsity: an identical copy, the same computation), so a
run that recommends it has taken noise for a saving.

The script uses only the API both the old and the new optimizer have, so the same command
measures both (``--src`` points at another checkout's ``src``)::

    .venv/bin/python benchmarks/bench_optimize_flip.py --runs 4
    .venv/bin/python benchmarks/bench_optimize_flip.py --runs 4 --src /tmp/greenlm-before/src

Writes ``benchmarks/results/optimize_flip[_LABEL].json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
TECHNIQUES = "int8,bf16,fp16,prune:0,prune:0.3"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--techniques", default=TECHNIQUES)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--src", help="import greenlm from this src folder (another checkout)")
    ap.add_argument("--label", default="", help="suffix of the results file (e.g. before)")
    args = ap.parse_args()
    if args.src:
        sys.path.insert(0, args.src)
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    import greenlm
    from greenlm.optimize import OptimizeConfig, optimize
    from greenlm.optimize.runner import machine_description

    print(f"greenlm from {Path(greenlm.__file__).parent}", flush=True)
    runs: list[dict[str, Any]] = []
    for i in range(args.runs):
        t0 = time.perf_counter()
        report = optimize(
            OptimizeConfig(
                model="minilm",
                task="embedding",
                techniques=args.techniques,
                repeats=args.repeats,
                samples=args.samples,
                batch_size=args.batch_size,
                threads=args.threads,
                location="DEU",
            )
        )
        rec = report.recommendation
        d = rec.to_dict() if rec else {}
        runs.append(
            {
                "variant": d.get("variant"),
                "energy_ratio": d.get("energy_ratio"),
                "energy_ratio_low": d.get("energy_ratio_low"),
                "energy_ratio_high": d.get("energy_ratio_high"),
                "reason": d.get("reason"),
                "wall_s": time.perf_counter() - t0,
                "variants": {
                    v.name: {
                        "energy_j_per_1k": v.energy_j_per_1k,
                        "vs_baseline": getattr(v, "vs_baseline", None) and v.vs_baseline.__dict__,
                    }
                    for v in report.variants
                },
            }
        )
        lo, hi = d.get("energy_ratio_low"), d.get("energy_ratio_high")
        band = f" ({lo:.2f}x-{hi:.2f}x)" if lo is not None and hi is not None else ""
        print(f"run {i + 1}: {d.get('variant')} {d.get('energy_ratio', 0):.2f}x{band} [{runs[-1]['wall_s']:.0f} s]")
    counts = Counter(r["variant"] for r in runs)
    print(f"distinct recommendations in {args.runs} runs: {dict(counts)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"optimize_flip{'_' + args.label if args.label else ''}.json"
    out.write_text(
        json.dumps(
            {
                "machine": machine_description("cpu"),
                "greenlm": str(Path(greenlm.__file__).parent),
                "settings": {k: v for k, v in vars(args).items() if k not in ("src", "label")},
                "recommendations": dict(counts),
                "runs": runs,
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
