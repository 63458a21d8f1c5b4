"""The cross-validated figures of docs/validation.md: fresh, honest (out-of-sample), not regressed."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from greenlm.estimate import fitted
from greenlm.estimate import validation as v
from greenlm.estimate import validation_serving as vs

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "footprints_dev.csv"
SERVE = ROOT / "tests" / "data" / "inference_dev.csv"
SOURCES = ("tests/data/footprints_dev.csv", "tests/data/inference_dev.csv")


@pytest.fixture(scope="module")
def train_rows():
    return v.read_rows(DATA)


@pytest.fixture(scope="module")
def serve_rows():
    return vs.read_rows(SERVE)


@pytest.fixture(scope="module")
def report(train_rows):
    return v.validate(train_rows)


@pytest.fixture(scope="module")
def serving(serve_rows):
    return vs.validate(serve_rows)


@pytest.mark.parametrize("key", sorted(v.THRESHOLDS))
def test_cross_validated_figures_do_not_regress(report, serving, key):
    s = v.summarise(report, serving)
    assert not s.failures({key: v.THRESHOLDS[key]}), (
        f"{key} = {s.figures[key]} is past its threshold {v.THRESHOLDS[key]} (see docs/validation.md)"
    )


def test_harder_splits_stay_within_the_targets(serve_rows):
    for by in ("vendor", "gpu"):
        med, within = vs.regrouped(serve_rows, by)
        assert med <= v.TARGETS["serving_median_pct"] and within >= v.TARGETS["serving_within_2x"], by


def test_rows_behind_each_figure(report, serving):
    assert report.mape("A", "energy")[1] >= 10
    assert report.mape("B", "energy")[1] >= 6
    assert report.median_ape("C", "energy")[1] >= 4
    assert len(serving.predictions) == 342 and serving.n_models == 15


def test_mode_a_reproduces_every_published_row_closely(report):
    for o in report.outcomes:
        if o.mode == "A" and not o.skipped:
            assert abs(o.energy_error_pct or 0) < 2, o
            assert abs(o.co2_error_pct or 0) < 2, o


def test_skipped_rows_say_why(report):
    skipped = [o for o in report.outcomes if o.skipped]
    assert skipped
    assert all(len(o.skipped) > 10 for o in skipped)


def test_parsers():
    assert v.parse_tokens("300B") == 3e11
    assert v.parse_tokens("15T+") == 1.5e13
    assert v.parse_tokens("'6K' (table4.csv) / 7000 (database.csv), in billions") is None
    assert v.power_basis_kind("TDP of NVLink A100 systems") == "tdp"
    assert v.power_basis_kind("measured system average power") == "measured"
    assert v.power_basis_kind("assumed average power per GPU") == "other"
    assert v.power_scope("measured system average power per accelerator incl. host CPU") == "system"
    assert v.power_scope("measured GPU power only") == "accelerator"
    assert v.power_scope("measured average power per GPU", "GPU energy x PUE") == "accelerator"
    assert v.power_scope("measured average power per GPU", "system power x PUE") == "system"
    assert v.power_scope("measured") == "system"
    assert v.model_group("GPT-3 175B (Luccioni et al. 2022 comparison table)") == v.model_group("GPT-3 175B")


def test_serving_predictions_never_see_the_model_they_predict(serve_rows):
    """Leave-one-model-out: changing a model's measurements cannot move its own predictions."""
    target = "Qwen/Qwen3-32B"
    points = [vs.row_point(r) for r in serve_rows]
    preds = vs.cross_validate(points)
    own = [p for p in preds if p.label["model"] == target]
    tampered_rows = [
        {**r, "energy_per_token_j": str(float(r["energy_per_token_j"]) * 10)} if r["model_id"] == target else r
        for r in serve_rows
    ]
    tampered = [p for p in vs.cross_validate([vs.row_point(r) for r in tampered_rows]) if p.label["model"] == target]
    # the measured value moved 10x, the prediction did not: the ratio moves exactly 10x
    for a, b in zip(own, tampered):
        assert b.j_ratio == pytest.approx(a.j_ratio / 10, rel=1e-9)
    # while another model's prediction does move (the fit uses the tampered rows)
    other = [p for p in preds if p.label["model"] != target]
    other_t = [p for p in vs.cross_validate([vs.row_point(r) for r in tampered_rows]) if p.label["model"] != target]
    assert any(abs(a.j_ratio - b.j_ratio) > 1e-6 for a, b in zip(other, other_t))


