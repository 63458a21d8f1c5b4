import argparse
import json

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
    assert err.startswith("error: ") and fragment in err


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
