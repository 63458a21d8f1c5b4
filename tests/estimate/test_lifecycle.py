from importlib import resources

import pytest
import yaml

from greenlm.errors import ConfigError
from greenlm.estimate import compare, lifecycle, load_plan, parse_plan
from greenlm.estimate.lifecycle_model import parse_weights

EXAMPLE = resources.files("greenlm.estimate") / "examples" / "plan.yaml"


def example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


def test_example_plan_runs_and_total_is_sum_of_parts():
    r = lifecycle(load_plan(str(EXAMPLE)))
    d = r.to_dict()
    kinds = [p["kind"] for p in d["parts"]]
    assert kinds == ["train", "finetune", "inference", "storage", "transfer"]
    assert d["energy_mwh"] == pytest.approx(sum(p["energy_mwh"] for p in d["parts"]))
    assert d["co2e_t"] == pytest.approx(sum(p["co2e_t"] for p in d["parts"]))
    assert d["embodied_co2e_t"] == pytest.approx(sum(p["embodied_co2e_t"] for p in d["parts"]))
    for p in d["parts"]:
        assert p["energy_mwh"] > 0
    assert d["low"]["energy_mwh"] < d["energy_mwh"] < d["high"]["energy_mwh"]


def test_score_is_shown_beside_physical_units_and_follows_weights():
    plan = load_plan(str(EXAMPLE))
    carbon_only = lifecycle(plan, "carbon=1").to_dict()
    compute_only = lifecycle(plan, "compute=1").to_dict()
    # the physical units do not depend on the weights
    assert carbon_only["energy_mwh"] == pytest.approx(compute_only["energy_mwh"])
    assert carbon_only["score"]["value"] == pytest.approx(
        carbon_only["total_co2e_t"] / carbon_only["score"]["components"]["carbon"]["reference"]
    )
    assert carbon_only["score"]["value"] != pytest.approx(compute_only["score"]["value"])


def test_weights_are_normalised_and_validated():
    assert parse_weights("compute=1,carbon=3") == {"compute": 0.25, "energy": 0.0, "carbon": 0.75}
    assert sum(parse_weights(None).values()) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="water"):
        parse_weights("water=1")
    with pytest.raises(ConfigError, match="key=value"):
        parse_weights("carbon")
    with pytest.raises(ConfigError, match="zero"):
        parse_weights("carbon=0")


def test_plan_errors_name_the_bad_field():
    data = example()
    data["training"]["tokens"] = -5
    data["inference"]["weigths_bits"] = 8
    with pytest.raises(ConfigError) as e:
        parse_plan(data, "plan.yaml")
    msg = str(e.value)
    assert "training.tokens" in msg and "greater than 0" in msg
    assert "inference.weigths_bits" in msg and "unknown field" in msg


def test_plan_time_inputs_conflict():
    data = example()
    data["training"]["mfu"] = 0.4
    data["training"]["hours"] = 100
    with pytest.raises(ConfigError, match="only one of chip_hours, hours, mfu"):
        parse_plan(data)


def test_plan_needs_a_phase_and_hardware():
    with pytest.raises(ConfigError, match="no phase"):
        parse_plan({"model": {"params": 1e9}})
    with pytest.raises(ConfigError, match="no hardware"):
        parse_plan({"model": {"params": 1e9}, "training": {"tokens": 1e9}})


def test_missing_plan_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="Cannot read plan"):
        load_plan(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_plan(bad)


def test_compare_ranks_low_carbon_grid_first():
    from greenlm.carbon import resolve_location

    plan = load_plan(str(EXAMPLE))
    locs = ["POL", "FRA", "USA"]
    c = compare(plan, locs)
    ranked = [o.location for o in c.options]
    by_intensity = sorted(locs, key=lambda code: resolve_location(code).intensity_g_per_kwh)
    assert ranked == by_intensity
    assert c.best.location == by_intensity[0]
    totals = [o.estimate.total_co2e_t for o in c.options]
    assert totals == sorted(totals)


def test_compare_hardware_and_needs_something_to_compare():
    plan = load_plan(str(EXAMPLE))
    c = compare(plan, "FRA", "A100,H100")
    assert {o.hardware for o in c.options} == {"A100", "H100"}
    assert c.to_dict()["options"][0]["rank"] == 1
    with pytest.raises(ConfigError, match="Nothing to compare"):
        compare(plan)


def test_every_part_and_the_total_give_the_three_energy_scopes():
    plan = load_plan(str(EXAMPLE))
    d = lifecycle(plan).to_dict()
    for part in [*d["parts"], d]:
        assert "accelerator_energy_mwh" in part and "it_energy_mwh" in part and "energy_mwh" in part
        assert part.get("accelerator_energy_mwh", 0) <= part["it_energy_mwh"] <= part["energy_mwh"] + 1e-12
    storage = next(p for p in d["parts"] if p["kind"] == "storage")
    assert storage["accelerator_energy_mwh"] == 0
    assert d["accelerator_energy_mwh"] == pytest.approx(sum(p["accelerator_energy_mwh"] for p in d["parts"]))
    opt = compare(plan, ["FRA"], None).to_dict()["options"][0]
    assert opt["accelerator_energy_mwh"] < opt["it_energy_mwh"] < opt["energy_mwh"]
