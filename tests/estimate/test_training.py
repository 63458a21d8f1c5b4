import math

import pytest

from greenlm.errors import ConfigError, LocationNotFoundError
from greenlm.estimate import finetune, train
from greenlm.estimate.hardware import HardwareNotFoundError


def gpt3(**kw):
    args = dict(params=175e9, tokens=300e9, hardware="V100", chips=10000)
    args.update(kw)
    return train(**args)


def test_published_arithmetic_is_reproduced_when_all_factors_are_given():
    # Patterson et al. 2021 for GPT-3: 10,000 V100 x 14.8 days x 330 W x PUE 1.1 x 0.429 kg/kWh
    chip_hours = 10000 * 14.8 * 24
    r = gpt3(chip_hours=chip_hours, power_w=330, pue=1.1, intensity_kg_per_kwh=0.429)
    expected_mwh = chip_hours * 330 * 1.1 / 1e6
    assert r.energy_mwh == pytest.approx(expected_mwh)
    assert r.it_energy_mwh == pytest.approx(expected_mwh / 1.1)
    assert r.co2e_t == pytest.approx(expected_mwh * 0.429)
    d = r.to_dict()
    # everything given exactly: no band on energy or operational CO2
    assert d["low"]["energy_mwh"] == pytest.approx(d["high"]["energy_mwh"])
    assert d["low"]["co2e_t"] == pytest.approx(d["energy_mwh"] * 0.429)


def test_json_has_the_promised_keys_and_every_input_has_a_source():
    d = gpt3(location="USA").to_dict()
    for key in (
        "flops",
        "chip_hours",
        "it_energy_mwh",
        "energy_mwh",
        "co2e_t",
        "embodied_co2e_t",
        "cost",
        "inputs",
        "low",
        "high",
    ):
        assert key in d
    for side in ("low", "high"):
        for key in ("energy_mwh", "co2e_t", "it_energy_mwh", "embodied_co2e_t"):
            assert key in d[side]
    assert d["low"]["energy_mwh"] < d["energy_mwh"] < d["high"]["energy_mwh"]
    assert d["low"]["co2e_t"] < d["co2e_t"] < d["high"]["co2e_t"]
    for name, inp in d["inputs"].items():
        assert inp["source"], name
    assert "mfu" in d["inputs"] and "pue" in d["inputs"] and "power_w_per_chip" in d["inputs"]


def test_energy_scales_with_tokens_and_more_chips_cost_only_beyond_the_reference_scale():
    a = gpt3()
    assert gpt3(tokens=600e9).energy_mwh == pytest.approx(2 * a.energy_mwh)
    # up to the scale the V100 MFU was measured at (512 GPUs), chips only shorten the run
    small, double = gpt3(chips=256), gpt3(chips=512)
    assert double.energy_mwh == pytest.approx(small.energy_mwh)
    assert double.hours == pytest.approx(small.hours / 2)
    # beyond it, collectives cost MFU: ~5% per doubling (Llama 3), so energy grows
    more = gpt3(chips=20000)
    assert more.energy_mwh / a.energy_mwh == pytest.approx(
        (1 - 0.05 * math.log2(10000 / 512)) / (1 - 0.05 * math.log2(20000 / 512))
    )
    assert more.hours < a.hours
    assert "chips against the reference" in more.inputs["mfu"].source


def test_higher_mfu_means_less_energy():
    assert gpt3(mfu=0.5).energy_mwh < gpt3(mfu=0.25).energy_mwh


def test_location_changes_carbon_not_energy():
    fra, pol = gpt3(location="FRA"), gpt3(location="POL")
    assert fra.energy_mwh == pytest.approx(pol.energy_mwh)
    assert fra.co2e_t < pol.co2e_t / 5


def test_intensity_in_kg_per_kwh():
    r = gpt3(intensity_kg_per_kwh=0.5, pue=1.0)
    assert r.co2e_t == pytest.approx(r.energy_mwh * 0.5)


def test_tdp_basis_reproduces_gpu_hours_times_tdp():
    # LLaMA paper arithmetic: GPU-hours x 400 W (A100 TDP) x PUE 1.1
    r = train(
        params=6.7e9,
        tokens=1e12,
        hardware="A100",
        chip_hours=82432,
        power_basis="tdp",
        pue=1.1,
        intensity_kg_per_kwh=0.385,
    )
    assert r.energy_mwh == pytest.approx(82432 * 0.4 * 1.1 / 1000)


def test_modeled_power_includes_host_share_and_differs_from_tdp():
    model = gpt3(chip_hours=1000)
    tdp = gpt3(chip_hours=1000, power_basis="tdp")
    assert model.power_w.value != tdp.power_w.value
    assert model.power_w.low < model.power_w.value < model.power_w.high


