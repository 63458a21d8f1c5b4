"""Validation of the estimator: published training footprints and measured serving energy.

Training (tests/data/footprints_dev.csv), three modes, each giving the estimator only some of
a row's published inputs:

* **A**: chip-hours and the publication's own power per chip, PUE and grid intensity:
  reproduces the published arithmetic, so errors should be ~0;
* **B**: chip-hours, PUE and intensity, power from greenlm's power model; only rows whose
  power was *measured* (a modeled or TDP power is not a ground truth for a model). The
  estimate is compared in the row's scope: system power (accelerator + host) unless the
  publication measured the accelerators only;
* **C**: parameters, tokens, hardware (and chips): the time comes from the default MFU model;
  power from greenlm's model where the publication measured it; where the publication's
  power was a convention (TDP, or an assumed watts per chip), the estimate uses the same
  convention, since the published energy then measures only its chip-hours; PUE and
  intensity from the row (facts of the site).

Constants fitted to measured power (the TPU host share) are refitted **leave-one-model-out**:
rows of the held-out model never inform its prediction. A blank PUE means the publication
applied none, so 1.0 is used. Rows that lack what a mode needs are listed as skipped with the
reason. Nothing here depends on a model's name beyond grouping rows of one model.

Serving: :mod:`greenlm.estimate.validation_serving` (leave-one-model-out on measured
deployments). :func:`render_markdown` writes docs/validation.md; :func:`render_fitted`
writes :mod:`greenlm.estimate.fitted`, the constants fitted on every row.
"""

from __future__ import annotations

import csv
import math
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greenlm.errors import GreenlmError
from greenlm.estimate import validation_serving as vs
from greenlm.estimate.hardware import HardwareNotFoundError, find_hardware
from greenlm.estimate.power import resolve_power
from greenlm.estimate.training import train

MODES = ("A", "B", "C")

#: Targets of issue 11 (cross-validated): mode B mean abs energy error, mode C median,
#: serving median abs J/token error and share within 2x.
TARGETS: dict[str, float] = {
    "B_mean_pct": 10.0,
    "C_median_pct": 20.0,
    "serving_median_pct": 20.0,
    "serving_within_2x": 0.90,
}
#: What the test allows (a regression guard): the first cross-validated measurement plus a
#: margin, never looser than needed. Raise only with a reason written in docs/validation.md.
THRESHOLDS: dict[str, float] = {
    "A_mean_pct": 1.0,
    "B_mean_pct": 8.0,
    "C_median_pct": 24.0,
    "serving_median_pct": 17.5,
    "serving_within_2x": 0.95,
}
_SCALE = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}


@dataclass(frozen=True)
class Outcome:
    """One row in one mode: estimate vs published, or why it was skipped."""

    entry_id: str
    model: str
    mode: str
    energy_mwh: float | None = None
    published_energy_mwh: float | None = None
    co2e_t: float | None = None
    published_co2e_t: float | None = None
    skipped: str | None = None
    note: str = ""

    @staticmethod
    def _err(est: float | None, pub: float | None) -> float | None:
        if est is None or pub is None or pub == 0:
            return None
        return 100.0 * (est - pub) / pub

    @property
    def energy_error_pct(self) -> float | None:
        return self._err(self.energy_mwh, self.published_energy_mwh)

    @property
    def co2_error_pct(self) -> float | None:
        return self._err(self.co2e_t, self.published_co2e_t)


@dataclass(frozen=True)
class Report:
    """All training outcomes, with mean and median absolute percentage errors per mode."""

    outcomes: list[Outcome] = field(default_factory=list)
    tpu_host_share: float | None = None  # fitted on every row (shipped)

    def errors(self, mode: str, quantity: str) -> list[float]:
        errs = [
            o.energy_error_pct if quantity == "energy" else o.co2_error_pct
            for o in self.outcomes
            if o.mode == mode and not o.skipped
        ]
        return [abs(e) for e in errs if e is not None]

    def mape(self, mode: str, quantity: str) -> tuple[float | None, int]:
        """Mean absolute percentage error and the number of rows behind it."""
        vals = self.errors(mode, quantity)
        return (sum(vals) / len(vals) if vals else None), len(vals)

    def median_ape(self, mode: str, quantity: str) -> tuple[float | None, int]:
        """Median absolute percentage error and the number of rows behind it."""
        vals = self.errors(mode, quantity)
        return (statistics.median(vals) if vals else None), len(vals)