def test_training_host_share_is_refitted_without_the_row(train_rows):
    rows = [dict(r) for r in train_rows]
    before = {o.entry_id: o for o in v.validate(rows).outcomes if o.mode == "B"}
    for r in rows:
        if r["entry_id"] == "T04":  # T5-11B, TPU v3
            r["power_per_chip_W"] = "3100"
    after = {o.entry_id: o for o in v.validate(rows).outcomes if o.mode == "B"}
    assert after["T04"].energy_mwh == pytest.approx(before["T04"].energy_mwh)
    assert after["T05"].energy_mwh != pytest.approx(before["T05"].energy_mwh)


def test_docs_page_is_up_to_date(report, serving, serve_rows):
    page = ROOT / "docs" / "validation.md"
    sens = {0.5: vs.validate(serve_rows, 0.5), 1.0: serving, 2.0: vs.validate(serve_rows, 2.0)}
    harder = {k: vs.regrouped(serve_rows, k) for k in ("vendor", "gpu")}
    expected = v.render_markdown(report, serving, sens, SOURCES, harder)
    assert page.read_text(encoding="utf-8") == expected, (
        "docs/validation.md is stale: run python scripts/validate_estimator.py"
    )


def test_shipped_constants_are_the_fit_on_every_row(report, serving):
    path = ROOT / "src" / "greenlm" / "estimate" / "fitted.py"
    assert path.read_text(encoding="utf-8") == v.render_fitted(report, serving, SOURCES), (
        "src/greenlm/estimate/fitted.py is stale: run python scripts/validate_estimator.py"
    )
    assert fitted.SERVING["k_mem"] >= 1 and fitted.SERVING["k_compute"] >= 1
    assert 0 < fitted.SERVING_CV["ratio_p10"] < 1 < fitted.SERVING_CV["ratio_p90"]


def test_script_validates_other_data_without_touching_the_shipped_constants(tmp_path, serve_rows):
    """How a held-out set is checked: the same script on other files."""
    serve = tmp_path / "serve.csv"
    keep = [r for r in serve_rows if r["model_id"] in ("Qwen/Qwen3-8B", "meta-llama/Llama-3.1-8B-Instruct")]
    with serve.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(serve_rows[0]))
        w.writeheader()
        w.writerows(keep)
    fitted_before = (ROOT / "src" / "greenlm" / "estimate" / "fitted.py").read_text(encoding="utf-8")
    out = tmp_path / "validation.md"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "validate_estimator.py"),
            "--serving-data",
            str(serve),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "serving_median_pct" in proc.stdout
    assert "2 models" in out.read_text(encoding="utf-8")
    assert (ROOT / "src" / "greenlm" / "estimate" / "fitted.py").read_text(encoding="utf-8") == fitted_before


def test_unusable_serving_rows_are_listed_not_fatal(serve_rows):
    rows = [dict(r) for r in serve_rows[:60]]
    rows[0]["weight_precision"] = "fp3"
    rows[1]["gpu_model"] = "Z80"
    rows[2]["output_throughput_tok_s"] = ""
    rep = vs.validate(rows)
    assert len(rep.skipped) == 3 and len(rep.predictions) == 57
    assert any("weight format" in why for _, why in rep.skipped)
    assert any("Z80" in why for _, why in rep.skipped)
