import argparse
import json
import re

import pytest

from greenlm.cli import main
from greenlm.optimize import cli as optimize_cli


def _parser():
    parser = argparse.ArgumentParser(prog="greenlm")
    optimize_cli.register(parser.add_subparsers(dest="command"))
    return parser


def test_register_adds_optimize_and_finetune():
    args = _parser().parse_args(
        ["optimize", "--model", "smollm2", "--techniques", "int8", "--max-quality-drop", "0.05", "--json"]
    )
    assert args.func is optimize_cli.cmd_optimize
    assert (args.model, args.techniques, args.max_quality_drop, args.json) == ("smollm2", "int8", 0.05, True)
    args = _parser().parse_args(["optimize", "finetune", "--compare", "full,lora", "--epochs", "2"])
    assert args.func is optimize_cli.cmd_finetune
    assert (args.compare, args.epochs) == ("full,lora", 2)


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["optimize", "--techniques", "int8,quantum"], "Unknown technique 'quantum'"),
        (["optimize", "--techniques", "prune:1.2"], "[0, 1)"),
        (["optimize", "--techniques", "lowrank:rank=0"], "rank >= 1"),
        (["optimize", "--repeats", "0"], "--repeats"),
        (["optimize", "finetune", "--compare", "full+turbo"], "turbo"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    # greenlm's own checks say "error: ...", a bad option value is argparse's usage error
    assert (err.startswith("error: ") or "greenlm optimize: error: argument" in err) and fragment in err
    assert "Traceback" not in err


def test_a_path_that_is_not_a_model_exits_2(tmp_path, capsys):
    assert main(["optimize", "--model", str(tmp_path), "--techniques", "int8"]) == 2
    assert "is not a model" in capsys.readouterr().err


def test_json_on_stdout_is_one_object(capsys):
    code = main(
        [
            "optimize",
            "--model",
            "minilm",
            "--techniques",
            "bf16,bnb8",
            "--repeats",
            "1",
            "--samples",
            "8",
            "--location",
            "DEU",
            "--json",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    d = json.loads(out)
    assert d["model"] == "minilm" and d["task"] == "embedding"
    assert [v["name"] for v in d["variants"]] == ["baseline", "bf16", "bnb8"]
    assert d["variants"][2]["skipped_reason"]


def test_the_table_fits_80_columns_with_numbers_for_people(model_dir, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    techniques = "int8,bf16,heads:0.25+recover:epochs=1+bf16,lowrank:rank=8,bnb4"
    argv = ["optimize", "--model", str(model_dir), "--task", "embedding", "--samples", "6", "--repeats", "2"]
    assert main([*argv, "--techniques", techniques, "--location", "DEU"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines and max(len(line) for line in lines) <= 80, "\n".join(lines)
    header = next(line for line in lines if "variant" in line)
    assert header.split() == ["variant", "J/1k", "saving", "[interval]", "quality", "Δq"]
    rows = {line.split()[0]: line for line in lines if line.startswith(" ") and line.split()}
    assert {"baseline", "int8", "bf16", "bnb4"} <= set(rows)
    assert any(name.startswith("heads:0.25+recover") for name in rows)  # a long name may fold, never a number
    assert "skipped" in rows["bnb4"] and "bnb4: skipped: bnb4 (bitsandbytes) needs" in captured.out
    assert "pays back its recovery" in captured.out or "never pays back its recovery" in captured.out
    assert re.search(r"\d[eE][+-]?\d", captured.out) is None, "scientific notation in the terminal output"
    # progress went to stderr as plain lines (stderr is not a terminal here)
    assert re.search(r"^optimize: .+\(\d+/\d+, ", captured.err, re.M)
    assert captured.err.rstrip().splitlines()[-1].startswith("optimize: done (")
