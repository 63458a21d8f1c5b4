from __future__ import annotations

import json

from greenlm.report import plots


def test_downsample_keeps_short_series_and_averages_long_ones() -> None:
    pts = [(float(i), float(i % 2)) for i in range(10)]
    assert plots.downsample(pts, 20) == pts
    out = plots.downsample([(float(i), 10.0) for i in range(1000)], 100)
    assert len(out) == 100
    assert all(p[1] == 10.0 for p in out)
    assert out[0][0] < out[-1][0]


def test_pareto_front_higher_and_lower_is_better() -> None:
    pts = [(10.0, 0.90, "base"), (5.0, 0.89, "int8"), (6.0, 0.80, "bad"), (2.0, 0.5, "tiny")]
    assert [n for *_, n in plots.pareto_front(pts, higher_better=True)] == ["tiny", "int8", "base"]
    ppl = [(10.0, 20.0, "base"), (5.0, 21.0, "int8"), (6.0, 30.0, "bad")]
    assert [n for *_, n in plots.pareto_front(ppl, higher_better=False)] == ["int8", "base"]


def test_energy_scale_units() -> None:
    assert plots.energy_scale(10)[0] == "J"
    assert plots.energy_scale(5e4)[0] == "kJ"
    assert plots.energy_scale(3.6e7)[0] == "kWh"
    assert plots.energy_scale(7.2e9)[0] == "MWh"


def test_power_timeline_skips_missing_power_and_is_json() -> None:
    samples = [
        {"t_s": 0.1, "component": "cpu", "energy_j": 1.0, "power_w": None},
        {"t_s": 0.2, "component": "cpu", "energy_j": 2.0, "power_w": 10.0},
        {"t_s": 0.2, "component": "gpu:0", "energy_j": 20.0, "power_w": float("nan")},
        {"t_s": 0.3, "component": "gpu:0", "energy_j": 40.0, "power_w": 200.0},
    ]
    c = plots.power_timeline(samples, {"gpu:0": "gpu", "cpu": "cpu"})
    assert not c.empty
    ds = {d["label"]: d["data"] for d in c.spec["data"]["datasets"]}
    assert ds == {"cpu": [{"x": 0.2, "y": 10.0}], "gpu:0": [{"x": 0.3, "y": 200.0}]}
    json.dumps(c.spec, allow_nan=False)
    assert plots.power_timeline([]).empty


def test_energy_by_component_band_in_display_unit() -> None:
    comps = [
        {"name": "gpu:0", "kind": "gpu", "energy_j": 7.2e6, "low_j": 7.0e6, "high_j": 7.4e6, "provenance": "counter"}
    ]
    c = plots.energy_by_component(comps)
    value, band = c.spec["data"]["datasets"]
    assert value["data"] == [2.0]  # kWh
    assert band["data"][0][0] < 2.0 < band["data"][0][1]
    assert "counter" in c.spec["data"]["labels"][0]
