"""greenlm optimize on real models: what each technique saves, measured on this machine.

Three parts (each a few minutes on a 2-core CPU):

* ``minilm``: all-MiniLM-L6-v2 sentence embeddings of gensim's polarity sentences, at
  batch 32 (offline embedding) and batch 1 (online, one request at a time). Target: the
  best variant within a 1 % fidelity drop (mean cosine to fp32 >= 0.99) uses >= 2x less
  energy per 1,000 inferences than fp32.
* ``smollm2``: SmolLM2-135M-Instruct, greedy generation of 16 tokens from prompts cut from
  gensim's Lee corpus; perplexity on held-out Lee documents. Target: >= 1.5x less energy
  per generated token within a 5 % perplexity rise.
* ``finetune``: MiniLM with a classification head on the polarity sentences: full
  fine-tuning vs LoRA (and with bf16 autocast, gradient accumulation), energy per epoch and
  final accuracy.

Energy comes from greenlm's EnergyTracker (modeled from CPU utilisation where no counter
is readable, which the output says). Torch runs on ``--threads`` threads (default 1: on a
shared 2-core machine, 2 OpenMP threads stall whenever another process takes a core).
Every variant is measured once per round, rounds interleaved; each saving is reported with
its paired, family-wise 95 % interval, and a target counts as met only when the interval's
lower end clears it.

Run: ``.venv/bin/python benchmarks/bench_optimize.py [--parts minilm,smollm2,finetune] [--merge]``
Writes ``benchmarks/results/optimize.json`` and ``benchmarks/results/optimize.md``
(``--merge``: the parts not re-run are kept from the existing ``optimize.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

from greenlm.optimize.techniques import one_off_energy_facts

RESULTS = Path(__file__).parent / "results"
MINILM_TECHNIQUES = (
    "int8,int8w,int4w,bf16,fp16,prune:0.3,heads:0.25,ffn:0.25,lowrank:0.5,heads:0.25+bf16,"
    "heads:0.25+recover,ffn:0.25+recover,heads:0.25+recover+bf16,distill:layers=3:epochs=3,compile,bf16+compile"
)
SMOLLM2_TECHNIQUES = "int8,int8w,int4w,bf16,prune:0.3,heads:0.34,ffn:0.25,lowrank:0.5,int4w:32+compile"


def _progress(desc: str, done: int, total: int) -> None:
    print(f"  [{done:>3}/{total}] {desc}", flush=True)


def run_optimize(label: str, **kw: Any) -> dict[str, Any]:
    from greenlm.optimize import OptimizeConfig, optimize
    from greenlm.optimize.report import recommendation_text, to_json

    t0 = time.perf_counter()
    report = optimize(OptimizeConfig(**kw), progress=_progress)
    d = json.loads(to_json(report))
    d["bench_label"] = label
    d["bench_wall_s"] = time.perf_counter() - t0
    d["recommendation_text"] = recommendation_text(report)
    print(d["recommendation_text"], flush=True)
    return d


def run_finetune(**kw: Any) -> dict[str, Any]:
    from greenlm.optimize import FinetuneConfig, finetune

    t0 = time.perf_counter()
    report = finetune(FinetuneConfig(**kw), progress=_progress)
    d = report.to_dict()
    d["bench_wall_s"] = time.perf_counter() - t0
    return d


def best_within(d: dict[str, Any], max_drop: float, per_token: bool) -> dict[str, Any]:
    """The recommended variant (significant saving within the budget), with its interval."""
    rec = d["recommendation"]
    base = next(v for v in d["variants"] if v["name"] == d["baseline"])
    best = next(v for v in d["variants"] if v["name"] == rec["variant"])
    return {
        "variant": best["name"],
        "energy_ratio": rec["energy_ratio"],
        "energy_ratio_low": rec.get("energy_ratio_low"),
        "energy_ratio_high": rec.get("energy_ratio_high"),
        "quality_drop": best["quality_drop"],
        "latency_ratio": base["latency_p50_ms"] / best["latency_p50_ms"],
    }


def _f(x: Any, spec: str = ".3g") -> str:
    return "-" if x is None else format(x, spec)


def _ratio(c: dict[str, Any] | None) -> str:
    """Baseline / variant energy ("x less") and its interval."""
    if not c:
        return "1.00x"
    text = f"{1 / c['ratio']:.2f}x"
    if c.get("low") and c.get("high"):
        text += f" ({1 / c['high']:.2f}-{1 / c['low']:.2f})"
    return text


def table(d: dict[str, Any], per_token: bool) -> list[str]:
    key = "energy_j_per_token" if per_token else "energy_j_per_1k"
    unit = "J/token" if per_token else "J/1k inf."
    base = next(v for v in d["variants"] if v["name"] == d["baseline"])
    unit += "" if per_token else " (min-max)"
    lines = [
        f"| variant | {unit} | vs fp32 (interval) | verdict | p50 ms | size MB | params | "
        f"{base['quality']['metric']} | {base['fidelity']['metric']} | drop |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in d["variants"]:
        if v["skipped_reason"]:
            lines.append(f"| {v['name']} | skipped: {v['skipped_reason']} ||||||||| ")
            continue
        sp = v["spread"]
        rng = ""
        if not per_token:
            rng = f" ({_f(sp['energy_j_per_1k_min'])}-{_f(sp['energy_j_per_1k_max'])})"
        note = ""
        trained = [
            (what, v["facts"][fact])
            for fact, what in one_off_energy_facts().items()
            if v["facts"].get(fact) is not None
        ]
        if trained:
            paid = v["facts"].get("payback_inferences")
            note = (
                " ("
                + ", ".join(f"{w} {j:.0f} J" for w, j in trained)
                + (f", paid back after {paid:,.0f} inferences)" if paid else ", never paid back)")
            )
        c = v.get("vs_baseline")
        verdict = "-" if v["name"] == d["baseline"] else (c or {}).get("verdict", "-")
        lines.append(
            f"| {v['name']}{note} | {_f(v[key])}{rng} | {_ratio(c)} | {verdict} | "
            f"{_f(v['latency_p50_ms'])} | {_f(v['size_mb'], '.1f')} | "
            f"{v['parameter_count'] / 1e6:.1f} M | {_f(v['quality']['value'], '.4g')} | "
            f"{_f(v['fidelity']['value'], '.4g')} | {_f(v['quality_drop'], '+.4f')} |"
        )
    return lines


READING = """### Reading the results

