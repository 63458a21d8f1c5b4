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
    from greenlm.store import open_store

    from .test_calibration import RUNS

    store = open_store(store_url)
    base = {
        "started_at": "2025-01-01T00:00:00Z",
        "facility_energy_j": 1.0,
        "energy_kwh": 1.0,
        "co2e_g": 1.0,
        "cost": 0.1,
        "currency": "USD",
        "pue": 1.0,
        "location": {"code": "FRA"},
        "phases": [],
        "steps": 0,
    }
    for r in RUNS:
        comps = [{**c, "provenance": "counter", "low_j": 0, "high_j": 0} for c in r["components"]]
        store.save_result({**base, **r, "components": comps})
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
    assert bad.stderr.startswith("error: params must be > 0")
