"""``greenlm estimate``: predict energy, carbon and cost before running.

Sub-commands: ``train``, ``finetune``, ``inference``, ``lifecycle``, ``compare``,
``calibrate`` and ``hardware`` (lists the accelerator table). Registered by the top-level
CLI through :func:`register`; cheap to import (the estimator loads when a command runs).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterator
from typing import Any

from greenlm import argtypes as t


def _r(name: str) -> Any:
    """The argument type of the estimator input ``name``: its range from :mod:`greenlm.estimate.bounds`."""
    from greenlm.estimate.bounds import RANGES

    r = RANGES[name]
    if r.whole:
        return t.Whole(int(r.lo), int(r.hi), example=r.example)
    return t.Number(r.lo, r.hi, lo_open=r.lo_open, example=r.example)


def _carbon_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--location",
        type=t.LOCATION,
        help="grid location: FRA, US-CA, aws:us-east-1, ... (default: world average, flagged)",
    )
    g.add_argument(
        "--intensity",
        type=_r("intensity_kg_per_kwh"),
        metavar="KG_PER_KWH",
        help="grid intensity in kgCO2e/kWh instead of a location",
    )
    p.add_argument(
        "--pue",
        type=_r("pue"),
        help="power usage effectiveness >= 1 (default: cloud "
        "provider's fleet PUE, else a data-centre default with a range)",
    )
    p.add_argument("--price", dest="price_per_kwh", type=_r("price_per_kwh"), help="electricity price per kWh")
    p.add_argument("--currency", type=t.CURRENCY, help="ISO 4217 code of --price (default USD)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--explain", action="store_true", help="list every input with its source")


def _model_args(p: argparse.ArgumentParser, *, tokens: bool = True) -> None:
    p.add_argument("--params", type=_r("params"), required=True, help="parameters, e.g. 7e9")
    p.add_argument("--active-params", type=_r("active_params"), help="active parameters per token (MoE)")
    if tokens:
        p.add_argument(
            "--tokens",
            type=_r("tokens"),
            help="tokens processed, e.g. 2e12 (needed unless --chip-hours or --hours is given)",
        )
    p.add_argument(
        "--hardware",
        type=t.Text(200, example="A100"),
        required=True,
        help="accelerator: A100, H100, TPU v4, MI250X ... (`greenlm estimate hardware` lists them)",
    )
    p.add_argument("--chips", type=_r("chips"), help="number of accelerators")
    p.add_argument(
        "--precision",
        type=t.Text(16, example="bf16"),
        default="bf16",
        help="bf16 (default), fp16, fp8, tf32, fp32, int8",
    )
    p.add_argument("--layers", type=_r("layers"), help="transformer layers (optional)")
    p.add_argument("--hidden-size", type=_r("hidden_size"), help="model width d_model (optional)")


def _time_power_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--chip-hours", type=_r("chip_hours"), help="accelerator-hours, if known")
    p.add_argument("--hours", type=_r("hours"), help="wall-clock hours (with --chips)")
    p.add_argument("--mfu", type=_r("mfu"), help="model FLOPs utilisation in (0, 1]")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--power-w", type=_r("power_w"), help="average W per accelerator incl. its host")
    g.add_argument(
        "--power-basis",
        choices=["model", "tdp"],
        default="model",
        help="model (default): fraction of TDP + host share; tdp: TDP only, as publications that cost GPU-hours x TDP",
    )
    p.add_argument(
        "--calibrated",
        action="store_true",
        help="use MFU and power fitted by `greenlm estimate calibrate`",
    )


def register(subparsers: Any) -> None:
    """Add ``estimate`` and its sub-commands to the top-level parser's ``subparsers``."""
    est = subparsers.add_parser(
        "estimate",
        help="predict energy, CO2e and cost before running",
        description="Predict energy, CO2e and cost before running: a pre-training run (train), a fine-tune "
        "(finetune), a deployment (inference), a whole lifecycle from a plan (lifecycle), locations and "
        "hardware side by side (compare); calibrate the estimator on measured runs (calibrate); list the "
        "accelerators it knows (hardware).",
    )
    sub = est.add_subparsers(dest="estimate_command", metavar="COMMAND")
    est.set_defaults(func=lambda a: _help(est))

    p = sub.add_parser("train", help="pre-training run")
    _model_args(p)
    p.add_argument("--seq-len", type=_r("seq_len"), help="sequence length (adds the attention term)")
    p.add_argument("--flops", type=_r("flops"), help="total training FLOPs when known (replaces 6 x params x tokens)")
    p.add_argument(
        "--development-factor",
        type=_r("development_factor"),
        metavar="F",
        help="add development runs as F x the final run (e.g. 0.5: OLMo reported ~50%%)",
    )
    _time_power_args(p)
    _carbon_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("finetune", help="full or LoRA fine-tune")
    _model_args(p)
    p.add_argument("--method", choices=["full", "lora"], default="full", help="full (default) or lora")
    p.add_argument("--lora-rank", type=_r("lora_rank"), help="LoRA rank (default 8)")
    p.add_argument(
        "--target-modules",
        type=t.Text(200, example="q,v"),
        help="LoRA targets, e.g. q,v or q,k,v,o or all (default q,v)",
    )
    p.add_argument("--trainable-params", type=_r("trainable_params"), help="trainable parameters, if known")
    p.add_argument("--ffn-size", type=_r("ffn_size"), help="feed-forward width (default 4 x hidden size)")
    _time_power_args(p)
    _carbon_args(p)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("inference", help="serving over a deployment period")
    _model_args(p, tokens=False)
    p.add_argument("--queries-per-day", type=_r("queries_per_day"), required=True, help="queries served a day")
    p.add_argument("--days", type=_r("days"), required=True, help="days the deployment serves")
    p.add_argument("--input-tokens", type=_r("input_tokens"), required=True, help="prompt tokens per query")
    p.add_argument("--output-tokens", type=_r("output_tokens"), required=True, help="generated tokens per query")
    p.add_argument(
        "--batch-size", type=_r("batch_size"), default=1, help="concurrent sequences per replica (default 1)"
    )
    p.add_argument("--weights-bits", type=int, choices=[4, 8, 16, 32], default=16, help="bits per weight (default 16)")
    p.add_argument(
        "--weight-precision",
        type=t.Text(16, example="int4"),
        help="weight format: bf16, fp16, fp8, int8, mxfp4, nvfp4, int4, fp32 (overrides --weights-bits)",
    )
    p.add_argument("--tensor-parallel", type=_r("tensor_parallel"), help="chips per replica in tensor parallel")
    p.add_argument("--expert-parallel", type=_r("expert_parallel"), help="chips per replica in expert parallel (MoE)")
    p.add_argument(
        "--kv-bytes-per-token", type=_r("kv_bytes_per_token"), help="KV-cache bytes per token (default: from the shape)"
    )
    p.add_argument(
        "--hours-per-day",
        type=_r("hours_per_day"),
        default=24.0,
        help="hours a day the deployment is up; idle power counts when not busy (default 24)",
    )
    p.add_argument(
        "--busy-only",
        action="store_true",
        help="count busy time only (shared capacity billed per use): no idle power",
    )
    p.add_argument("--idle-power-w", type=_r("idle_power_w"), help="idle W per accelerator (default: a share of TDP)")
    p.add_argument("--mfu", type=_r("mfu"), help="share of peak throughput reached by compute, in (0, 1]")
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--power-w", type=_r("power_w"), help="average W per accelerator while serving (whatever it includes)"
    )
    g.add_argument(
        "--power-basis",
        choices=["model", "tdp"],
        default="model",
        help="model (default): fraction of TDP + host share; tdp: TDP only",
    )
    p.add_argument(
        "--calibrated",
        action="store_true",
        help="use the serving scales fitted by `greenlm estimate calibrate --bench FILE`",
    )
    _carbon_args(p)
    p.set_defaults(func=cmd_inference)

    p = sub.add_parser(
        "lifecycle",
        help="whole lifecycle from a plan YAML",
        description="Estimate a whole lifecycle from a plan YAML. "
        "`greenlm estimate lifecycle --example > plan.yaml` writes a complete example plan to start from.",
    )
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument(
        "--config",
        type=t.InputFile(example="plan.yaml"),
        metavar="PLAN",
        help="plan YAML (`greenlm estimate lifecycle --example > plan.yaml` writes an example)",
    )
    g.add_argument("--example", action="store_true", help="print the example plan (YAML) and exit")
    p.add_argument(
        "--weights",
        type=t.Text(200, example="compute=0.2,energy=0.3,carbon=0.5"),
        help="score weights, e.g. compute=0.2,energy=0.3,carbon=0.5",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_lifecycle)

    p = sub.add_parser("compare", help="rank locations / hardware for a plan")
    p.add_argument(
        "--config",
        type=t.InputFile(example="plan.yaml"),
        metavar="PLAN",
        required=True,
        help="plan YAML (`greenlm estimate lifecycle --example > plan.yaml` writes an example)",
    )
    p.add_argument(
        "--locations", type=t.Text(2000, example="FRA,USA"), help="comma-separated: FRA,USA,aws:us-east-1,..."
    )
    p.add_argument("--hardware", type=t.Text(2000, example="A100,H100"), help="comma-separated: A100,H100")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "calibrate",
        help="fit MFU and power on tracked runs, or serving scales on a bench file",
        description="Fit MFU and power per accelerator on tracked runs (their metadata give params and "
        "tokens; the tracker records the hardware), or, with --bench FILE, the serving model's time and "
        "energy scales on a `greenlm bench serve` result.",
    )
    p.add_argument(
        "--bench",
        type=t.InputFile(example="bench.json"),
        metavar="FILE",
        help="a `greenlm bench serve` JSON file: fit serving scales",
    )
    p.add_argument("--project", type=t.PROJECT, help="only runs of this project")
    p.add_argument("--store", type=t.STORE_URL, help="store URL (default: $GREENLM_STORE or runs.db in $GREENLM_HOME)")
    p.add_argument("--limit", type=t.Whole(1, 10**9, what="of runs"), help="newest N runs only")
    p.add_argument("--show", action="store_true", help="show the saved calibration, fit nothing")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("hardware", help="list the accelerators the estimator knows")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.set_defaults(func=cmd_hardware)


