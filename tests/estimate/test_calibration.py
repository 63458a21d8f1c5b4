from typing import Any

import pytest

from greenlm.errors import ConfigError
from greenlm.estimate import calibrate, train
from greenlm.estimate.calibration import calibration_path, fit, load

A100_PEAK = 312e12
A100_TDP = 400.0


def synthetic_run(run_id, *, mfu, gpu_fraction, host_fraction, chips=2, duration_s=3600.0, params=1e9, **meta):
    tokens = mfu * A100_PEAK * chips * duration_s / (6 * params)
    gpu_j = gpu_fraction * A100_TDP * chips * duration_s
    host_j = host_fraction * A100_TDP * chips * duration_s
    return {
        "run_id": run_id,
        "project": "p",
        "status": "completed",
        "duration_s": duration_s,
        "energy_j": gpu_j + host_j,
        "components": [
            {"name": "gpu0", "kind": "gpu", "energy_j": gpu_j / 2},
            {"name": "gpu1", "kind": "gpu", "energy_j": gpu_j / 2},
            {"name": "cpu", "kind": "cpu", "energy_j": host_j * 0.7},
            {"name": "ram", "kind": "ram", "energy_j": host_j * 0.3},
        ],
        "metadata": {
            "params": params,
            "tokens": tokens,
            "hardware": "A100",
            "chips": chips,
            "precision": "bf16",
            "task": "train",
            **meta,
        },
    }


RUNS = [
    synthetic_run("r1", mfu=0.30, gpu_fraction=0.70, host_fraction=0.10),
    synthetic_run("r2", mfu=0.40, gpu_fraction=0.80, host_fraction=0.20),
    synthetic_run("r3", mfu=0.50, gpu_fraction=0.90, host_fraction=0.30),
]


def test_fit_recovers_mfu_and_power_fractions():
    cal = fit(RUNS)
    (hw,) = cal.hardware.values()
    assert "A100" in hw.hardware
    assert hw.n_runs == 3
    assert hw.mfu.value == pytest.approx(0.40)
    assert (hw.mfu.low, hw.mfu.high) == (pytest.approx(0.30), pytest.approx(0.50))
    assert hw.power_fraction.value == pytest.approx(0.80)
    assert hw.host_fraction.value == pytest.approx(0.20)


def test_runs_without_what_is_needed_are_skipped_with_a_reason():
    bad = [
        {"run_id": "nometa", "status": "completed", "duration_s": 10, "metadata": {}},
        {"run_id": "failed", "status": "failed", "duration_s": 10, "metadata": {}},
        {
            "run_id": "notokens",
            "status": "completed",
            "duration_s": 10,
            "metadata": {"hardware": "A100", "params": 1e9},
        },
        synthetic_run("impossible", mfu=1.5, gpu_fraction=0.5, host_fraction=0.1),
    ]
    cal = fit([*RUNS, *bad])
    reasons = dict(cal.skipped)
    assert "hardware" in reasons["nometa"]
    assert "completed" in reasons["failed"]
    assert "tokens" in reasons["notokens"]
    assert "outside (0, 1]" in reasons["impossible"]
    assert next(iter(cal.hardware.values())).n_runs == 3


def test_calibrate_saves_under_greenlm_home_and_calibrated_estimates_use_it():
    cal = calibrate(RUNS)
    assert cal.path == calibration_path() and cal.path.exists()
    table = load()
    assert next(iter(table.values())).mfu.value == pytest.approx(0.40)
    calibrated = train(params=7e9, tokens=1e11, hardware="A100", calibrated=True, intensity_kg_per_kwh=0.3)
    explicit = train(params=7e9, tokens=1e11, hardware="A100", mfu=0.40, intensity_kg_per_kwh=0.3)
    assert calibrated.chip_hours.value == pytest.approx(explicit.chip_hours.value)
    assert calibrated.power_w.value == pytest.approx(A100_TDP * (0.80 + 0.20))
    assert "calibrated on 3" in calibrated.inputs["mfu"].source
    # a variant with the same compute and TDP shares the calibration
    variant = train(params=7e9, tokens=1e11, hardware="a100-80gb", calibrated=True)
    assert variant.chip_hours.value == pytest.approx(explicit.chip_hours.value)
    # hardware not calibrated: defaults, with a warning
    other = train(params=7e9, tokens=1e11, hardware="H100", calibrated=True)
    assert any("no calibration for" in w for w in other.warnings)