def _f(text: str | None) -> float | None:
    if text is None:
        return None
    t = text.strip().replace(",", "")
    try:
        return float(t)
    except ValueError:
        return None


def parse_tokens(text: str) -> float | None:
    """``300B`` -> 3e11, ``1.0T`` / ``15T+`` -> 1e12 / 1.5e13; None when ambiguous."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMBT])\+?\s*", text or "", flags=re.I)
    if not m:
        return None
    return float(m.group(1)) * _SCALE[m.group(2).upper()]


def power_basis_kind(text: str) -> str:
    """``measured``, ``tdp`` or ``other`` from the row's free-text power basis."""
    t = (text or "").lower()
    if "tdp" in t or "peak power capacity" in t:
        return "tdp"
    if "measured" in t:
        return "measured"
    return "other"


def power_scope(text: str, energy_scope: str = "") -> str:
    """``system`` (accelerator + host) or ``accelerator``: what the row's power covers.

    System when the power basis or the energy scope names the system, host, node or what it
    includes; accelerator when they name only the GPU/chip/accelerator/device (what GPU-level
    meters such as nvidia-smi measure); system otherwise.
    """
    t = f"{text or ''} {energy_scope or ''}".lower()
    if any(k in t for k in ("system", "host", "incl.", "including", "node", "server", "facility")):
        return "system"
    if re.search(r"\b(gpus?|chips?|accelerators?|devices?|tpus?)\b", t):
        return "accelerator"
    return "system"


def model_group(model: str) -> str:
    """Rows of one model share a group (the name without its parenthesised source)."""
    base = re.split(r"\s+\(|\s+-\s+", model or "", maxsplit=1)[0]
    return re.sub(r"[^a-z0-9]+", "", base.lower())


def _hardware(text: str) -> str | None:
    name = re.sub(r"\(.*?\)", " ", text or "").strip()
    name = re.sub(r"^\d+\s*x\s*", "", name)
    if not name:
        return None
    try:
        return find_hardware(name).name
    except HardwareNotFoundError:
        return None


def _chip_hours(r: dict[str, str]) -> float | None:
    ch = _f(r.get("chip_hours"))
    if ch:
        return ch
    chips, days = _f(r.get("n_chips")), _f(r.get("training_days"))
    return chips * days * 24.0 if chips and days else None


def host_share_samples(rows: Iterable[dict[str, str]]) -> list[tuple[str, float]]:
    """(group, measured system power / published chip mean) for rows that give both."""
    out = []
    for r in rows:
        if r.get("phase") != "training" or power_basis_kind(r.get("power_basis", "")) != "measured":
            continue
        if power_scope(r.get("power_basis", ""), r.get("energy_scope", "")) != "system":
            continue
        hw = _hardware(r.get("hardware", ""))
        p = _f(r.get("power_per_chip_W"))
        if hw is None or p is None:
            continue
        chip = find_hardware(hw).measured_power_w
        if chip:
            out.append((model_group(r.get("model", "")), p / chip))
    return out


def fit_host_share(samples: Sequence[tuple[str, float]]) -> float | None:
    """Host share = geometric mean of (system / chip) - 1 over ``samples``; None without any."""
    if not samples:
        return None
    return math.exp(sum(math.log(s) for _, s in samples) / len(samples)) - 1.0