- This run was on an **AMD EPYC** VM (2 vCPUs, AVX-512 with BF16 but no AMX), shared with
  other jobs (load average 4-8 on its 2 cores); the previous figures were from an Intel
  Xeon with AMX. Energy is modeled from busy CPU time, so an energy ratio is a CPU-time
  ratio. Every variant was measured once per round, rounds interleaved; "vs fp32" is the
  paired geometric mean with its family-wise 95 % interval, and a target counts as met only
  when the whole interval clears it.
- **MiniLM**: bf16 is recommended at both batch sizes (1.81x [1.40, 2.34] at batch 32,
  1.61x [1.20, 2.15] at batch 1, cosine 0.99995). Without AMX, bf16 matmuls are far less
  of a win than on the Xeon (4.1x there at batch 32), and the 2x target is **not met** on
  this CPU. `bf16+compile` saves as much within noise (1.83x, 1.80x) and costs a one-off
  compile, so the simpler bf16 is recommended and `bf16+compile` named as an equal; at
  batch 1 `int8w` (1.24x) saves too, less. Dynamic `int8` saves more (2.3-2.5x) but its
  mean cosine is 0.973, outside the 1 % budget (activation outliers that per-batch int8
  clips), and so are `heads:0.25+bf16` (2.0x, cosine 0.87) and distillation (1.8-2.0x,
  cosine 0.80). fp16 has no fast CPU kernels: it costs 2.4-4.8x *more*. Weight-only
  quantization does not pay at batch 32 (`int8w` costs more, 0.73x; `int4w` 0.83x, no
  significant difference): each Linear is a matrix-matrix product there, where the float
  GEMM is faster. At batch 1 both save a little (1.24x, 1.38x; `int4w` is over the budget).
