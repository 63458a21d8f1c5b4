"""The technique registry: a technique defined in a test module, registered by one line,
is parsed, applied by the runner and found by the CLI; its placement rule is enforced."""

import json

import pytest

from greenlm.cli import main
from greenlm.optimize import techniques
from greenlm.optimize.errors import TechniqueArgumentError, UnknownTechniqueError
from greenlm.optimize.runner import OptimizeConfig, optimize
from greenlm.optimize.spec import parse_techniques

BUILT_IN = {
    "int8",
    "int8w",
    "int4w",
    "fp16",
    "bf16",
    "bnb8",
    "bnb4",
    "prune",
    "heads",
    "ffn",
    "lowrank",
    "distill",
    "recover",
    "compile",
}


def test_every_built_in_technique_is_registered_from_its_module():
    reg = techniques.registry()
    assert set(reg) >= BUILT_IN
    for t in reg.values():
        assert t.module in techniques.TECHNIQUE_MODULES, t.name
        assert t.summary
    # structural steps are found by their tag, not by a list kept elsewhere
    assert techniques.tagged(techniques.STRUCTURAL) == ["ffn", "heads", "lowrank"]
    assert techniques.one_off_energy_facts() == {
        "distill_energy_j": "distillation",
        "recover_energy_j": "recovery",
        "compile_energy_j": "compilation",
    }


def test_a_technique_from_a_test_module_is_parsed_with_its_arguments(same_technique):
    assert same_technique.module == "tests.optimize.same_technique"
    specs = parse_techniques("same,same:2,same:copy=3+bf16")
    assert [s.name for s in specs] == ["same:1", "same:2", "same:3+bf16"]
    assert specs[1].params == {"copy": 2}
    with pytest.raises(TechniqueArgumentError, match="a whole copy number >= 1"):
        parse_techniques("same:0.5")
    with pytest.raises(TechniqueArgumentError, match="no argument 'width'; valid arguments: copy"):
        parse_techniques("same:width=2")


def test_its_placement_rule_is_enforced(same_technique):
    with pytest.raises(TechniqueArgumentError) as e:
        parse_techniques("bf16+same")
    assert str(e.value) == (
        "bf16+same:1: same must be the first step of a variant (it stands for the unmodified model), e.g. same+bf16."
    )


def test_an_unknown_name_lists_the_registered_ones(same_technique):
    with pytest.raises(UnknownTechniqueError) as e:
        parse_techniques("sam")
    msg = str(e.value)
    assert "Did you mean same?" in msg
    known = msg.split("Known techniques: ")[1].rstrip(".").split(", ")
    assert known == sorted(BUILT_IN | {"same"})


def test_gone_when_unregistered(same_technique):
    techniques.unregister("same")
    with pytest.raises(UnknownTechniqueError):
        parse_techniques("same")


def test_the_runner_applies_it(bert, tokenizer, fake_meter, same_technique):
    cfg = OptimizeConfig(model="tiny-bert", task="embedding", techniques="same:1", repeats=2, samples=6, batch_size=3)
    r = optimize(cfg, measure=fake_meter, loaded=(tokenizer, bert))
    same = r.variant("same:1")
    assert same.technique == "same" and same.facts == {"copy_number": 1}
    assert same.description == "an identical copy of the model (copy 1)"
    assert same.quality.value == pytest.approx(1.0, abs=1e-6) and same.quality_drop == pytest.approx(0.0, abs=1e-6)
    assert same.parameter_count == r.variant("baseline").parameter_count


def test_the_cli_finds_it(model_dir, same_technique, capsys):
    argv = ["optimize", "--model", str(model_dir), "--task", "embedding", "--samples", "4", "--repeats", "2"]
    assert main([*argv, "--techniques", "same:2", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert [v["name"] for v in d["variants"]] == ["baseline", "same:2"]
    assert d["variants"][1]["skipped_reason"] is None and d["variants"][1]["vs_baseline"]["rounds"] >= 2
    assert main([*argv, "--techniques", "bf16+same"]) == 2
    assert "same must be the first step" in capsys.readouterr().err
    assert main([*argv, "--techniques", "sane"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Unknown technique 'sane'. Did you mean same?") and "recover, same" in err
