"""The tracker's window, phases, steps, statuses and failure handling, driven by replay meters."""

from __future__ import annotations

import json
import threading
import time

import pytest

import greenlm
from greenlm import EnergyTracker
from greenlm.errors import ConfigError, LocationNotFoundError, ResultNotReadyError
from greenlm.meters import Meter, ReplayMeter


def replay(power_w=100.0, name="gpu:0", kind="gpu", provenance="counter"):
    return ReplayMeter(name, kind, power_w=power_w, provenance=provenance)


def tracker(*meters, **kw):
    kw.setdefault("interval_s", 0.02)
    kw.setdefault("store", False)
    kw.setdefault("location", "FRA")
    return EnergyTracker(meters=list(meters) or [replay()], **kw)


def busy(seconds):
    t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        pass


def test_energy_matches_the_replayed_power_and_flows_to_carbon():
    t = tracker(replay(100.0), replay(50.0, name="cpu", kind="cpu", provenance="modeled"), pue=1.5)
    with t:
        time.sleep(0.3)
    r = t.result
    assert r.status == "completed"
    assert r.energy_j == pytest.approx(150.0 * r.duration_s, rel=0.02)
    assert r.component("gpu:0").energy_j == pytest.approx(100.0 * r.duration_s, rel=0.02)
    assert r.facility_energy_j == pytest.approx(1.5 * r.energy_j)
    assert r.co2e_g == pytest.approx(r.facility_energy_j / 3.6e6 * r.location["intensity_g_per_kwh"])
    assert r.provenance == "modeled"  # the weakest component
    assert r.location["code"] == "FRA" and r.pue == 1.5
    assert r.timeline and all(p.power_w["gpu:0"] == pytest.approx(100.0, rel=0.05) for p in r.timeline)


def test_nested_phases_and_steps_get_their_share():
    t = tracker(replay(200.0))
    with t:
        with t.phase("train"):
            for _ in range(3):
                with t.phase("forward"):
                    time.sleep(0.05)
                with t.phase("backward"):
                    time.sleep(0.1)
                t.step()
        with t.phase("eval"):
            time.sleep(0.1)
    r = t.result
    fwd, bwd, train, ev = (r.phase(p) for p in ("train/forward", "train/backward", "train", "eval"))
    assert fwd.parent == "train" and fwd.entries == 3
    assert fwd.energy_j == pytest.approx(200.0 * fwd.duration_s, rel=0.03)
    assert bwd.energy_j == pytest.approx(2 * fwd.energy_j, rel=0.15)
    assert train.steps == 3 and r.steps == 3
    assert train.energy_per_step_j == pytest.approx(train.energy_j / 3)
    assert fwd.energy_j + bwd.energy_j <= train.energy_j * 1.001
    assert train.energy_j + ev.energy_j <= r.energy_j * 1.001
    d = r.to_dict()
    assert {"name": "forward", "parent": "train"}.items() <= d["phases"][2].items() or any(
        p["name"] == "forward" and p["parent"] == "train" for p in d["phases"]
    )


def test_phase_energy_follows_a_power_change():
    t = tracker(replay([(0.0, 100.0), (0.25, 400.0)]), interval_s=0.01)
    with t:
        with t.phase("low"):
            time.sleep(0.2)
        time.sleep(0.1)
        with t.phase("high"):
            time.sleep(0.2)
    r = t.result
    assert r.phase("high").energy_j / r.phase("low").energy_j == pytest.approx(4.0, rel=0.1)


def test_result_is_not_readable_while_running():
    t = tracker()
    with t:
        with pytest.raises(ResultNotReadyError):
            _ = t.result
    assert t.result.duration_s > 0


def test_exception_marks_failed_and_is_reraised():
    t = tracker()
    with pytest.raises(ValueError, match="boom"), t:
        raise ValueError("boom")
    assert t.result.status == "failed" and "ValueError: boom" in t.result.error


