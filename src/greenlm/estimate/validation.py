"""Validation of the estimator against published footprints (tests/data/footprints_dev.csv).

Three modes, each giving the estimator only some of a row's published inputs:

* **A** — chip-hours and the publication's own power per chip (its power basis), its PUE and
  grid intensity: reproduces the published arithmetic, so errors should be ~0;
* **B** — chip-hours, PUE and intensity, but power from greenlm's power model; only rows
  whose power was *measured* (a modeled or TDP power is not a ground truth for a model);
* **C** — only parameters, tokens, hardware (and chips): the time comes from the default MFU
  model; power from greenlm's model, or TDP when the publication costed TDP (a choice of
  method, not an input value); PUE and intensity from the row (facts of the site).

A blank PUE means the publication applied none, so 1.0 is used. Rows that lack what a mode
needs are listed as skipped with the reason. Nothing here depends on a model's name.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greenlm.errors import GreenlmError
from greenlm.estimate.hardware import HardwareNotFoundError, find_hardware
from greenlm.estimate.training import train

MODES = ("A", "B", "C")

#: MAPE (%) the test allows per (mode, quantity): the first honest measurement plus margin.
#: Raise only with a reason written in docs/validation.md; never tune defaults to meet them.
THRESHOLDS_PCT: dict[tuple[str, str], float] = {
    ("A", "energy"): 1.0,
    ("A", "co2"): 1.0,
    ("B", "energy"): 22.0,
    ("B", "co2"): 22.0,
    ("C", "energy"): 22.0,
    ("C", "co2"): 25.0,
}
#: MAPE (%) measured when the thresholds were set (defaults as first written, untuned).
FIRST_MEASUREMENT_PCT: dict[tuple[str, str], float] = {
    ("A", "energy"): 0.37,
    ("A", "co2"): 0.40,
    ("B", "energy"): 18.0,
    ("B", "co2"): 18.0,
    ("C", "energy"): 17.4,
    ("C", "co2"): 20.3,
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
    """All outcomes and the mean absolute percentage error per mode and quantity."""

    outcomes: list[Outcome] = field(default_factory=list)

    def mape(self, mode: str, quantity: str) -> tuple[float | None, int]:
        """MAPE (%) and the number of rows behind it, for ``quantity`` energy or co2."""
        errs = [
            o.energy_error_pct if quantity == "energy" else o.co2_error_pct
            for o in self.outcomes
            if o.mode == mode and not o.skipped
        ]
        vals = [abs(e) for e in errs if e is not None]
        return (sum(vals) / len(vals) if vals else None), len(vals)


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


def evaluate_row(r: dict[str, str], mode: str) -> Outcome:
    """Run one mode on one row."""
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
    params = _f(r.get("params_active_B")) or _f(r.get("params_total_B"))
    chip_hours = _chip_hours(r)
    power_w = _f(r.get("power_per_chip_W"))
    basis = power_basis_kind(r.get("power_basis", ""))
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
    if mode == "A":
        if chip_hours is None or power_w is None:
            return Outcome(**base, skipped="needs chip-hours (or chips x days) and power per chip")
        kwargs.update(chip_hours=chip_hours, power_w=power_w, tokens=None)
    elif mode == "B":
        if basis != "measured":
            return Outcome(**base, skipped=f"power not measured (basis: {basis})")
        if chip_hours is None:
            return Outcome(**base, skipped="needs chip-hours (or chips x days)")
        kwargs.update(chip_hours=chip_hours, tokens=None, power_basis="model")
    else:
        tokens = parse_tokens(r.get("training_tokens", ""))
        if tokens is None:
            why = "ambiguous" if r.get("training_tokens") else "not published"
            return Outcome(**base, skipped=f"training tokens {why}")
        kwargs.update(
            tokens=tokens,
            chips=_f(r.get("n_chips")),
            power_basis="tdp" if basis == "tdp" else "model",
        )
    try:
        est = train(params=params * 1e9, hardware=hw, **kwargs)
    except GreenlmError as e:
        return Outcome(**base, skipped=f"estimator refused the inputs: {e}")
    return Outcome(
        **base,
        energy_mwh=est.energy_mwh if pub_e is not None else None,
        published_energy_mwh=pub_e,
        co2e_t=est.co2e_t if pub_c is not None else None,
        published_co2e_t=pub_c,
    )


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """Rows of a footprints CSV."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def validate(rows: Iterable[dict[str, str]]) -> Report:
    """Every mode on every row."""
    rows = list(rows)
    return Report([evaluate_row(r, m) for m in MODES for r in rows])


