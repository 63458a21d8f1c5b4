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

- Energy here is modeled from busy CPU time, so an energy ratio is a CPU-time ratio; with
  RAPL/NVML counters int8 and bf16 kernels could also differ in power per second.
- **MiniLM**: bf16 is the winner within the 1 % fidelity budget (mean cosine 0.99995): this
  Xeon has AMX-BF16, so batched bf16 matmuls run several times faster than fp32. At batch
  32 the target (>= 2x) is met by bf16 alone; at batch 1 (one request at a time) the
  matrices are too small for AMX to pay off fully and bf16 stays below 2x (1.5-1.8x across
  runs). **Compiling** the bf16 model (`bf16+compile`, torch.compile) removes most of the
  per-operator overhead that dominates a 22M-parameter model at batch 1, and reaches 2.17x
  here (2.09x in a shorter check), close to the 2x line given this machine's noise; its
  one-off compile energy is paid back within a few hundred to a thousand inferences.
  Compiling pays little at batch 32 (1.0x alone, 3.95x with bf16 against bf16's 4.11x):
  there the matrix products dominate. Dynamic int8 (per-channel weight
  scales) is ~1.5-2.1x cheaper (across runs) but its mean cosine is 0.973, outside the
  budget: the FFN layers of MiniLM carry activation outliers that per-batch activation
  quantization clips. fp16 has no fast CPU kernels here. Weight-only int8 / 4-bit (`int8w`, `int4w`)
  cost *more* than fp32 here (~0.45-0.6x at batch 32, 0.75-0.95x at batch 1 across
  runs): every sentence makes each Linear a matrix-matrix product, where the float GEMM
  (and AMX bf16) is faster than the int8/int4-weight kernels; those pay off on the
  matrix-vector products of generation.
- **Unstructured pruning saves nothing**: 30 % zeros in dense matrices cost the same
  multiply-adds (0.8-1.1x across runs, within this shared machine's run-to-run noise; same
  size on disk) and lose fidelity.
- **Noise control**: `heads:0.25` and `heads:0.25+recover:3` have the same architecture
  (recovery changes weights, not shapes), so any gap between their energies is this shared
  machine's noise: 8 % at batch 32 and 4 % at batch 1 in this run, 3 % and 14 % in the
  previous one. Read differences below ~15 % as noise.
- Structured pruning (heads, FFN neurons) and low-rank factorization really shrink the
  matrices (4-12 % fewer parameters) and save 0-22 % of the energy (1.0-1.3x across
  runs), but lose far more than 1 % fidelity on a model this small. **Recovery fine-tuning**
  (`+recover:3`: 3 epochs on the 120 training sentences against the unmodified model,
  ~100 J) brings the mean cosine from 0.868 to 0.910 (heads) and from 0.833 to 0.909
  (FFN), still far outside a 1 % budget with so little data; its energy is paid back after
  a few thousand to tens of thousands of inferences. `heads:0.25+recover+bf16` is the
  cheapest variant within 0.1 of the original at batch 32 (3.7-4.2x across runs).
- Distillation to 3 layers on the 120 training sentences roughly halves the energy and pays its
  training energy back after a few thousand inferences, but such a small training set
  leaves the student far from the teacher (cosine ~0.8).
- **SmolLM2**: generation at batch 1 is a sequence of matrix-vector products, bound by
  reading the weights; bf16 gives no speed-up on them (AMX pays off on matrix-matrix
  products). Dynamic int8 halves the energy per token but triples the perplexity: it
  quantizes activations too, and SmolLM2's outlier activation channels set the scale for the
  others. Weight-only quantization keeps activations in floating point: `int8w` and
  `int4w:32` (LM head at int8) cut the energy per token with perplexity unchanged within
  noise. Keeping the LM head (tied to the 49k-token embedding) at int8 is what makes 4-bit
  work: in a check while building `int4w` (not part of this script; perplexity on 6 Lee
  documents) an all-4-bit model lost 5.8 % perplexity, with the head at int8 0.2 %.
  Compiling the 4-bit model (`int4w:32+compile`) cuts the energy per token further, to the
  lowest of all variants, at the same perplexity; compiling for generation is expensive
  here (~900 J, minutes of CPU) and is paid back after ~200 generations.
- **Same-cost control for SmolLM2**: `prune:0.3` does exactly the baseline's dense
  multiply-adds, yet measured 1.14x in this run (1.0x in the previous one): this run's
  baseline windows read ~14 % high, so its SmolLM2 ratios are that much optimistic.
  Against `prune:0.3`, `int4w:32` is 2.1x and `int4w:32+compile` 2.7x; the target
  (>= 1.5x) holds either way.
- **Fine-tuning**: LoRA trains 0.3 % of the parameters and costs ~35-45 % less energy per
  epoch than full fine-tuning; LoRA with bf16 autocast ~60-66 % less, at a final accuracy
  within a few points on this 80-sentence evaluation (which moves by 1.25 points per
  sentence). Gradient accumulation (same effective batch in 4 micro-batches) costs ~20 %
  more per epoch for the same result: it saves memory, not energy.
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
    args = ap.parse_args()
    if args.render_only:
        results = json.loads((RESULTS / "optimize.json").read_text())
        (RESULTS / "optimize.md").write_text(markdown(results, ".venv/bin/python benchmarks/bench_optimize.py"))
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
    (RESULTS / f"optimize{suffix}.md").write_text(markdown(results, argv))
    print(f"wrote {RESULTS}/optimize{suffix}.json and .md")


if __name__ == "__main__":
    main()