def evaluate_row(r: dict[str, str], mode: str, host_share: float | None = None) -> Outcome:
    """Run one mode on one row (``host_share``: the TPU host share fitted without this row)."""
    base: dict[str, Any] = {"entry_id": r["entry_id"], "model": r["model"], "mode": mode}
    if r.get("phase") != "training":
        return Outcome(**base, skipped="inference row: tokens per query not published")
    pub_e = _f(r.get("energy_MWh"))
    pub_c = _f(r.get("operational_tCO2e"))
    intensity = _f(r.get("carbon_intensity_kgCO2e_per_kWh"))
    if intensity is None:
        pub_c = None
    if pub_e is None and pub_c is None:
        return Outcome(**base, skipped="no published energy, and no CO2 with its intensity")
    hw = _hardware(r.get("hardware", ""))
    total_b = _f(r.get("params_total_B"))
    active_b = _f(r.get("params_active_B"))
    params = active_b or total_b
    chip_hours = _chip_hours(r)
    power_w = _f(r.get("power_per_chip_W"))
    basis_text = r.get("power_basis", "")
    basis = power_basis_kind(basis_text)
    pue = _f(r.get("PUE")) or 1.0
    kwargs: dict[str, Any] = {
        "pue": pue,
        "intensity_kg_per_kwh": intensity if intensity is not None else 0.0,
    }
    if hw is None:
        return Outcome(
            **base,
            skipped=f"hardware {r.get('hardware')!r} not in the accelerator table"
            if r.get("hardware")
            else "no hardware given",
        )
    if params is None:
        return Outcome(**base, skipped="no parameter count")
    note = ""
    hwo = find_hardware(hw)

    def modeled(scope: str) -> float:
        p = resolve_power(hwo, basis="model", host_share=host_share)
        if scope == "accelerator" and p.accelerator_w is not None:
            return p.accelerator_w.value
        return p.power_w.value

    try:
        if mode == "A":
            if chip_hours is None or power_w is None:
                return Outcome(**base, skipped="needs chip-hours (or chips x days) and power per chip")
            kwargs.update(chip_hours=chip_hours, power_w=power_w, tokens=None)
        elif mode == "B":
            if basis != "measured":
                return Outcome(**base, skipped=f"power not measured (basis: {basis})")
            if chip_hours is None:
                return Outcome(**base, skipped="needs chip-hours (or chips x days)")
            scope = power_scope(basis_text, r.get("energy_scope", ""))
            kwargs.update(chip_hours=chip_hours, tokens=None, power_w=modeled(scope))
            note = f"{scope} scope"
        else:
            tokens = parse_tokens(r.get("training_tokens", ""))
            if tokens is None:
                why = "ambiguous" if r.get("training_tokens") else "not published"
                return Outcome(**base, skipped=f"training tokens {why}")
            kwargs.update(tokens=tokens, chips=_f(r.get("n_chips")))
            if basis == "measured":
                kwargs["power_w"] = modeled(power_scope(basis_text, r.get("energy_scope", "")))
                note = "power: greenlm's model"
            elif basis == "tdp":
                kwargs["power_basis"] = "tdp"
                note = "power: TDP (the publication's convention)"
            elif power_w is not None:
                kwargs["power_w"] = power_w
                note = "power: the publication's assumed W (its convention)"
            else:
                kwargs["power_w"] = modeled("system")
                note = "power: greenlm's model"
            if total_b and active_b and active_b < total_b:
                kwargs["active_params"] = active_b * 1e9
                params = total_b
        est = train(params=params * 1e9, hardware=hw, **kwargs)
    except GreenlmError as e:
        return Outcome(**base, skipped=f"estimator refused the inputs: {e}")
    return Outcome(
        **base,
        energy_mwh=est.energy_mwh if pub_e is not None else None,
        published_energy_mwh=pub_e,
        co2e_t=est.co2e_t if pub_c is not None else None,
        published_co2e_t=pub_c,
        note=note,
    )


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """Rows of a footprints CSV."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def validate(rows: Iterable[dict[str, str]]) -> Report:
    """Every mode on every row, refitting the TPU host share without the row's model."""
    rows = list(rows)
    samples = host_share_samples(rows)
    out = []
    for m in MODES:
        for r in rows:
            g = model_group(r.get("model", ""))
            h = fit_host_share([s for s in samples if s[0] != g])
            out.append(evaluate_row(r, m, host_share=h if h is not None else 0.0))
    return Report(out, fit_host_share(samples))