def test_calibrate_with_no_usable_run_says_how_to_record_metadata():
    with pytest.raises(ConfigError, match="metadata"):
        calibrate([{"run_id": "x", "status": "completed", "duration_s": 1, "metadata": {}}])


def store_runs(store_url: str) -> Any:
    """Save :data:`RUNS` as finished runs (counter provenance, exact bands) in ``store_url``."""
    from greenlm.store import open_store

    store = open_store(store_url)
    base = {
        "started_at": "2025-01-01T00:00:00Z",
        "ended_at": "2025-01-01T01:00:00Z",
        "facility_energy_j": 1.0,
        "energy_kwh": 1.0,
        "co2e_g": 1.0,
        "cost": 0.1,
        "currency": "USD",
        "pue": 1.0,
        "location": {"code": "FRA"},
        "phases": [],
        "steps": 0,
    }
    for r in RUNS:
        comps = [
            {**c, "provenance": "counter", "low_j": c["energy_j"], "high_j": c["energy_j"]} for c in r["components"]
        ]
        store.save_result({**base, **r, "components": comps})
    return store


def test_calibration_from_a_real_store(store_url):
    store = store_runs(store_url)
    cal = calibrate([r.to_dict() for r in store.list_runs(project="p")])
    hw = next(iter(cal.hardware.values()))
    assert hw.n_runs == 3
    assert hw.mfu.value == pytest.approx(0.40)


def tracked_run(run_id, *, accelerator="NVIDIA A100-SXM4-40GB", count=2, mfu=0.40, gpu_fraction=0.8):
    """A run as `greenlm track` stores it: the tracker records the hardware, the user the work."""
    r = synthetic_run(run_id, mfu=mfu, gpu_fraction=gpu_fraction, host_fraction=0.2, chips=count)
    meta = dict(r["metadata"])
    for k in ("hardware", "chips", "precision", "task"):
        meta.pop(k)
    meta["command"] = ["python", "train.py"]
    meta["hardware"] = {
        "accelerator": accelerator,
        "accelerator_count": count,
        "cpu": "AMD EPYC 7763 64-Core Processor",
        "cpu_threads": 128,
    }
    return {**r, "metadata": meta}


def test_runs_from_greenlm_track_calibrate_from_the_recorded_hardware(store_url):
    from greenlm.store import open_store

    store = open_store(store_url)
    base = {
        "started_at": "2025-01-01T00:00:00Z",
        "ended_at": "2025-01-01T01:00:00Z",
        "facility_energy_j": 1.0,
        "energy_kwh": 1.0,
        "co2e_g": 1.0,
        "cost": 0.1,
        "currency": "USD",
        "pue": 1.0,
        "location": {"code": "FRA"},
        "phases": [],
        "steps": 0,
    }
    runs = [tracked_run("t1", mfu=0.35), tracked_run("t2", mfu=0.45, count=4), tracked_run("cpu", accelerator=None)]
    for r in runs:
        comps = [
            {**c, "provenance": "counter", "low_j": c["energy_j"], "high_j": c["energy_j"]} for c in r["components"]
        ]
        store.save_result({**base, **r, "components": comps})
    cal = calibrate(store.list_runs(project="p"))
    (hw,) = cal.hardware.values()
    assert "A100 SXM4 40GB" in hw.hardware
    assert hw.n_runs == 2
    # accelerator_count became the number of chips: the MFU comes out right for both runs
    assert (hw.mfu.low, hw.mfu.high) == (pytest.approx(0.35), pytest.approx(0.45))
    assert hw.power_fraction.value == pytest.approx(0.8)
    reasons = dict(cal.skipped)
    assert "CPU-only" in reasons["cpu"] and "EPYC" in reasons["cpu"]