def _help(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


# ------------------------------------------------------------------------- formatting
def _g(x: float | None, unit: str = "") -> str:
    """A number for people: three significant figures, never an exponent (``humanize.count``)."""
    from greenlm import humanize as hz

    if x is None:
        return "–"
    return f"{hz.count(x)} {unit}".rstrip()


def _band(d: dict[str, Any], key: str) -> str:
    lo, hi = d["low"].get(key), d["high"].get(key)
    if lo is None or hi is None or lo == hi:
        return ""
    return f"  [{_g(lo)} – {_g(hi)}]"


def _flops_text(x: float) -> str:
    """FLOPs as people write them: ``8.40 x 10^22 FLOPs`` (word scales stop at quadrillion)."""
    from greenlm import humanize as hz

    if x <= 0 or not math.isfinite(x):
        return f"{hz.sig(x)} FLOPs"
    e = math.floor(math.log10(x))
    return f"{hz.sig(x / 10**e)} x 10^{e} FLOPs" if e >= 6 else f"{x:,.0f} FLOPs"


def _print_estimate(d: dict[str, Any], explain: bool) -> None:
    from greenlm import humanize as hz

    mwh = 3.6e9
    loc = d["location"]
    keys = ("accelerator_energy_mwh", "it_energy_mwh", "energy_mwh")
    unit = hz.energy_unit([d[k] * mwh for k in keys] + [d["high"].get("energy_mwh", 0.0) * mwh])

    def en(x: float | None) -> str:
        return hz.energy(None if x is None else x * mwh, unit)

    def band(key: str, fmt: Any) -> str:
        lo, hi = d["low"].get(key), d["high"].get(key)
        if lo is None or hi is None or lo == hi:
            return ""
        return f"  [{fmt(lo)} – {fmt(hi)}]"

    mu = hz.mass_unit([(side.get(k) or 0.0) * 1e6 for side in (d, d["high"]) for k in ("co2e_t", "embodied_co2e_t")])

    def t(x: float) -> str:
        return hz.co2e(x * 1e6, mu)

    chips = f" x {hz.count(d['chips'])}" if d.get("chips") else ""
    print(f"{d['kind']}: {d['hardware']}{chips}")
    if d.get("flops") is not None:
        print(f"  compute        {_flops_text(d['flops'])}")
    hours = f", {hz.duration(d['hours'] * 3600)} wall clock" if d.get("hours") else ""
    mfu = f", MFU {hz.sig(d['mfu'])}" if d.get("mfu") is not None and d["kind"] != "inference" else ""
    print(f"  time           {hz.sig(d['chip_hours'])} chip-hours{hours}{mfu}{band('chip_hours', hz.sig)}")
    print(f"  power          {hz.power(d['power_w_per_chip'])} per chip (average, incl. host share)")
    print(f"  accelerators   {en(d['accelerator_energy_mwh'])}{band('accelerator_energy_mwh', en)}  (no host, no PUE)")
    print(f"  IT energy      {en(d['it_energy_mwh'])}{band('it_energy_mwh', en)}  (with the host)")
    pue = d["inputs"].get("pue", {}).get("value")
    if pue:
        print(f"  energy         {en(d['energy_mwh'])}{band('energy_mwh', en)}  (facility, PUE {hz.sig(pue)})")
    print(
        f"  CO2e operat.   {t(d['co2e_t'])}{band('co2e_t', t)}  "
        f"({loc.get('code')}, {hz.sig(loc.get('intensity_g_per_kwh'))} g CO2e/kWh)"
    )
    print(
        f"  CO2e embodied  {t(d['embodied_co2e_t'])}{band('embodied_co2e_t', t)}  "
        "(manufacturing, amortized; not included above)"
    )
    print(f"  cost           {hz.money(d['cost'], d['currency'])}{band('cost', lambda x: hz.money(x))}")
    if "energy_wh_per_query" in d:
        print(
            f"  per query      {hz.energy(d['energy_wh_per_query'] * 3600)}, "
            f"{hz.co2e(d['co2e_g_per_query'])} (decode {d['decode_bound']}-bound)"
        )
        if d.get("j_per_output_token") is not None:
            pre = d.get("prefill_fraction")
            pre_s = f"; prompts {hz.percent(pre)} of the time" if pre is not None else ""
            print(
                f"  per token      {hz.energy(d['j_per_output_token'])} per output token (accelerators, busy)"
                f"{band('j_per_output_token', hz.energy)}{pre_s}"
            )
        cross = d.get("crossover_batch")
        cross_s = f"; compute-bound above a batch of {hz.sig(cross)}" if cross else ""
        print(
            f"  capacity       {hz.count(round(d['max_queries_per_day']))} queries/day at a batch of "
            f"{hz.count(d['inputs']['batch_size']['value'])} ({d['replicas']} replica(s), tensor parallel "
            f"{d['tensor_parallel']}, expert parallel {d['expert_parallel']}); busy "
            f"{hz.percent(d['busy_fraction'] or 0)} of the hours up{cross_s}"
        )
        print(f"  idle           {en(d['idle_energy_mwh'])} of the accelerator energy is idle time")
    _print_inputs(d, explain)


def _print_inputs(d: dict[str, Any], explain: bool) -> None:
    if explain:
        print("  inputs:")
        for k, v in d["inputs"].items():
            rng = f" [{_g(v['low'])} – {_g(v['high'])}]" if "low" in v else ""
            val = _g(v["value"]) if isinstance(v["value"], (int, float)) else v["value"]
            print(f"    {k} = {val}{rng}: {v['source']}")
    else:
        print("  (bands are plausible ranges; --explain lists every input and its source)")
    for w in d.get("warnings", []):
        print(f"warning: {w}")


def _emit(args: argparse.Namespace, result: Any) -> int:
    d = result.to_dict()
    if args.json:
        print(json.dumps(d, indent=2, default=str))
    else:
        _print_estimate(d, getattr(args, "explain", False))
    return 0


def _common(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "params": args.params,
        "active_params": args.active_params,
        "hardware": args.hardware,
        "chips": args.chips,
        "precision": args.precision,
        "power_w": args.power_w,
        "power_basis": args.power_basis,
        "pue": args.pue,
        "location": args.location,
        "intensity_kg_per_kwh": args.intensity,
        "price_per_kwh": args.price_per_kwh,
        "currency": args.currency,
    }


# --------------------------------------------------------------------------- handlers
def cmd_train(args: argparse.Namespace) -> int:
    from greenlm.estimate.training import train

    return _emit(
        args,
        train(
            tokens=args.tokens,
            layers=args.layers,
            hidden_size=args.hidden_size,
            seq_len=args.seq_len,
            chip_hours=args.chip_hours,
            hours=args.hours,
            mfu=args.mfu,
            calibrated=args.calibrated,
            flops=args.flops,
            development_factor=args.development_factor,
            **_common(args),
        ),
    )


def cmd_finetune(args: argparse.Namespace) -> int:
    from greenlm.errors import ConfigError
    from greenlm.estimate.training import finetune

    if args.tokens is None:
        raise ConfigError("greenlm estimate finetune needs --tokens (examples x tokens per example x epochs).")
    return _emit(
        args,
        finetune(
            tokens=args.tokens,
            method=args.method,
            lora_rank=args.lora_rank,
            target_modules=args.target_modules,
            trainable_params=args.trainable_params,
            layers=args.layers,
            hidden_size=args.hidden_size,
            ffn_size=args.ffn_size,
            chip_hours=args.chip_hours,
            hours=args.hours,
            mfu=args.mfu,
            calibrated=args.calibrated,
            **_common(args),
        ),
    )


def cmd_inference(args: argparse.Namespace) -> int:
    from greenlm.estimate.serving import inference

    return _emit(
        args,
        inference(
            queries_per_day=args.queries_per_day,
            days=args.days,
            input_tokens=args.input_tokens,
            output_tokens=args.output_tokens,
            batch_size=args.batch_size,
            weights_bits=args.weights_bits,
            weight_precision=args.weight_precision,
            tensor_parallel=args.tensor_parallel,
            expert_parallel=args.expert_parallel,
            layers=args.layers,
            hidden_size=args.hidden_size,
            kv_bytes_per_token=args.kv_bytes_per_token,
            hours_per_day=None if args.busy_only else args.hours_per_day,
            idle_power_w=args.idle_power_w,
            mfu=args.mfu,
            calibrated=args.calibrated,
            **_common(args),
        ),
    )


def cmd_lifecycle(args: argparse.Namespace) -> int:
    from greenlm.estimate.lifecycle_model import lifecycle
    from greenlm.estimate.plan import example_plan_text, load_plan

    if args.example:
        print(example_plan_text(), end="")
        return 0
    result = lifecycle(load_plan(args.config), args.weights)
    d = result.to_dict()
    if args.json:
        print(json.dumps(d, indent=2, default=str))
        return 0
    from greenlm import humanize as hz

    print(f"lifecycle: {d['name']} ({d['location'].get('code')})")
    rows = [*d["parts"], {**d, "name": "total"}]
    sides = [x for p in rows for x in (p, p.get("low") or {}, p.get("high") or {})]
    eu = hz.energy_unit([(x.get("energy_mwh") or 0.0) * 3.6e9 for x in sides])
    mu = hz.mass_unit([(x.get(k) or 0.0) * 1e6 for x in sides for k in ("co2e_t", "embodied_co2e_t", "total_co2e_t")])

    def en(x: float | None) -> str:
        return hz.energy(None if x is None else x * 3.6e9, eu)

    def t(x: float | None) -> str:
        return hz.co2e(None if x is None else x * 1e6, mu)

    print(f"  {'part':<22} {'energy':>12} {'CO2e':>16} {'embodied':>16} {'chip-hours':>12} {'cost':>14}")
    for p in rows:
        print(
            f"  {p['name']:<22} {en(p['energy_mwh']):>12} {t(p['co2e_t']):>16} "
            f"{t(p['embodied_co2e_t']):>16} {_g(p['chip_hours']):>12} "
            f"{hz.money(p['cost'], d.get('currency')):>14}"
        )
    print(
        f"  total CO2e (operational + embodied): {t(d['total_co2e_t'])}  "
        f"[energy {en(d['low']['energy_mwh'])} – {en(d['high']['energy_mwh'])}, "
        f"CO2e {t(d['low']['co2e_t'])} – {t(d['high']['co2e_t'])}]"
    )
    s = d["score"]
    parts = ", ".join(f"{k} {hz.sig(c['weight'])} x {_g(c['normalised'])}" for k, c in s["components"].items())
    print(f"  composite score {hz.sig(s['value'])} ({parts}); {s['note']}")
    for w in d["warnings"]:
        print(f"warning: {w}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from greenlm.estimate.comparison import compare
    from greenlm.estimate.plan import load_plan

    d = compare(load_plan(args.config), args.locations, args.hardware).to_dict()
    if args.json:
        print(json.dumps(d, indent=2, default=str))
        return 0
    from greenlm import humanize as hz

    eu = hz.energy_unit([(o.get("energy_mwh") or 0.0) * 3.6e9 for o in d["options"]])
    mu = hz.mass_unit([(o.get("total_co2e_t") or 0.0) * 1e6 for o in d["options"]])
    print(
        f"  {'#':>2} {'location':<20} {'hardware':<30} {'g CO2e/kWh':>10} {'energy':>12} "
        f"{'CO2e (op+emb)':>16} {'cost':>14}"
    )
    for o in d["options"]:
        print(
            f"  {o['rank']:>2} {o['location'] or '(plan)'!s:<20} "
            f"{o['hardware'] or '(plan)'!s:<30} {hz.sig(o['intensity_g_per_kwh']):>10} "
            f"{hz.energy(o['energy_mwh'] * 3.6e9, eu):>12} {hz.co2e(o['total_co2e_t'] * 1e6, mu):>16} "
            f"{hz.money(o['cost'], o['currency']):>14}"
        )
    return 0


#: From this many runs on, ``estimate calibrate`` shows its progress on stderr.
PROGRESS_MIN_RUNS = 20


def _with_progress(stored: list[Any]) -> Iterator[dict[str, Any]]:
    """Each run's dict, as the fit consumes it, with ``greenlm.progress`` lines on stderr for many runs."""
    if len(stored) < PROGRESS_MIN_RUNS:
        yield from (r.to_dict() for r in stored)
        return
    from greenlm.progress import Progress

    p = Progress("estimate calibrate")
    try:
        for i, r in enumerate(stored, 1):
            p.update(f"fitting run {i}/{len(stored)}", i, len(stored))
            yield r.to_dict()
    finally:
        p.close()


def cmd_calibrate(args: argparse.Namespace) -> int:
    from greenlm.estimate import calibration as cal

    if args.bench:
        fitted_bench, path = cal.calibrate_bench(args.bench)
        bd = {**fitted_bench.to_dict(), "path": str(path)}
        if args.json:
            print(json.dumps(bd, indent=2))
            return 0
        print(f"serving calibration: {path}")
        print(
            f"  {bd['hardware']}: time x {bd['time_scale']:.3f}, energy x {bd['energy_scale']:.3f} over "
            f"{bd['n_points']} point(s) ({bd['source']}); residual {bd['residual_pct']:.1f}% median abs. "
            "J/token error after scaling"
        )
        print("  `greenlm estimate inference --calibrated ...` uses it for this accelerator")
        return 0
    if args.show:
        table = cal.load() if not cal.load_serving() else cal.load_or_empty()
        result = cal.Calibration(table, [], cal.calibration_path())
    else:
        from greenlm.store import open_store

        stored = [
            r for r in open_store(args.store, read_only=True).list_runs(project=args.project, limit=args.limit) if r.ok
        ]
        result = cal.calibrate(_with_progress(stored))
    d = result.to_dict()
    if args.json:
        print(json.dumps(d, indent=2))
        return 0

    def rng(x: dict[str, float] | None) -> str:
        if not x:
            return "–"
        return f"{x['value']:.3f} [{x['low']:.3f}–{x['high']:.3f}]"

    print(f"calibration: {d['path']}")
    print(f"  {'hardware':<32} {'MFU':>22} {'power/TDP':>22} {'host/TDP':>22} {'runs':>5}")
    for h in d["hardware"].values():
        print(
            f"  {h['hardware']:<32} {rng(h['mfu']):>22} {rng(h['power_fraction']):>22} "
            f"{rng(h['host_fraction']):>22} {h['n_runs']:>5}"
        )
    for s in d["skipped"]:
        print(f"  skipped {s['run_id']}: {s['reason']}")
    if args.show:
        for sc in cal.load_serving().values():
            print(
                f"  serving {sc.hardware}: time x {sc.time_scale:.3f}, energy x {sc.energy_scale:.3f} "
                f"({sc.n_points} point(s), {sc.source})"
            )
    return 0


def cmd_hardware(args: argparse.Namespace) -> int:
    from greenlm.estimate.hardware import all_hardware

    hws = all_hardware()
    if args.json:
        print(json.dumps([h.to_dict() for h in hws], indent=2))
        return 0
    print(f"{'accelerator':<48} {'TDP':>8}  {'bf16':>9}  {'fp16':>9}  {'fp8':>9}  {'memory':>7}  {'bandwidth':>10}")
    for h in hws:
        peaks = h.peak_tflops_by_precision()
        bf16, fp16, fp8 = (_g(peaks[p]) if p in peaks else "–" for p in ("bf16", "fp16", "fp8"))
        print(
            f"{h.name:<48} {_g(h.tdp_w, 'W'):>8}  {bf16:>9}  {fp16:>9}  {fp8:>9}  "
            f"{_g(h.memory_gb, 'GB'):>7}  {_g(h.memory_bw_gbps, 'GB/s'):>10}"
        )
    print("(dense TFLOPS; – = not supported or not published: P100, V100 and T4 have no bf16)")
    return 0
