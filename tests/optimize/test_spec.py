import pytest

from greenlm.errors import ConfigError
from greenlm.optimize.errors import TechniqueArgumentError, UnknownTechniqueError
from greenlm.optimize.spec import DEFAULT_TECHNIQUES, parse_techniques


def test_issue_example_parses_with_main_arguments():
    specs = parse_techniques("int8,fp16,prune:0.3,heads:0.25,lowrank:0.5,distill:layers=3")
    assert [s.name for s in specs] == ["int8", "fp16", "prune:0.3", "heads:0.25", "lowrank:0.5", "distill:3"]
    assert specs[2].params == {"sparsity": 0.3}
    assert specs[5].params["layers"] == 3


def test_default_techniques_parse():
    assert len(parse_techniques(DEFAULT_TECHNIQUES)) >= 8


def test_stacked_variant_and_keyword_arguments():
    (spec,) = parse_techniques("heads:0.25+int8")
    assert spec.technique == "heads+int8"
    assert [s.name for s in spec.steps] == ["heads", "int8"]
    (lr,) = parse_techniques("lowrank:rank=64")
    assert lr.params == {"rank": 64}


def test_unknown_technique_suggests_close_names():
    with pytest.raises(UnknownTechniqueError) as e:
        parse_techniques("int8,prnue:0.3")
    assert "prnue" in str(e.value) and "prune" in str(e.value)
    assert isinstance(e.value, ConfigError)


@pytest.mark.parametrize("bad", ["prune:1.0", "prune:-0.1", "prune:1.5"])
def test_sparsity_outside_unit_interval_is_rejected(bad):
    with pytest.raises(TechniqueArgumentError, match=r"\[0, 1\)"):
        parse_techniques(bad)


@pytest.mark.parametrize("bad", ["lowrank:rank=0", "lowrank:rank=-3", "lowrank:rank=2.5"])
def test_rank_must_be_a_positive_whole_number(bad):
    with pytest.raises(TechniqueArgumentError, match="rank >= 1"):
        parse_techniques(bad)


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ("lowrank:0", "(0, 1]"),
        ("heads:1", "(0, 1)"),
        ("distill:layers=0", "layers >= 1"),
        ("int8:3", "takes no arguments"),
        ("prune:abc", "not a number"),
        ("lowrank:rank=4:energy=0.9", "one of"),
        ("distill:width=3", "no argument 'width'"),
        (",", "No technique"),
        # recover fine-tunes what a structural step shrank, before any quantization
        ("recover", "put one of ffn, heads, lowrank before it"),
        ("int8+recover", "cannot follow int8"),
        ("heads:0.25+bf16+recover", "cannot follow bf16"),
        ("prune:0.3+heads:0.25+recover", "refill the weights it zeroed"),
        ("heads:0.25+recover:epochs=0", "epochs"),
        ("heads:0.25+recover:layers=2", "no argument 'layers'"),
    ],
)
def test_bad_arguments_say_what_would_be_right(bad, fragment):
    with pytest.raises(TechniqueArgumentError) as e:
        parse_techniques(bad)
    assert fragment in str(e.value)


def test_recover_follows_a_structural_step():
    (spec,) = parse_techniques("heads:0.25+recover:epochs=3:lr=0.0003+bf16")
    assert [s.name for s in spec.steps] == ["heads", "recover", "bf16"]
    assert spec.steps[1].args == {"epochs": 3, "lr": 0.0003}
    (default,) = parse_techniques("ffn:0.25+recover")
    assert default.steps[1].args == {"epochs": 3}