# ------------------------------------------------------------------ bench files
def bench_doc(time_scale=1.3, energy_scale=0.8, *, accelerator="NVIDIA H100 80GB HBM3", **over):
    """A `greenlm bench serve` result whose points follow the shipped model, scaled."""
    from greenlm.estimate import serving_model as sm
    from greenlm.estimate.serving import shipped_constants

    c = shipped_constants().scaled(time_scale, energy_scale)
    points = []
    for conc in (1, 4, 16, 64):
        requests, prompt, out = 4 * conc, 300.0, 400.0
        layers = sm.inferred_layers(8e9)
        s = sm.Setup(
            8e9, 8e9, 2.0, 989e12, 3.35e12, 700, 1, 1, 1, conc, prompt, out, layers, 128 * layers, layers * 4096
        )
        t = c.time_s(s)
        e = c.energy_j(s, t)
        jpt = e / conc
        tps = conc / t
        total_out = requests * out
        points.append(
            {
                "concurrency": conc,
                "requests": requests,
                "prompt_tokens": int(requests * prompt),
                "output_tokens": int(total_out),
                "duration_s": total_out / tps,
                "energy_j": jpt * total_out,
                "energy_low_j": 0.95 * jpt * total_out,
                "energy_high_j": 1.05 * jpt * total_out,
                "j_per_output_token": jpt,
                "j_per_request": jpt * out,
                "output_tokens_per_s": tps,
                "ttft_p50_s": 0.05,
                "ttft_p95_s": 0.1,
                "itl_p50_s": t,
                "itl_p95_s": 1.2 * t,
                "power_w": e / t,
                "provenance": "counter",
            }
        )
    doc = {
        "kind": "greenlm.bench.serve",
        "version": 1,
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "engine": "transformers serve",
        "hardware": {"accelerator": accelerator, "accelerator_count": 1, "cpu": "Intel Xeon", "cpu_threads": 32},
        "model_info": {"total_params": 8e9, "active_params": 8e9, "weight_precision": "bf16"},
        "points": points,
    }
    doc.update(over)
    return doc


def test_bench_file_calibration_recovers_the_scales_and_inference_uses_them(tmp_path):
    import json

    from greenlm.estimate import inference
    from greenlm.estimate.calibration import calibrate_bench, load_serving

    f = tmp_path / "bench.json"
    f.write_text(json.dumps(bench_doc(1.3, 0.8)), encoding="utf-8")
    cal, path = calibrate_bench(f)
    assert cal.time_scale == pytest.approx(1.3, rel=1e-6)
    assert cal.energy_scale == pytest.approx(0.8, rel=1e-6)
    assert cal.n_points == 4 and cal.residual_pct < 1e-6
    assert "H100 SXM5" in cal.hardware and path == calibration_path()
    assert load_serving()[cal.hardware].time_scale == pytest.approx(1.3, rel=1e-6)
    kw = dict(
        params=8e9, hardware="H100", queries_per_day=1e4, days=1, input_tokens=300, output_tokens=400, batch_size=16
    )
    plain = inference(**kw)
    tuned = inference(**kw, calibrated=True)
    assert tuned.step_time_s == pytest.approx(1.3 * plain.step_time_s)
    # static power scales with time and energy, the per-byte/FLOP part with energy only
    assert tuned.j_per_output_token < 1.3 * plain.j_per_output_token
    assert "calibrated on 4" in tuned.inputs["serving_constants"].source
    # another accelerator has no serving calibration: fitted constants, with a warning
    other = inference(**{**kw, "hardware": "A100"}, calibrated=True)
    assert any("no serving calibration" in w for w in other.warnings)


def test_bench_calibration_keeps_the_training_calibration(tmp_path):
    import json

    from greenlm.estimate.calibration import calibrate_bench

    calibrate(RUNS)
    f = tmp_path / "bench.json"
    f.write_text(json.dumps(bench_doc()), encoding="utf-8")
    calibrate_bench(f)
    assert next(iter(load().values())).mfu.value == pytest.approx(0.40)
    calibrate(RUNS)  # and the other way round
    from greenlm.estimate.calibration import load_serving

    assert load_serving()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (dict(kind="something.else"), "not a greenlm bench serve result"),
        (dict(version=7), "version 7"),
        (
            dict(hardware={"accelerator": None, "accelerator_count": 0, "cpu": "Intel Xeon", "cpu_threads": 8}),
            "Intel Xeon",
        ),
        (dict(model_info={"total_params": None, "active_params": None, "weight_precision": None}), "total_params"),
        (dict(points=[]), "non-empty"),
        (dict(points=[{"concurrency": 4}]), "requests"),
    ],
)
def test_bad_bench_files_say_what_is_wrong(tmp_path, change, match):
    import json

    from greenlm.estimate.calibration import calibrate_bench

    f = tmp_path / "bench.json"
    f.write_text(json.dumps(bench_doc(**change)), encoding="utf-8")
    with pytest.raises(ConfigError, match=match):
        calibrate_bench(f)
    assert not calibration_path().exists()  # nothing half-written


def test_unreadable_bench_file(tmp_path):
    from greenlm.estimate.calibration import calibrate_bench

    with pytest.raises(ConfigError, match="Cannot read"):
        calibrate_bench(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid JSON"):
        calibrate_bench(bad)
