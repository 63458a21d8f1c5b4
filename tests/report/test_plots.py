from __future__ import annotations

import json

from greenlm.report import plots
from greenlm.store import PowerSeries, PowerTrace
from greenlm.tracking.result import ComponentEnergy


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
    assert plots.energy_scale(5e4) == ("Wh", 3600.0)  # the units of greenlm.humanize: J, Wh, kWh, MWh
    assert plots.energy_scale(3.6e7)[0] == "kWh"
    assert plots.energy_scale(7.2e9)[0] == "MWh"
    assert plots.energy_scale(10, unit="kWh") == ("kWh", 3.6e6), "the page's unit when given"
    assert plots.co2e_scale(0.5) == ("mg CO2e", 1e-3)


def test_parts_bars_show_every_part_on_a_log_axis() -> None:
    parts = [
        {"label": "training", "energy_mwh": 185.0},
        {"label": "inference", "energy_mwh": 0.55},
        {"label": "transfer", "energy_mwh": 0.01},
        {"label": "storage", "energy_mwh": 0.0},
    ]
    c = plots.parts_bars(parts, [("energy_mwh", "facility energy")], "MWh", 1.0, "t", "cap.", "lc")
    x = c.spec["options"]["scales"]["x"]
    assert x["type"] == "logarithmic"
    data = c.spec["data"]["datasets"][0]["data"]
    assert data == [185.0, 0.55, 0.01, None]
    # the axis spans every drawn part: the smallest gets a bar of its own
    assert x["min"] <= 0.01 / 3 and x["max"] >= 185.0
    assert "storage" in c.caption, "a part that cannot be drawn is named"


def test_power_timeline_skips_non_finite_power_and_is_json() -> None:
    trace = PowerTrace(
        "r1",
        (
            PowerSeries("cpu", ((0.1, float("nan")), (0.2, 10.0))),
            PowerSeries("gpu:0", ((0.2, float("inf")), (0.3, 200.0))),
        ),
        n_samples=4,
    )
    c = plots.power_timeline(trace, {"gpu:0": "gpu", "cpu": "cpu"})
    assert not c.empty
    ds = {d["label"]: d["data"] for d in c.spec["data"]["datasets"]}
    assert ds == {"cpu": [{"x": 0.2, "y": 10.0}], "gpu:0": [{"x": 0.3, "y": 200.0}]}
    json.dumps(c.spec, allow_nan=False)
    assert plots.power_timeline(PowerTrace("r0", (), 0)).empty


def test_energy_by_component_band_in_display_unit() -> None:
    comps = [ComponentEnergy("gpu:0", "gpu", 7.2e6, "counter", 7.0e6, 7.4e6)]
    c = plots.energy_by_component(comps)
    value, band = c.spec["data"]["datasets"]
    assert value["data"] == [2.0]  # kWh
    assert band["data"][0][0] < 2.0 < band["data"][0][1]
    assert "counter" in c.spec["data"]["labels"][0]