def test_embodied_is_separate_and_positive():
    r = gpt3(location="FRA")
    d = r.to_dict()
    assert d["embodied_co2e_t"] > 0
    assert d["total_co2e_t"] == pytest.approx(d["co2e_t"] + d["embodied_co2e_t"])
    # embodied does not depend on the grid
    assert gpt3(location="POL").embodied_co2e_t == pytest.approx(r.embodied_co2e_t)


def test_moe_uses_active_parameters():
    dense = train(params=1.5e12, tokens=1e11, hardware="TPU v3")
    moe = train(params=1.5e12, active_params=1.5e9, tokens=1e11, hardware="TPU v3")
    assert moe.flops == pytest.approx(dense.flops / 1000)
    with pytest.raises(ConfigError, match="cannot exceed"):
        train(params=1e9, active_params=2e9, tokens=1e9, hardware="A100")


def test_default_location_is_flagged():
    r = gpt3()
    assert r.location["defaulted"] is True
    assert any("world average" in w for w in r.warnings)


def test_cloud_region_uses_the_providers_pue():
    r = gpt3(location="gcp:europe-west4")
    assert r.inputs["pue"].value < 1.2
    assert "gcp" in r.inputs["pue"].source.lower()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(hours=10, mfu=0.4), "conflict"),
        (dict(chip_hours=10, mfu=0.4), "conflict"),
        (dict(chip_hours=10, hours=1), "conflict"),
        (dict(mfu=0), "MFU"),
        (dict(mfu=1.2), "MFU"),
        (dict(mfu=float("nan")), "MFU"),
        (dict(hours=-3), "hours"),
        (dict(chip_hours=0), "chip-hours"),
        (dict(pue=0.8), "PUE"),
        (dict(chips=0), "chips"),
        (dict(chips=2.5), "whole number"),
        (dict(power_w=-1), "power"),
        (dict(params=0), "params"),
        (dict(tokens=float("nan")), "tokens"),
        (dict(power_basis="nameplate"), "power basis"),
        (dict(precision="fp4"), "precision"),
    ],
)
def test_bad_input_gives_clear_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        gpt3(**kwargs)


def test_hours_need_chips():
    with pytest.raises(ConfigError, match="--chips"):
        train(params=1e9, tokens=1e9, hardware="A100", hours=5)


def test_unknown_hardware_and_location():
    with pytest.raises(HardwareNotFoundError):
        gpt3(hardware="Z80")
    with pytest.raises(LocationNotFoundError):
        gpt3(location="Atlantis")


def test_tokens_optional_only_when_time_given():
    r = train(params=1e9, tokens=None, hardware="A100", chip_hours=100)
    assert r.flops is None and r.energy_mwh > 0
    with pytest.raises(ConfigError, match="tokens"):
        train(params=1e9, tokens=None, hardware="A100")


def test_chip_hours_given_reports_implied_mfu():
    r = train(params=1e9, tokens=1e10, hardware="A100", chip_hours=100)
    assert r.mfu == pytest.approx(6e19 / (312e12 * 100 * 3600))


def test_calibrated_without_calibration_says_what_to_do():
    with pytest.raises(ConfigError, match="estimate calibrate"):
        gpt3(calibrated=True)


def test_finetune_lora_is_cheaper_than_full_and_grows_with_rank():
    full = finetune(params=7e9, tokens=1e8, hardware="A100", method="full")
    lora8 = finetune(params=7e9, tokens=1e8, hardware="A100", method="lora", lora_rank=8)
    lora64 = finetune(params=7e9, tokens=1e8, hardware="A100", method="lora", lora_rank=64, target_modules="all")
    assert lora8.energy_mwh < lora64.energy_mwh < full.energy_mwh
    assert lora8.energy_mwh > 0.6 * full.energy_mwh  # frozen weights still cost 2/3
    assert lora8.inputs["trainable_params"].value < 0.01 * 7e9
    assert lora8.kind == "finetune"


def test_finetune_rejects_lora_options_for_full_and_unknown_method():
    with pytest.raises(ConfigError, match="--method lora"):
        finetune(params=7e9, tokens=1e8, hardware="A100", method="full", lora_rank=8)
    with pytest.raises(ConfigError, match="full"):
        finetune(params=7e9, tokens=1e8, hardware="A100", method="distill")


def test_results_are_finite_numbers():
    d = gpt3(location="DEU").to_dict()
    for k in ("energy_mwh", "co2e_t", "embodied_co2e_t", "cost", "chip_hours"):
        assert math.isfinite(d[k]) and d[k] > 0