- **Same-cost controls**: `prune:0.3` (dense zeros, the same multiply-adds) and `compile`
  alone at batch 32 read "no significant difference" (0.95x [0.69, 1.30], 0.96x
  [0.76, 1.22]): the intervals, not a lucky median, decide. Structured pruning and low-rank
  (4-12 % fewer parameters) read 1.07-1.29x with intervals reaching 1 or below at 5 rounds:
  their saving, if any, is below what this busy machine resolves, and they lose far more
  than 1 % fidelity anyway. Recovery fine-tuning (`+recover:3`) lifts the mean cosine of
  `heads:0.25` from 0.87 to 0.91 and of `ffn:0.25` from 0.83 to 0.91 for 140-160 J.
- **SmolLM2**: generation at batch 1 is matrix-vector products bound by reading the
  weights; weight-only quantization keeps perplexity within 0.15 % and cuts the energy per
  token: `int4w:32` 2.27x [1.31, 3.92] is recommended, `int8w` 1.57x and
  `int4w:32+compile` 2.70x save as much within noise (the compile costs ~1.2 kJ once).
  This part ran 3 rounds (extended to 6 for the undecided) while the machine was at its
  busiest (baseline spread 17 %), so its intervals are wide: the 1.5x target is met on the
  estimate, and the interval reaches down to 1.31x. bf16 (1.18x) is no significant
  difference; dynamic int8 (2.3x) triples the perplexity.
