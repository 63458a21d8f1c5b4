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


def test_calibration_from_a_real_store(store_url):
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
    cal = calibrate([r.to_dict() for r in store.list_runs(project="p")])
    hw = next(iter(cal.hardware.values()))
    assert hw.n_runs == 3
    assert hw.mfu.value == pytest.approx(0.40)