def test_gpu_system_power_is_the_measured_share_of_its_servers_rating():
    # DGX A100: 6.5 kW rated for 8 GPUs; training draws 76% of the rating (Newkirk et al. 2025)
    r = train(params=7e9, tokens=1e11, hardware="A100", chip_hours=1000, pue=1.0, intensity_kg_per_kwh=0.3)
    assert r.power_w.value == pytest.approx(0.76 * 6500 / 8)
    assert r.power_w.low < r.power_w.value < r.power_w.high
    # the accelerator share is the GPU's own draw (0.70 TDP, Dodge et al. 2022)
    assert r.inputs["accelerator_power_w_per_chip"].value == pytest.approx(0.70 * 400)
    d = r.to_dict()
    assert d["accelerator_energy_mwh"] == pytest.approx(1000 * 280 / 1e6)
    assert d["accelerator_energy_mwh"] < d["it_energy_mwh"] <= d["energy_mwh"]
    assert d["low"]["accelerator_energy_mwh"] < d["accelerator_energy_mwh"] < d["high"]["accelerator_energy_mwh"]


def test_tpu_power_rests_on_the_published_chip_mean_and_the_fitted_host_share():
    from greenlm.estimate import fitted

    r = train(params=11e9, hardware="TPU v3", chip_hours=1000, tokens=None, pue=1.0)
    assert r.inputs["accelerator_power_w_per_chip"].value == pytest.approx(220)
    assert r.power_w.value == pytest.approx(220 * (1 + fitted.TRAINING["tpu_host_share"]))
    assert "Jouppi" in r.inputs["power_w_per_chip"].source
    v4 = train(params=11e9, hardware="TPU v4", chip_hours=1000, tokens=None)
    assert v4.inputs["accelerator_power_w_per_chip"].value == pytest.approx(170)


def test_tdp_basis_has_no_host_share_so_all_scopes_agree_before_pue():
    r = train(params=6.7e9, tokens=1e12, hardware="A100", chip_hours=82432, power_basis="tdp", pue=1.1)
    d = r.to_dict()
    assert d["accelerator_energy_mwh"] == pytest.approx(d["it_energy_mwh"])
    assert d["energy_mwh"] == pytest.approx(1.1 * d["it_energy_mwh"])


def test_chips_without_bf16_fall_back_to_fp16_with_a_warning():
    r = gpt3()  # V100: no bfloat16
    assert r.inputs["precision"].value == "fp16"
    assert any("no bfloat16" in w for w in r.warnings)
    assert r.inputs["peak_flops_per_chip"].value == pytest.approx(125e12)


def test_mfu_default_names_every_factor_it_applies():
    moe = train(params=1.5e12, active_params=1.5e10, tokens=1e11, hardware="A100", chips=4096)
    src = moe.inputs["mfu"].source
    assert "mixture of experts" in src and "goodput" in src and "reference" in src
    dense = train(params=1.5e10, tokens=1e11, hardware="A100", chips=4096)
    assert moe.mfu < dense.mfu  # same active FLOPs, lower MFU: MoE costs more than its FLOPs suggest
    small = train(params=1e8, tokens=1e10, hardware="A100")
    assert small.mfu < train(params=1e10, tokens=1e10, hardware="A100").mfu


def test_development_runs_add_to_the_final_run():
    final = gpt3()
    dev = gpt3(development_factor=0.5)
    assert dev.energy_mwh == pytest.approx(1.5 * final.energy_mwh)
    assert "Morrison" in dev.inputs["development_factor"].source
    with pytest.raises(ConfigError, match="development factor"):
        gpt3(development_factor=-1)


def test_published_flops_replace_6nd():
    r = train(params=1.5e12, hardware="TPU v3", flops=8.22e22, chip_hours=1024 * 27 * 24, pue=1.1)
    assert r.flops == pytest.approx(8.22e22)
    assert r.mfu == pytest.approx(8.22e22 / (123e12 * 1024 * 27 * 24 * 3600))


def test_a_defaulted_price_says_it_is_the_us_default_outside_the_us():
    fra = gpt3(location="FRA")
    assert any("not a price for France" in w for w in fra.warnings)
    assert "not a price for France" in fra.inputs["price_per_kwh"].source
    usa = gpt3(location="USA")
    assert not any("electricity price" in w for w in usa.warnings)
    given = gpt3(location="FRA", price_per_kwh=0.2, currency="EUR")
    assert not any("electricity price" in w for w in given.warnings)
    assert given.cost.value == pytest.approx(given.energy_mwh * 1000 * 0.2)