- Fine-tuning was not re-run (unchanged code); its figures are the Xeon's.
"""


def markdown(results: dict[str, Any], argv: str) -> str:
    out = [
        "## greenlm optimize: energy saved vs quality lost (issue 4)",
        "",
        f"Reproduce: `{argv}`",
        "",
        f"Machine: {results['machine']}; torch threads: {results['threads']}. Energy "
        "from greenlm's EnergyTracker, **modeled** from this process's CPU utilisation "
        "(no RAPL/NVML counter on this VM): modeled energy is proportional to busy CPU "
        "time, so every energy ratio below is a CPU-time ratio. The machine is shared, "
        "so absolute figures carry load noise; medians over repeated windows, min-max "
        "shown.",
        "",
    ]
    for part in results["parts"]:
        d = part["result"]
        if part["kind"] == "optimize":
            per_token = d["task"] == "causal-lm"
            s = d["settings"]
            base = next(v for v in d["variants"] if v["name"] == d["baseline"])
            cv, trend = base["facts"].get("energy_round_cv"), base["facts"].get("energy_trend")
            out += [
                f"### {part['title']}",
                "",
                f"{s['samples']} inferences per window, batch {s['batch_size']}, "
                f"{s['repeats']} interleaved rounds (one window of every variant per round), "
                f"quality on {s['eval_items']} held-out items ({d['bench_wall_s']:.0f} s wall). "
                f"Intervals: {s['confidence']:.0%} family-wise (each at {s['confidence_per_variant']:.4f}). "
                + (
                    f"Baseline round-to-round spread {cv:.1%} (trend {trend:+.1%} over the run)."
                    if cv is not None
                    else ""
                ),
                "",
            ]
            out += table(d, per_token)
            b = part["best"]
            lo = b.get("energy_ratio_low")
            if b["variant"] == d["baseline"]:
                verdict = "NOT met (no significant saving within the budget)"
            elif lo is not None and lo >= part["target_ratio"]:
                verdict = "met (the whole interval is above it)"
            elif b["energy_ratio"] >= part["target_ratio"]:
                verdict = "met on the estimate, but the interval reaches below it"
            else:
                verdict = "NOT met"
            band = f" ({lo:.2f}x-{b['energy_ratio_high']:.2f}x)" if lo is not None else ""
            out += [
                "",
                f"**Target**: {part['target']}. **Result**: recommended `{b['variant']}` at "
                f"{b['energy_ratio']:.2f}x less energy{band} (quality drop {b['quality_drop']:+.4f}); "
                f"target {verdict}.",
                "",
                d["recommendation_text"],
                "",
            ]
        else:
            out += [
                f"### {part['title']}",
                "",
                f"{d['settings']['epochs']} epochs, batch {d['settings']['batch_size']}, "
                f"{d['settings']['train_items']} training / {d['settings']['eval_items']} "
                f"held-out sentences, lr full {d['settings']['lr_full']:g}, LoRA "
                f"{d['settings']['lr_lora']:g} ({d['bench_wall_s']:.0f} s wall).",
                "",
                "| mode | trainable params | J/epoch (min-max) | s/epoch | accuracy (final) | accuracy by epoch |",
                "|---|---|---|---|---|---|",
            ]
            for m in d["modes"]:
                if m["skipped_reason"]:
                    out.append(f"| {m['name']} | skipped: {m['skipped_reason']} |||||")
                    continue
                out.append(
                    f"| {m['name']} | {m['trainable_params']:,} | "
                    f"{m['energy_j_per_epoch']:.3g} ({m['energy_j_per_epoch_min']:.3g}-"
                    f"{m['energy_j_per_epoch_max']:.3g}) | {m['duration_s_per_epoch']:.2f} | "
                    f"{m['quality']['value']:.3f} | "
                    f"{', '.join(f'{q:.2f}' for q in m['quality_by_epoch'])} |"
                )
            out.append("")
        if part.get("comment"):
            out += [part["comment"], ""]
    return "\n".join(out) + "\n" + READING


def recommend_again(part: dict[str, Any], location: str) -> None:
    """Recompute a part's recommendation from its stored measurements (same data, current rule)."""
    from greenlm.carbon import CarbonConfig
    from greenlm.optimize.pareto import recommend
    from greenlm.optimize.report import recommendation_text, to_json
    from greenlm.optimize.results import OptimizeReport, VariantResult

    d = part["result"]
    variants = tuple(VariantResult.from_dict(v) for v in d["variants"])
    per_token = d["task"] == "causal-lm"
    rec = recommend(
        variants, d["baseline"], d["max_quality_drop"], per_token=per_token, carbon=CarbonConfig.build(location)
    )
    fields = {k: d[k] for k in ("model", "task", "baseline", "max_quality_drop", "device", "settings")}
    report = OptimizeReport(
        **fields,
        variants=variants,
        recommendation=rec,
        provenance_notes=d["provenance_notes"],
        warnings=tuple(d["warnings"]),
    )
    d["recommendation"] = json.loads(to_json(report))["recommendation"]
    d["recommendation_text"] = recommendation_text(report)
    part["best"] = best_within(d, d["max_quality_drop"], per_token)