def test_keyboard_interrupt_marks_interrupted():
    t = tracker()
    with pytest.raises(KeyboardInterrupt), t:
        raise KeyboardInterrupt
    assert t.result.status == "interrupted"


def test_stop_records_how_the_work_ended():
    t = tracker().start()
    r = t.stop("failed", "command exited with code 3")
    assert (r.status, r.error) == ("failed", "command exited with code 3")
    assert t.result.to_dict()["status"] == "failed"


def test_stop_with_an_unknown_status_is_refused_and_the_window_stays_open():
    t = tracker().start()
    with pytest.raises(ConfigError, match="one of completed, failed, interrupted"):
        t.stop("done")
    assert t.running
    assert t.stop().status == "completed"


@pytest.mark.parametrize("pid", [0, -5, True, "123"])
def test_start_refuses_a_pid_that_is_not_a_process_id(pid):
    t = tracker()
    with pytest.raises(ConfigError, match="positive process id"):
        t.start(pid=pid)
    assert not t.running


def test_decorator_is_reentrant_and_each_outer_call_is_a_run():
    t = tracker(replay(10.0))
    depth = []

    @t
    def fib(n):
        depth.append(t.run_id)
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    assert fib(6) == 8
    first = t.result.run_id
    assert set(depth) == {first}  # recursion shared the outer window
    fib(3)
    assert t.result.run_id != first
    assert fib.tracker is t


def test_track_energy_decorator_with_and_without_arguments():
    @greenlm.track_energy(project="p", location="DEU", store=False, interval_s=0.05, meters=[replay(1.0)])
    def work():
        return 42

    assert work() == 42
    assert work.tracker.result.project == "p"


def test_metadata_is_recorded():
    t = tracker(metadata={"params": 125e6})
    with t:
        t.set_metadata(tokens=1e9, hardware="A100")
    md = dict(t.result.metadata)
    util = md.pop("utilization")
    assert md == {"params": 125e6, "tokens": 1e9, "hardware": "A100"}
    # greenlm adds the machine's utilisation over the window (CodeCarbon's CSV columns)
    assert 0.0 <= util["cpu_percent"] <= 100.0 and 0.0 < util["ram_percent"] <= 100.0 and util["ram_used_gb"] > 0


class Failing(Meter):
    name, kind, provenance = "gpu:0", "gpu", "counter"

    def __init__(self, fail_after, fallback=None):
        super().__init__()
        self.calls = 0
        self.fail_after = fail_after
        self._fb = fallback
        if fallback:
            self.fallback = lambda: self._fb

    def start(self):
        self.t0 = time.monotonic()

    def energy_j(self):
        self.calls += 1
        if self.calls > self.fail_after:
            raise RuntimeError("NVML_ERROR_GPU_IS_LOST")
        return 100.0 * (time.monotonic() - self.t0)


def test_meter_failure_degrades_to_fallback_with_one_warning():
    t = tracker(Failing(3, fallback=replay(100.0, provenance="sampled")))
    with t:
        time.sleep(0.3)
    r = t.result
    c = r.component("gpu:0")
    assert c.provenance == "sampled"
    assert c.energy_j == pytest.approx(100.0 * r.duration_s, rel=0.1)
    assert sum("meter failed" in w for w in r.warnings) == 1


def test_meter_failure_without_fallback_keeps_what_was_measured():
    t = tracker(Failing(3))
    with t:
        time.sleep(0.3)
    r = t.result
    c = r.component("gpu:0")
    assert 0 < c.energy_j < 100.0 * r.duration_s * 0.8
    assert any("not counted" in w for w in r.warnings)


def test_listeners_errors_never_reach_user_code():
    class Bad:
        def on_sample(self, *a):
            raise RuntimeError("listener bug")

    t = tracker(listeners=[Bad()])
    with t:
        time.sleep(0.1)
    assert any("listener bug" in w for w in t.result.warnings)