def _fmt(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "–"
    return f"{x:+.1f}%" if pct else f"{x:.4g}"


def render_markdown(report: Report, thresholds: dict[tuple[str, str], float], source: str) -> str:
    """Render the body of docs/validation.md."""
    out = [
        "# Validation of `greenlm estimate`",
        "",
        f"Generated by `scripts/validate_estimator.py` from `{source}`; do not edit by hand.",
        "Rows are published footprints with their inputs (see the data README); each mode "
        "gives the estimator only some of them (module `greenlm.estimate.validation`):",
        "",
        "* **A**: chip-hours + the publication's power per chip, PUE, intensity (reproduces the published arithmetic);",
        "* **B**: chip-hours + greenlm's power model; rows with *measured* power only;",
        "* **C**: params, tokens, hardware (+ chips); MFU from the default model; power from "
        "greenlm's model (or TDP where the publication costed TDP); PUE and intensity from the "
        "row.",
        "",
        "Blank PUE = the publication applied none (1.0 used). CO2 is compared only where the "
        "publication gives its grid intensity.",
        "",
        "## Mean absolute percentage error",
        "",
        "| mode | energy MAPE | rows | CO2 MAPE | rows | first measurement (energy / CO2) "
        "| test threshold (energy / CO2) |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in MODES:
        e, ne = report.mape(m, "energy")
        c, nc = report.mape(m, "co2")
        te, tc = thresholds.get((m, "energy")), thresholds.get((m, "co2"))
        fe, fc = FIRST_MEASUREMENT_PCT.get((m, "energy")), FIRST_MEASUREMENT_PCT.get((m, "co2"))
        out.append(
            f"| {m} | {_fmt(e)}% | {ne} | {_fmt(c)}% | {nc} | {_fmt(fe)}% / {_fmt(fc)}% | {_fmt(te)}% / {_fmt(tc)}% |"
        )
    out += [
        "",
        "## Reading the results",
        "",
        "* Mode A is arithmetic: the residual (under ~1%) is rounding in the published days, chip-hours and totals.",
        "* Mode B rows are Patterson et al. (2021) measurements of *system* power per "
        "accelerator. greenlm's power model over-predicts TPU v3 (TDP 450 W is a design limit "
        "far above the measured 245-310 W) and is close for V100 and TPU v2. The power "
        "fractions were not tuned to these rows (docs/estimate.md gives their sources).",
        "* Mode C combines the MFU default with the power basis. The published chip-hours "
        "imply these whole-run MFUs (6ND / peak / chip-hours): GPT-3 on V100 ~20% (default "
        "25%), BLOOM on A100 ~32% (default 40%; restarts and downtime are in the hours), "
        "LLaMA-7B ~43% and LLaMA-13B ~51%, StarCoder ~26%. StarCoder's small energy error is "
        "a cancellation: too few hours at the default MFU, times modeled power (420 W) above "
        "its assumed 280 W. Few rows publish tokens, so mode C rests on 4-5 rows: treat its "
        "MAPE as indicative.",
        "* Rows without the inputs a mode needs are listed as skipped with the reason (the "
        "Strubell et al. rows publish no parameter count).",
    ]
    for m in MODES:
        out += [
            "",
            f"## Mode {m}",
            "",
            "| row | model | energy est. (MWh) | published | error | CO2 est. (t) | published | error |",
            "|---|---|---|---|---|---|---|---|",
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
                f"{_fmt(o.co2_error_pct, True)} |"
            )
        if skipped:
            out += ["", "Skipped:", ""]
            out += [f"* {o.entry_id} ({o.model}): {o.skipped}" for o in skipped]
    return "\n".join(out) + "\n"
