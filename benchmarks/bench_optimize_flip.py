"""Does ``greenlm optimize`` give the same answer twice? Runs one optimize command several
times back to back and counts the distinct recommendations.

The scenario is issue 15's: ``greenlm optimize --model minilm --techniques int8,bf16,...``
at batch 1, on a machine shared with other work (energy modeled from CPU time). ``prune:0``
is the baseline in disguise (zero sparsity: an identical copy, the same computation), so a
run that recommends it has taken noise for a saving.

``--scenario students`` is the stability test's (tests/optimize/test_stability.py) with
built-in techniques only: a config-built BERT (hidden 256, 4 layers), ``prune:0`` (an
identical copy), a 1-layer distilled student, and the same student after ``prune:0`` (the
same computation): the two students are equals, and so are the baseline and its copy.

The script uses only the API both the old and the new optimizer have, so the same command
measures both (``--src`` points at another checkout's ``src``)::

    .venv/bin/python benchmarks/bench_optimize_flip.py --runs 4
    .venv/bin/python benchmarks/bench_optimize_flip.py --runs 4 --src /tmp/greenlm-before/src

Writes ``benchmarks/results/optimize_flip[_students][_LABEL].json``.
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
STUDENTS = "prune:0,distill:layers=1:epochs=1,distill:layers=1:epochs=1+prune:0"


def _bert256() -> tuple[Any, Any]:
    import torch
    import transformers

    from greenlm.optimize import assets

    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=1024,
        max_position_embeddings=128,
    )
    tok = transformers.AutoTokenizer.from_pretrained(str(assets.minilm_path()))
    return tok, transformers.BertModel(cfg).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--scenario", choices=["minilm", "students"], default="minilm")
    ap.add_argument("--techniques", help=f"default: {TECHNIQUES} (minilm), {STUDENTS} (students)")
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
    students = args.scenario == "students"
    args.techniques = args.techniques or (STUDENTS if students else TECHNIQUES)
    if students:  # the stability test's settings
        args.samples, args.batch_size = 48, 16
    loaded = _bert256() if students else None
    runs: list[dict[str, Any]] = []
    for i in range(args.runs):
        t0 = time.perf_counter()
        report = optimize(
            OptimizeConfig(
                model="bert-256" if students else "minilm",
                task="embedding",
                techniques=args.techniques,
                repeats=args.repeats,
                samples=args.samples,
                batch_size=args.batch_size,
                threads=args.threads,
                location="DEU",
            ),
            loaded=loaded,
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
                "baseline_round_cv": report.variants[0].facts.get("energy_round_cv"),
                "baseline_trend": report.variants[0].facts.get("energy_trend"),
                "rounds": report.settings.get("rounds", args.repeats),
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
    name = "optimize_flip" + ("_students" if students else "") + (f"_{args.label}" if args.label else "")
    out = RESULTS / f"{name}.json"
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