def test_forecast_after_warmup_predicts_total():
    t = tracker(replay(100.0), total_steps=20, warmup_steps=1, flush_interval_s=0.05)
    with t:
        for _ in range(5):
            time.sleep(0.04)
            t.step()
    fc = t.result.forecast
    assert fc is not None and fc["total_steps"] == 20
    per_step = t.result.energy_j / 5
    assert fc["energy_j"] == pytest.approx(20 * per_step, rel=0.25)
    assert fc["low_j"] <= fc["energy_j"] <= fc["high_j"]


def test_phases_from_threads_do_not_mix():
    t = tracker(replay(100.0))
    with t:

        def worker():
            with t.phase("loader"):
                time.sleep(0.1)

        th = threading.Thread(target=worker)
        with t.phase("train"):
            th.start()
            th.join()
    paths = {p.path for p in t.result.phases}
    assert paths == {"train", "loader"}


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"interval_s": 0}, ConfigError, "interval_s"),
        ({"interval_s": -1}, ConfigError, "interval_s"),
        ({"pue": -1.2}, ConfigError, "PUE"),
        ({"pue": float("nan")}, ConfigError, "PUE"),
        ({"price_per_kwh": float("nan")}, ConfigError, "price"),
        ({"location": "Atlantis"}, LocationNotFoundError, "Unknown location"),
        ({"attribution": "gpu"}, ConfigError, "attribution"),
        ({"total_steps": 0}, ConfigError, "total_steps"),
    ],
)
def test_bad_input_is_rejected_at_construction(kwargs, err, match):
    with pytest.raises(err, match=match):
        EnergyTracker(store=False, **kwargs)


def test_env_and_config_file_precedence(tmp_path, monkeypatch):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("location: FRA\nproject: from-file\npue: 1.3\n")
    monkeypatch.setenv("GREENLM_CONFIG", str(cfg))
    monkeypatch.setenv("GREENLM_LOCATION", "DEU")
    t = EnergyTracker(store=False, pue=1.1)
    assert t.config.project == "from-file"  # file
    assert t.carbon.location.code == "DEU"  # env beats file
    assert t.carbon.pue.value == 1.1  # argument beats both


@pytest.mark.parametrize("content", ["location: [unclosed", "- just\n- a list\n"])
def test_unreadable_config_file_is_a_clear_error(tmp_path, monkeypatch, content):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(content)
    monkeypatch.setenv("GREENLM_CONFIG", str(cfg))
    with pytest.raises(ConfigError, match=str(cfg)):
        EnergyTracker(store=False)


def test_result_json_round_trips_with_the_documented_keys():
    t = tracker()
    with t, t.phase("x"):
        t.step()
    d = json.loads(t.result.to_json())
    for key in (
        "run_id",
        "project",
        "status",
        "started_at",
        "duration_s",
        "energy_j",
        "facility_energy_j",
        "energy_kwh",
        "co2e_g",
        "cost",
        "currency",
        "pue",
        "location",
        "components",
        "phases",
        "warnings",
    ):
        assert key in d
    assert set(d["location"]) >= {"code", "intensity_g_per_kwh", "source", "year", "defaulted"}
    assert set(d["components"][0]) >= {"name", "kind", "energy_j", "provenance", "low_j", "high_j"}
    assert set(d["phases"][0]) >= {"name", "parent", "energy_j", "duration_s", "steps"}
    assert greenlm.RunResult.from_dict(d).to_dict() == d


def test_a_forked_child_never_closes_the_parents_run(store_url):
    import os

    from greenlm.store import open_store
    from greenlm.tracking import tracker as tracker_module

    t = EnergyTracker(location="FRA", interval_s=0.02, store=store_url, meters=[replay(10.0)])
    t.start()
    time.sleep(0.1)
    pid = os.fork()
    if pid == 0:  # child: run what interpreter exit would run, then leave without pytest
        code = 0
        try:
            tracker_module._close_open_windows()
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    time.sleep(0.05)
    assert open_store(store_url).get_run(t.run_id).status == "running"
    t.stop()
    assert open_store(store_url).get_run(t.run_id).status == "completed"
