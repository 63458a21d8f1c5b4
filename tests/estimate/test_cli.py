import argparse
import json
import subprocess
import sys
from importlib import resources

import pytest

from greenlm.errors import ConfigError, GreenlmError
from greenlm.estimate.cli import register

PLAN = str(resources.files("greenlm.estimate") / "examples" / "plan.yaml")


def run(argv):
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    register(sub)
    args = p.parse_args(["estimate", *argv])
    return args.func(args)


def run_json(argv, capsys):
    assert run([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_train_json_mirrors_the_python_api(capsys):
    from greenlm.estimate import train

    d = run_json(
        [
            "train",
            "--params",
            "175e9",
            "--tokens",
            "300e9",
            "--hardware",
            "V100-SXM2",
            "--chips",
            "10000",
            "--location",
            "USA",
        ],
        capsys,
    )
    api = train(params=175e9, tokens=300e9, hardware="V100-SXM2", chips=10000, location="USA")
    assert d["energy_mwh"] == pytest.approx(api.energy_mwh)
    assert d["co2e_t"] == pytest.approx(api.co2e_t)
    assert d["inputs"]["mfu"]["source"]


def test_train_table_shows_units_and_bands(capsys):
    assert (
        run(
            [
                "train",
                "--params",
                "7e9",
                "--tokens",
                "1e12",
                "--hardware",
                "A100",
                "--location",
                "FRA",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "MWh" in out and "CO2e" in out and "embodied" in out and "[" in out


def test_intensity_flag_is_kg_per_kwh(capsys):
    d = run_json(
        [
            "train",
            "--params",
            "7e9",
            "--tokens",
            "1e12",
            "--hardware",
            "A100",
            "--intensity",
            "0.5",
            "--pue",
            "1.0",
        ],
        capsys,
    )
    assert d["co2e_t"] == pytest.approx(d["energy_mwh"] * 0.5)


def test_finetune_and_inference_commands(capsys):
    lora = run_json(
        [
            "finetune",
            "--params",
            "7e9",
            "--tokens",
            "1e8",
            "--hardware",
            "A100",
            "--method",
            "lora",
            "--lora-rank",
            "16",
            "--target-modules",
            "q,k,v,o",
        ],
        capsys,
    )
    full = run_json(["finetune", "--params", "7e9", "--tokens", "1e8", "--hardware", "A100"], capsys)
    assert lora["energy_mwh"] < full["energy_mwh"]
    inf = run_json(
        [
            "inference",
            "--params",
            "7e9",
            "--hardware",
            "L4",
            "--queries-per-day",
            "1000",
            "--days",
            "10",
            "--input-tokens",
            "300",
            "--output-tokens",
            "100",
            "--weights-bits",
            "4",
        ],
        capsys,
    )
    assert inf["queries"] == 10000 and inf["energy_wh_per_query"] > 0


def test_lifecycle_and_compare_commands(capsys):
    lc = run_json(["lifecycle", "--config", PLAN, "--weights", "compute=1,carbon=1"], capsys)
    assert lc["score"]["weights"]["energy"] == 0 and lc["energy_mwh"] > 0
    cmp = run_json(["compare", "--config", PLAN, "--locations", "POL,FRA", "--hardware", "A100,H100"], capsys)
    assert len(cmp["options"]) == 4
    assert cmp["options"][0]["location"] == "FRA"
    assert run(["lifecycle", "--config", PLAN]) == 0
    assert "composite score" in capsys.readouterr().out


def test_calibrate_command_reads_the_store(store_url, capsys):

    from .test_calibration import store_runs

    store_runs(store_url)
    d = run_json(["calibrate", "--store", store_url], capsys)
    (hw,) = d["hardware"].values()
    assert hw["n_runs"] == 3 and hw["mfu"]["value"] == pytest.approx(0.4)
    assert run(["calibrate", "--show"]) == 0
    assert "runs" in capsys.readouterr().out


def test_errors_are_greenlm_errors():
    with pytest.raises(ConfigError, match="conflict"):
        run(
            [
                "train",
                "--params",
                "7e9",
                "--tokens",
                "1e12",
                "--hardware",
                "A100",
                "--hours",
                "10",
                "--chips",
                "8",
                "--mfu",
                "0.4",
            ]
        )
    with pytest.raises(GreenlmError, match="Did you mean"):
        run(["train", "--params", "7e9", "--tokens", "1e12", "--hardware", "A1000"])


def test_argument_conflicts_exit_nonzero():
    with pytest.raises(SystemExit) as e:
        run(
            [
                "train",
                "--params",
                "7e9",
                "--tokens",
                "1e12",
                "--hardware",
                "A100",
                "--location",
                "FRA",
                "--intensity",
                "0.1",
            ]
        )
    assert e.value.code != 0
    with pytest.raises(SystemExit):
        run(["train", "--params", "nan", "--tokens", "1e12", "--hardware", "A100"])


def test_through_the_greenlm_command():
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "greenlm",
            "estimate",
            "train",
            "--params",
            "1e9",
            "--tokens",
            "2e10",
            "--hardware",
            "a100-80gb",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["hardware"].startswith("NVIDIA A100")
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "greenlm",
            "estimate",
            "train",
            "--params",
            "-1",
            "--tokens",
            "2e10",
            "--hardware",
            "A100",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "error: argument --params: must be >= 1" in bad.stderr and "Traceback" not in bad.stderr


def test_lifecycle_example_prints_a_plan_that_runs(capsys, tmp_path):
    from greenlm.estimate.plan import load_plan

    assert run(["lifecycle", "--example"]) == 0
    text = capsys.readouterr().out
    f = tmp_path / "plan.yaml"
    f.write_text(text, encoding="utf-8")
    assert load_plan(f).inference is not None
    assert run_json(["lifecycle", "--config", str(f)], capsys)["energy_mwh"] > 0


def test_lifecycle_help_points_to_a_way_that_works():
    out = subprocess.run(
        [sys.executable, "-m", "greenlm", "estimate", "lifecycle", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0
    assert "greenlm estimate lifecycle --example > plan.yaml" in " ".join(out.stdout.split())
    assert "examples/plan.yaml" not in out.stdout


def test_hardware_list_shows_bf16_only_where_the_chip_has_it(capsys):
    assert run(["hardware"]) == 0
    lines = {ln.split("  ")[0].strip(): ln for ln in capsys.readouterr().out.splitlines()}
    for name in ("NVIDIA Tesla P100 SXM2 16GB", "NVIDIA T4", "NVIDIA Tesla V100 SXM2 16GB"):
        cols = lines[name][48:].split()  # TDP, "W", bf16, fp16, fp8, ...
        assert cols[2] == "–", lines[name]
        assert cols[3] != "–", lines[name]
    a100 = lines["NVIDIA A100 SXM4 40GB"][48:].split()
    assert a100[2] == "312" and a100[3] == "312"
    d = run_json(["hardware"], capsys)
    t4 = next(h for h in d if h["name"] == "NVIDIA T4")
    assert t4["bf16"] is False and "bf16" not in t4["peak_tflops_by_precision"]


def test_inference_flags_and_capacity(capsys):
    d = run_json(
        [
            "inference",
            "--params",
            "70e9",
            "--hardware",
            "H100",
            "--chips",
            "4",
            "--tensor-parallel",
            "2",
            "--weight-precision",
            "fp8",
            "--batch-size",
            "64",
            "--queries-per-day",
            "2e5",
            "--days",
            "30",
            "--input-tokens",
            "500",
            "--output-tokens",
            "300",
            "--hours-per-day",
            "12",
        ],
        capsys,
    )
    assert d["replicas"] == 2 and d["tensor_parallel"] == 2
    assert d["inputs"]["compute_precision"]["value"] == "fp8"
    assert d["j_per_output_token"] > 0 and d["accelerator_energy_mwh"] < d["it_energy_mwh"] < d["energy_mwh"]
    assert (
        run(
            [
                "inference",
                "--params",
                "7e9",
                "--hardware",
                "A100",
                "--queries-per-day",
                "1e4",
                "--days",
                "1",
                "--input-tokens",
                "100",
                "--output-tokens",
                "100",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "per output token" in out and "queries/day" in out and "idle" in out
    busy = run_json(
        [
            "inference",
            "--params",
            "7e9",
            "--hardware",
            "A100",
            "--queries-per-day",
            "1e4",
            "--days",
            "1",
            "--input-tokens",
            "100",
            "--output-tokens",
            "100",
            "--busy-only",
        ],
        capsys,
    )
    assert busy["idle_energy_mwh"] == 0
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "greenlm",
            "estimate",
            "inference",
            "--params",
            "7e9",
            "--hardware",
            "A100",
            "--queries-per-day",
            "1e8",
            "--days",
            "1",
            "--input-tokens",
            "100",
            "--output-tokens",
            "100",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "more than the chips can serve" in bad.stderr and "Traceback" not in bad.stderr


def test_calibrate_bench_command(capsys, tmp_path):
    from .test_calibration import bench_doc

    f = tmp_path / "bench.json"
    f.write_text(json.dumps(bench_doc(1.1, 0.9)), encoding="utf-8")
    d = run_json(["calibrate", "--bench", str(f)], capsys)
    assert d["time_scale"] == pytest.approx(1.1, rel=1e-6) and d["n_points"] == 4
    assert run(["calibrate", "--bench", str(f)]) == 0
    assert "--calibrated" in capsys.readouterr().out
    assert run(["calibrate", "--show"]) == 0  # a serving calibration alone can be shown
    assert "serving NVIDIA H100" in capsys.readouterr().out


def test_calibrate_on_many_runs_shows_progress_on_stderr(store_url, capsys, monkeypatch):
    """Progress lines (greenlm.progress) go to stderr; stdout stays one JSON object."""
    from greenlm.estimate import cli as est_cli

    from .test_calibration import RUNS, store_runs

    monkeypatch.setattr(est_cli, "PROGRESS_MIN_RUNS", 2)
    store_runs(store_url)
    assert run(["calibrate", "--store", store_url, "--json"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["hardware"]
    assert "estimate calibrate" in cap.err and f"/{len(RUNS)}" in cap.err