def _part_name(part: dict[str, Any]) -> str:
    if part["kind"] == "finetune":
        return "finetune"
    return "smollm2" if part["result"]["task"] == "causal-lm" else "minilm"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="minilm,smollm2,finetune")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--location", default="DEU")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--render-only", action="store_true", help="rewrite optimize.md from an existing optimize.json")
    ap.add_argument("--merge", action="store_true", help="keep the parts not re-run from the existing optimize.json")
    ap.add_argument(
        "--recommend-again",
        action="store_true",
        help="with --render-only: recompute each recommendation from the stored measurements",
    )
    args = ap.parse_args()
    if args.render_only:
        results = json.loads((RESULTS / "optimize.json").read_text())
        if args.recommend_again:
            for part in results["parts"]:
                if part["kind"] == "optimize":
                    recommend_again(part, results["location"])
            (RESULTS / "optimize.json").write_text(json.dumps(results, indent=2) + "\n")
        (RESULTS / "optimize.md").write_text(markdown(results, results.get("argv") or "bench_optimize.py"))
        return
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    import torch

    from greenlm.optimize.runner import machine_description

    torch.set_num_threads(args.threads)
    parts = args.parts.split(",")
    results: dict[str, Any] = {
        "machine": machine_description("cpu"),
        "threads": args.threads,
        "location": args.location,
        "parts": [],
    }
    common = {"threads": args.threads, "location": args.location, "repeats": args.repeats}
    if "minilm" in parts:
        for bs, samples in ((32, 256), (1, 64)):
            print(f"MiniLM embedding, batch {bs}", flush=True)
            d = run_optimize(
                f"minilm-b{bs}",
                model="minilm",
                task="embedding",
                techniques=MINILM_TECHNIQUES,
                batch_size=bs,
                samples=samples,
                max_quality_drop=0.01,
                **common,
            )
            results["parts"].append(
                {
                    "kind": "optimize",
                    "title": f"all-MiniLM-L6-v2, embeddings, batch {bs}",
                    "result": d,
                    "best": best_within(d, 0.01, False),
                    "target_ratio": 2.0,
                    "target": ">= 2x less energy per 1,000 inferences than fp32 with mean cosine >= 0.99",
                }
            )
    if "smollm2" in parts:
        print("SmolLM2-135M causal LM", flush=True)
        d = run_optimize(
            "smollm2",
            model="smollm2",
            task="causal-lm",
            techniques=SMOLLM2_TECHNIQUES,
            batch_size=1,
            samples=8,
            max_new_tokens=16,
            max_quality_drop=0.05,
            **{**common, "repeats": max(3, args.repeats - 2)},
        )
        results["parts"].append(
            {
                "kind": "optimize",
                "title": "SmolLM2-135M-Instruct, greedy generation",
                "result": d,
                "best": best_within(d, 0.05, True),
                "target_ratio": 1.5,
                "target": ">= 1.5x less energy per generated token with perplexity <= +5 %",
            }
        )
    if "finetune" in parts:
        print("MiniLM fine-tuning: full vs LoRA", flush=True)
        d = run_finetune(
            model="minilm",
            task="classification",
            compare="full,lora,lora+amp,full+amp,full+accum=4",
            epochs=args.epochs,
            batch_size=16,
            lr_full=1e-4,
            lr_lora=2e-3,
            location=args.location,
        )
        results["parts"].append(
            {"kind": "finetune", "result": d, "title": "Fine-tuning MiniLM on polarity: full vs LoRA"}
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "" if set(parts) == {"minilm", "smollm2", "finetune"} or args.merge else "_" + "_".join(parts)
    if args.merge and (RESULTS / "optimize.json").is_file():
        old = json.loads((RESULTS / "optimize.json").read_text())
        kept = [p for p in old["parts"] if _part_name(p) not in parts]
        for p in kept:
            p.setdefault("comment", "")
            p["comment"] = (f"(Not re-run: kept from an earlier run on {old['machine']}.) " + p["comment"]).strip()
        order = ["minilm", "smollm2", "finetune"]
        results["parts"] = sorted(results["parts"] + kept, key=lambda p: order.index(_part_name(p)))
    (RESULTS / f"optimize{suffix}.json").write_text(json.dumps(results, indent=2) + "\n")
    argv = ".venv/bin/python benchmarks/bench_optimize.py" + (f" --parts {args.parts}" if suffix or args.merge else "")
    argv += " --merge" if args.merge else ""
    results["argv"] = argv
    (RESULTS / f"optimize{suffix}.md").write_text(markdown(results, argv))
    print(f"wrote {RESULTS}/optimize{suffix}.json and .md")


if __name__ == "__main__":
    main()
