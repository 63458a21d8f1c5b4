"""Serving estimates: the physics a user relies on, capacity, idle power, scopes, bad input."""

import math

import pytest

from greenlm.errors import ConfigError
from greenlm.estimate import inference
from greenlm.estimate import serving_model as sm
from greenlm.estimate import validation_serving as vs
from greenlm.estimate.serving import CapacityError, shipped_constants

BASE = dict(
    params=7e9,
    hardware="A100",
    queries_per_day=1e4,
    days=30,
    input_tokens=500,
    output_tokens=200,
    location="FRA",
)


def est(**kw):
    return inference(**{**BASE, **kw})


def test_quantized_weights_cut_energy_per_token_when_decoding_is_memory_bound():
    e16, e8, e4 = (est(weights_bits=b) for b in (16, 8, 4))
    assert e16.decode_bound == "memory"
    assert e4.j_per_output_token < e8.j_per_output_token < e16.j_per_output_token
    # less than in proportion to the bytes: the per-layer cost of a step does not shrink
    assert 0.5 < e8.j_per_output_token / e16.j_per_output_token < 0.9


def test_batching_cuts_energy_per_token_until_compute_bound():
    per_token = [est(queries_per_day=1e3, batch_size=b).j_per_output_token for b in (1, 8, 64, 512)]
    assert per_token[0] > per_token[1] > per_token[2] > per_token[3]
    # the gain flattens once compute dominates
    assert per_token[0] / per_token[1] > per_token[2] / per_token[3]
    big = est(queries_per_day=1e3, batch_size=512)
    assert big.decode_bound == "compute" and big.crossover_batch < 512


def test_crossover_follows_the_chips_flops_to_bandwidth_ratio():
    # H100: 989 TFLOPS / 3.35 TB/s = 295 FLOP/byte; A100: 312 / 1.555 = 201 FLOP/byte
    h100, a100 = est(hardware="H100"), est(hardware="A100")
    assert h100.crossover_batch > a100.crossover_batch
    # fp8 weights halve the weight bytes and double the peak, while the KV cache stays bf16:
    # memory keeps a larger share, so decoding stays memory-bound to a larger batch
    assert est(hardware="H100", weight_precision="fp8").crossover_batch > 1.5 * h100.crossover_batch


def test_kv_cache_reads_grow_with_context_and_batch():
    short = est(queries_per_day=2e5, batch_size=64, input_tokens=200)
    long_ = est(queries_per_day=2e5, batch_size=64, input_tokens=4000, chips=2)
    assert long_.j_per_output_token > 2 * short.j_per_output_token
    s = sm.Setup(7e9, 7e9, 2, 312e12, 1.555e12, 400, 1, 1, 1, 64, 500, 200, 33, 4224, 135e3)
    assert s.step_bytes(128) - s.step_bytes(64) == pytest.approx(64 * 600 * 135e3)


def test_moe_reads_active_experts_per_token_but_their_union_over_a_batch():
    s = sm.Setup(120e9, 5e9, 0.53, 9e15, 7.7e12, 1000, 1, 1, 1, 1, 500, 1000, 30, 3840, 1e5)
    total = 120e9 * 0.53
    assert s.weight_bytes_touched(1) == pytest.approx(5e9 * 0.53)
    assert s.weight_bytes_touched(1024) == pytest.approx(total, rel=1e-6)
    assert s.weight_bytes_touched(8) < s.weight_bytes_touched(64) < total
    moe = est(params=120e9, active_params=5e9, hardware="H100", chips=2, weight_precision="mxfp4")
    dense = est(params=120e9, hardware="H100", chips=2, weight_precision="mxfp4")
    assert moe.expert_parallel == 2 and dense.tensor_parallel == 2
    # at batch 1 it reads ~4% of the weights; the per-layer cost of expert routing remains
    assert moe.j_per_output_token < dense.j_per_output_token / 2


def test_tensor_parallel_collectives_cost_time_and_energy_at_small_batch():
    one = est(hardware="H100", chips=1)
    two = est(hardware="H100", chips=2)
    assert two.tensor_parallel == 2
    assert two.step_time_s > one.step_time_s / 2  # not a perfect split
    assert two.j_per_output_token > one.j_per_output_token


def test_weight_format_changes_bytes_and_arithmetic():
    fp8 = est(hardware="H100", weight_precision="fp8")
    assert fp8.inputs["compute_precision"].value == "fp8"
    assert fp8.inputs["weights_bits"].value == 8
    mx_b200 = est(params=117e9, active_params=5e9, hardware="B200", weight_precision="mxfp4")
    assert mx_b200.inputs["compute_precision"].value == "fp4"
    assert mx_b200.inputs["weights_bits"].value == pytest.approx(4.25)
    mx_h100 = est(params=117e9, active_params=5e9, hardware="H100", weight_precision="mxfp4")
    assert mx_h100.inputs["compute_precision"].value == "bf16"
    assert any("no FP4 arithmetic" in w for w in mx_h100.warnings)
    with pytest.raises(ConfigError, match="weight format"):
        est(weight_precision="fp3")


def test_power_lies_between_idle_and_tdp_and_rises_with_utilisation():
    powers = []
    for b in (1, 16, 256):
        r = est(hardware="H100", queries_per_day=1e3, batch_size=b)
        w = r.inputs["busy_power_w_per_chip"].value
        assert r.inputs["idle_power_w_per_chip"].value < w <= 700
        powers.append(w)
    assert powers[0] < powers[1] < powers[2]