# ------------------------------------------------------------------------------ rendering
def _fmt(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "–"
    return f"{x:+.1f}%" if pct else f"{x:.4g}"


def _p(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f}%"


@dataclass(frozen=True)
class Summary:
    """The figures the targets and thresholds are checked on."""

    figures: dict[str, float | None]

    def failures(self, limits: dict[str, float]) -> list[str]:
        out = []
        for key, limit in limits.items():
            v = self.figures.get(key)
            if v is None:
                out.append(f"{key}: not measured")
            elif (key.endswith("within_2x") and v < limit) or (not key.endswith("within_2x") and v > limit):
                out.append(f"{key}: {v:.4g} (limit {limit:g})")
        return out


def summarise(report: Report, serving: vs.ServingReport) -> Summary:
    """Headline figures: training modes and serving, all cross-validated."""
    return Summary(
        {
            "A_mean_pct": report.mape("A", "energy")[0],
            "B_mean_pct": report.mape("B", "energy")[0],
            "C_median_pct": report.median_ape("C", "energy")[0],
            "serving_median_pct": serving.median_abs_pct(),
            "serving_within_2x": serving.within_2x(),
        }
    )


def render_markdown(
    report: Report,
    serving: vs.ServingReport,
    sensitivity: dict[float, vs.ServingReport],
    sources: tuple[str, str],
    harder: dict[str, tuple[float, float]] | None = None,
) -> str:
    """Render docs/validation.md (``harder``: held-out groups larger than one model)."""
    s = summarise(report, serving).figures
    train_src, serve_src = sources

    def met(key: str) -> str:
        v, t = s[key], TARGETS[key]
        if v is None:
            return "not measured"
        ok = v >= t if key.endswith("within_2x") else v <= t
        return "**met**" if ok else "**not met**"

    b_mean, nb = report.mape("B", "energy")
    c_med, nc = report.median_ape("C", "energy")
    out = [
        "# Validation of `greenlm estimate`",
        "",
        f"Generated by `scripts/validate_estimator.py` from `{train_src}` and `{serve_src}`; do not "
        "edit by hand. Every error below is **cross-validated**: constants fitted on measurements are "
        "refitted without the model being predicted (leave-one-model-out), so the figures say how the "
        "estimator does on a model it was not fitted to.",
        "",
        "## Targets (issue 11)",
        "",
        "| what | cross-validated on the dev sets | target | |",
        "|---|---|---|---|",
        f"| training, chip-hours given, greenlm's power model (mode B) | {_p(b_mean)} mean abs. energy error "
        f"({nb} rows) | <= 10% | {met('B_mean_pct')} |",
        f"| training, parameters + tokens + hardware only (mode C) | {_p(c_med)} median abs. energy error "
        f"({nc} rows) | <= 20% | {met('C_median_pct')} |",
        f"| serving, J per output token, accelerators only | {_p(s['serving_median_pct'])} median abs. "
        f"error, {100 * (s['serving_within_2x'] or 0):.1f}% within 2x ({len(serving.predictions)} configs, "
        f"{serving.n_models} models) | <= 20% median, >= 90% within 2x | {met('serving_median_pct')}, "
        f"{met('serving_within_2x')} |",
        "",
        "The test (`tests/estimate/test_validation.py`) fails when this page is stale or a figure "
        "regresses past its threshold: " + ", ".join(f"`{k}` {v:g}" for k, v in THRESHOLDS.items()) + ".",
        "",
        "## Serving: J per output token on measured deployments",
        "",
        "Rows: ML.ENERGY leaderboard v3 (vLLM on NVIDIA H100 and B200, GPU energy only, steady state). "
        "The model (`greenlm.estimate.serving_model`) gets each row's parameters (total, active), weight "
        "precision, GPU model and count, tensor/expert-parallel degree, measured average batch and "
        "average output length, and predicts the step time and the energy. Its ten constants are "
        "fitted on the other models' rows (non-negative least squares on relative errors, each model "
        "weighted equally); the held-out model's rows are then predicted. Nothing is keyed to a model.",
        "",
        "**Prompt lengths are not in the data.** The validation assumes, per task: "
        + "; ".join(f"`{k}` {v:g} tokens ({vs.PROMPT_SOURCES[k]})" for k, v in vs.PROMPT_TOKENS.items())
        + f"; any other task {vs.DEFAULT_PROMPT_TOKENS:g}. How the error moves if every assumption is "
        "off by a factor of two:",
        "",
        "| prompt lengths | median abs. error | within 2x |",
        "|---|---|---|",
    ]
    for scale, rep in sorted(sensitivity.items()):
        out.append(f"| x {scale:g} | {rep.median_abs_pct():.1f}% | {100 * rep.within_2x():.1f}% |")
    c = serving.constants
    out += [
        "",
        "Also cross-validated: step time (inverse throughput) "
        f"{serving.median_abs_pct('time'):.1f}% and power {serving.median_abs_pct('power'):.1f}% median "
        "abs. error.",
    ]
    if harder:
        out += [
            "",
            "Harder splits (larger groups held out at once):",
            "",
            "| held out | median abs. error | within 2x |",
        ]
        out += ["|---|---|---|"]
        names = {"vendor": "every model of one organisation (Qwen, Meta, ...)", "gpu": "one GPU (fit on the other)"}
        for k, (med, w2) in harder.items():
            out.append(f"| {names.get(k, k)} | {med:.1f}% | {100 * w2:.1f}% |")
    out += [
        "",
        "Constants fitted on every row (shipped in `greenlm.estimate.fitted`): "
        f"{c.c_layer_s * 1e6:.1f} µs per layer per step, {c.c_tp_s * 1e6:.1f} µs more with tensor "
        f"parallelism, {c.c_ep_s * 1e6:.1f} µs more with expert parallelism; {100 / c.k_mem:.0f}% of "
        f"peak memory bandwidth and {100 / c.k_compute:.0f}% of peak throughput reached, expert GEMMs "
        f"{c.k_moe:.2f}x costlier; {c.c_seq_s * 1e6:.1f} µs per sequence per step; busy static draw "
        f"{c.p_static:.2f} x TDP, {c.e_byte_j * 1e12:.0f} pJ per byte read, {c.e_flop_j * 1e12:.2f} pJ "
        "per FLOP.",
        "",
        "| model | median abs. error | median signed error | configs |",
        "|---|---|---|---|",
    ]
    for k, (a, sgn, n) in serving.by("model").items():
        out.append(f"| {k} | {a:.1f}% | {sgn:+.1f}% | {n} |")
    out += ["", "| GPU | median abs. error | median signed error | configs |", "|---|---|---|---|"]
    for k, (a, sgn, n) in serving.by("gpu").items():
        out.append(f"| {k} | {a:.1f}% | {sgn:+.1f}% | {n} |")
    out += ["", "| batch (measured) | median abs. error | median signed error | configs |", "|---|---|---|---|"]
    bands = serving.by("batch_band")
    for k in ("<= 32", "33-256", "> 256"):
        if k in bands:
            a, sgn, n = bands[k]
            out.append(f"| {k} | {a:.1f}% | {sgn:+.1f}% | {n} |")
    if serving.skipped:
        out += ["", "Rows left out of the serving validation:", ""]
        out += [f"* {row}: {why}" for row, why in serving.skipped]
    out += [
        "",
        "Reading: the model is weakest where the data are shaped by software the inputs do not name "
        "(B200 runs with long reasoning outputs are several times slower per step than H100 runs of "
        "the same model; FP8 mixture-of-experts kernels; the Mamba hybrid, treated as a dense "
        "transformer of its size) and where the shape inferred from the parameter count is off "
        "(sliding-window or latent attention shrinks the KV cache; MoE models have more layers than "
        "a dense model of their active size). Give `layers`/`kv_bytes_per_token` when known.",
        "",
        "## Training: published footprints",
        "",
        "Rows are published footprints with their inputs (see the data README); each mode gives the "
        "estimator only some of them (module `greenlm.estimate.validation`):",
        "",
        "* **A**: chip-hours + the publication's power per chip, PUE, intensity (reproduces the published arithmetic);",
        "* **B**: chip-hours + greenlm's power model; rows with *measured* power only, compared in the "
        "row's scope (system power unless only accelerators were measured);",
        "* **C**: params, tokens, hardware (+ chips); MFU from the default model; power from greenlm's "
        "model where the publication measured it, else the publication's own convention (TDP or an "
        "assumed W per chip: the published energy then only measures chip-hours); PUE and intensity "
        "from the row.",
        "",
        "The TPU host share (system power over published chip power) is fitted leave-one-model-out on "
        f"the measured rows; on every row it is {report.tpu_host_share:.3f}."
        if report.tpu_host_share is not None
        else "No row gives both chip and system power: the TPU host share is 0.",
        "",
        "Blank PUE = the publication applied none (1.0 used). CO2 is compared only where the publication "
        "gives its grid intensity.",
        "",
        "| mode | energy: mean abs. | median abs. | rows | CO2: mean abs. | median abs. | rows |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in MODES:
        e, ne = report.mape(m, "energy")
        em, _ = report.median_ape(m, "energy")
        co, nco = report.mape(m, "co2")
        com, _ = report.median_ape(m, "co2")
        out.append(f"| {m} | {_p(e)} | {_p(em)} | {ne} | {_p(co)} | {_p(com)} | {nco} |")
    out += [
        "",
        "Reading:",
        "",
        "* Mode A is arithmetic: the residual (under ~1%) is rounding in the published days, chip-hours and totals.",
        "* Mode B: GPU system power is 0.76 x the rated maximum of the GPU's reference server (an "
        "8 x H100 node measured at 76% under training, a source outside these rows); it lands within "
        "3% of the P100 and V100 rows. TPU v3 uses the published fleet-mean chip power (220 W) times "
        "the fitted host share; the MoE Switch Transformer drew less (245 W) than dense runs on the "
        "same chips, the largest error. TPU v2 has no published chip mean and uses the class default.",
        "* Mode C rests on few rows (tokens are rarely published). The published chip-hours imply "
        "whole-run MFUs from ~20% (GPT-3, V100) and ~26% (StarCoder) to ~43-51% (LLaMA 7B/13B) on "
        "the same A100: software, not hardware, sets most of the spread, so the default cannot be "
        "close for all.",
        "* Rows without the inputs a mode needs are listed as skipped with the reason.",
    ]
    for m in MODES:
        out += [
            "",
            f"### Mode {m}",
            "",
            "| row | model | energy est. (MWh) | published | error | CO2 est. (t) | published | error | note |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        skipped = []
        for o in report.outcomes:
            if o.mode != m:
                continue
            if o.skipped:
                skipped.append(o)
                continue
            out.append(
                f"| {o.entry_id} | {o.model} | {_fmt(o.energy_mwh)} | "
                f"{_fmt(o.published_energy_mwh)} | {_fmt(o.energy_error_pct, True)} | "
                f"{_fmt(o.co2e_t)} | {_fmt(o.published_co2e_t)} | "
                f"{_fmt(o.co2_error_pct, True)} | {o.note} |"
            )
        if skipped:
            out += ["", "Skipped:", ""]
            out += [f"* {o.entry_id} ({o.model}): {o.skipped}" for o in skipped]
    return "\n".join(out) + "\n"


def _num(x: float) -> str:
    return repr(float(f"{x:.6g}"))


def render_fitted(report: Report, serving: vs.ServingReport, sources: tuple[str, str]) -> str:
    """Render src/greenlm/estimate/fitted.py: the constants fitted on every row."""
    c = serving.constants
    lines = [
        '"""Constants fitted on measurements, with their cross-validated errors (generated).',
        "",
        "Written by ``scripts/validate_estimator.py`` from",
        f"``{sources[0]}`` and ``{sources[1]}``;",
        "do not edit by hand (tests/estimate/test_validation.py fails when this file is stale).",
        "docs/validation.md gives the leave-one-model-out errors of the fitting procedure; these are",
        "its values on every row.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "#: Serving model constants (:class:`greenlm.estimate.serving_model.Constants`).",
        "SERVING: dict[str, float] = {",
    ]
    for k, v in c.to_dict().items():
        if k != "source":
            lines.append(f'    "{k}": {_num(v)},')
    lines += [
        "}",
        "SERVING_SOURCE = (",
        f'    "fitted on {len(serving.predictions)} measured vLLM configurations of {serving.n_models} models '
        '(ML.ENERGY v3, H100/B200); "',
        f'    "leave-one-model-out median abs. error {serving.median_abs_pct():.1f}% on J/output token"',
        ")",
        "#: Cross-validated predicted/measured J per output token: spread used as the estimate's band.",
        "SERVING_CV: dict[str, float] = {",
        f'    "median_abs_pct": {_num(serving.median_abs_pct())},',
        f'    "within_2x": {_num(serving.within_2x())},',
        f'    "ratio_p10": {_num(serving.quantile_ratio(0.1))},',
        f'    "ratio_p90": {_num(serving.quantile_ratio(0.9))},',
        "}",
        "#: Training constants fitted on measured power.",
        "TRAINING: dict[str, float] = {",
        f'    "tpu_host_share": {_num(report.tpu_host_share or 0.0)},',
        "}",
        "TRAINING_SOURCE = (",
        '    "host share fitted on measured TPU system power (Patterson et al. 2021) over published chip "',
        '    "means (Jouppi et al. 2023); cross-validated leave-one-model-out in docs/validation.md"',
        ")",
    ]
    return "\n".join(lines) + "\n"
