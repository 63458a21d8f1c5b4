import pytest

from greenlm.errors import ConfigError
from greenlm.estimate import inference

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


def test_quantized_weights_cut_energy_when_decoding_is_memory_bound():
    e16, e8, e4 = (est(weights_bits=b) for b in (16, 8, 4))
    assert e16.decode_bound == "memory"
    assert e4.energy_mwh < e8.energy_mwh < e16.energy_mwh
    assert e8.energy_mwh < 0.6 * e16.energy_mwh


def test_batching_cuts_energy_per_query_until_compute_bound():
    per_query = [est(batch_size=b).energy_wh_per_query for b in (1, 8, 64)]
    assert per_query[0] > per_query[1] > per_query[2]
    assert est(batch_size=4096).decode_bound == "compute"


def test_total_is_queries_times_per_query():
    r = est()
    assert r.queries == 3e5
    assert r.energy_wh_per_query * r.queries / 1e6 == pytest.approx(r.energy_mwh)
    d = r.to_dict()
    assert d["co2e_g_per_query"] > 0 and d["low"]["energy_mwh"] < d["energy_mwh"]


def test_energy_scales_with_days_and_queries():
    assert est(days=60).energy_mwh == pytest.approx(2 * est().energy_mwh)
    assert est(queries_per_day=3e4).energy_mwh == pytest.approx(3 * est().energy_mwh)


def test_default_chips_hold_the_weights():
    # 70B parameters at 16 bits = 140 GB: does not fit one 80 GB chip
    r = est(params=70e9, hardware="H100")
    assert r.chips >= 2
    assert est(params=70e9, hardware="H100", weights_bits=4).chips == 1


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
    ],
)
def test_bad_inference_inputs(kw, match):
    with pytest.raises(ConfigError, match=match):
        est(**kw)


def test_chip_without_tdp_needs_power():
    with pytest.raises(ConfigError, match="--power-w"):
        est(hardware="TPU v5e")
    assert est(hardware="TPU v5e", power_w=200).energy_mwh > 0