def test_impossible_throughput_says_by_how_much_and_what_would_do():
    ok = est()
    assert ok.max_queries_per_day > 1e4
    with pytest.raises(CapacityError) as e:
        est(queries_per_day=ok.max_queries_per_day * 3.5)
    msg = str(e.value)
    assert "3.50x more than the chips can serve" in msg
    assert "at least 4 chips" in msg
    # the same load fits on the chips it names
    assert est(queries_per_day=ok.max_queries_per_day * 3.5, chips=4, tensor_parallel=1).replicas == 4
    # fewer hours a day: less capacity
    with pytest.raises(CapacityError, match="in 6 h"):
        est(queries_per_day=ok.max_queries_per_day / 2, hours_per_day=6)


def test_a_batch_that_does_not_fit_in_memory_is_refused_with_the_shortfall():
    with pytest.raises(CapacityError) as e:
        est(chips=1, batch_size=4096, queries_per_day=1e6)
    msg = str(e.value)
    assert "does not fit in memory" in msg and "short" in msg and "batch of at most" in msg
    with pytest.raises(CapacityError, match="does not fit"):
        est(params=70e9, hardware="H100", chips=1)


def test_idle_hours_draw_idle_power_and_busy_only_scales_with_queries():
    r = est()
    d = r.to_dict()
    assert 0 < r.busy_fraction < 1 and d["idle_energy_mwh"] > 0
    # busy + idle = accelerator energy; over a full day of holding the chips
    assert d["busy_accelerator_energy_mwh"] + d["idle_energy_mwh"] == pytest.approx(d["accelerator_energy_mwh"])
    assert r.chip_hours.value == pytest.approx(30 * 24 * r.chips)
    busy = est(hours_per_day=None)
    assert busy.to_dict()["idle_energy_mwh"] == 0
    assert est(hours_per_day=None, queries_per_day=3e4).energy_mwh == pytest.approx(3 * busy.energy_mwh)
    # with idle counted, more queries fill idle hours: energy grows less than in proportion
    assert est(queries_per_day=3e4).energy_mwh < 3 * r.energy_mwh
    assert est(days=60).energy_mwh == pytest.approx(2 * r.energy_mwh)


def test_scopes_and_energy_per_output_token():
    r = est()
    d = r.to_dict()
    assert d["accelerator_energy_mwh"] < d["it_energy_mwh"] < d["energy_mwh"]
    assert d["j_per_output_token"] * d["output_tokens"] / 3.6e9 == pytest.approx(d["busy_accelerator_energy_mwh"])
    assert d["low"]["j_per_output_token"] < d["j_per_output_token"] < d["high"]["j_per_output_token"]
    assert d["output_tokens"] == 3e5 * 200


def test_public_api_is_the_validated_model():
    """inference() predicts a measured ML.ENERGY configuration as the validation does."""
    rows = vs.read_rows("tests/data/inference_dev.csv")
    row = next(r for r in rows if r["model_id"] == "meta-llama/Llama-3.1-8B-Instruct" and r["gpu_model"] == "H100")
    p = vs.row_point(row)
    c = shipped_constants()
    t = c.time_s(p.setup)
    expected = c.energy_j(p.setup, t) / p.setup.batch
    r = inference(
        params=8e9,
        hardware="H100",
        queries_per_day=1e5,
        days=1,
        input_tokens=p.setup.input_tokens,
        output_tokens=p.setup.output_tokens,
        batch_size=round(p.setup.batch),
        hours_per_day=None,
    )
    batch = round(p.setup.batch)
    assert r.step_time_s == pytest.approx(c.time_s(p.setup, batch), rel=1e-9)
    assert r.j_per_output_token == pytest.approx(c.energy_j(p.setup, c.time_s(p.setup, batch), batch) / batch, rel=1e-9)
    assert r.j_per_output_token == pytest.approx(expected, rel=0.05)
    # and the measurement lies within a factor of two of it
    assert 0.5 < r.j_per_output_token / float(row["energy_per_token_j"]) < 2


def test_total_is_queries_times_per_query():
    r = est()
    assert r.queries == 3e5
    assert r.energy_wh_per_query * r.queries / 1e6 == pytest.approx(r.energy_mwh)
    d = r.to_dict()
    assert d["co2e_g_per_query"] > 0 and d["low"]["energy_mwh"] < d["energy_mwh"]


def test_default_chips_hold_the_weights_and_kv_cache():
    # 70B parameters at 16 bits = 140 GB: does not fit one 80 GB chip
    r = est(params=70e9, hardware="H100")
    assert r.chips >= 2 and math.log2(r.chips).is_integer()
    assert est(params=70e9, hardware="H100", weights_bits=4).chips == 1
    assert est(params=7e9, hardware="H100", batch_size=1024, queries_per_day=1e3).chips == 2


def test_flops_count_prefill_and_decode():
    r = est()
    assert r.flops == pytest.approx(3e5 * 2 * 7e9 * 700)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(weights_bits=3), "weights bits"),
        (dict(batch_size=0), "batch size"),
        (dict(days=0), "days"),
        (dict(queries_per_day=-1), "queries"),
        (dict(input_tokens=0, output_tokens=0), "tokens"),
        (dict(mfu=2), "MFU"),
        (dict(chips=3, tensor_parallel=2), "multiple"),
        (dict(hours_per_day=25), "hours per day"),
    ],
)
def test_bad_inference_inputs(kw, match):
    with pytest.raises(ConfigError, match=match):
        est(**kw)


def test_chip_without_tdp_needs_power():
    with pytest.raises(ConfigError, match="--power-w"):
        est(hardware="TPU v5e")
    assert est(hardware="TPU v5e", power_w=200).energy_mwh > 0


def test_prefill_is_its_own_work_and_grows_with_the_prompt():
    short = est(input_tokens=100)
    long_ = est(input_tokens=4000, chips=2)
    assert 0 < short.prefill_fraction < long_.prefill_fraction < 1
    assert long_.flops / long_.queries == pytest.approx(2 * 7e9 * 4200)
