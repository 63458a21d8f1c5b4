"""Hugging Face Trainer: a real Trainer on a tiny GPT-2 built from a config."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("transformers")

from greenlm.meters.fake import ReplayMeter
from greenlm.store.runs import open_store

from ._tiny import TokenDataset, tiny_gpt2


def _trainer(tmp_path: Path, callback, report_to=(), add_later: bool = False, **kw):
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=8,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        logging_steps=2,
        eval_strategy="steps",
        eval_steps=4,
        save_strategy="no",
        report_to=list(report_to),
        use_cpu=True,
        disable_tqdm=True,
        **kw,
    )
    trainer = Trainer(
        model=tiny_gpt2(),
        args=args,
        train_dataset=TokenDataset(64),
        eval_dataset=TokenDataset(16, seed=1),
        callbacks=[] if add_later else [callback],
    )
    if add_later:
        trainer.add_callback(callback)
    return trainer


def _logged(hist: list[dict], suffix: str) -> list[float]:
    return [v for h in hist for k, v in h.items() if k.endswith(suffix)]


def test_train_run_is_stored_with_phases_and_logged(tmp_path: Path) -> None:
    from greenlm.integrations.hf import GreenlmCallback

    gpu = ReplayMeter("gpu:0", "gpu", power_w=200.0, provenance="sampled")
    cb = GreenlmCallback(meters=[gpu], interval_s=0.05, flush_interval_s=0.2, project="hf")
    trainer = _trainer(tmp_path, cb)
    trainer.train()

    r = cb.result
    assert r.status == "completed"
    assert r.steps == 8, "every optimizer step is a tracker step"
    stored = open_store().get_run(r.run_id).to_dict()
    assert stored["project"] == "hf"
    phases = {p["path"]: p for p in stored["phases"]}
    assert set(phases) == {"train", "train/evaluate"}
    assert phases["train/evaluate"]["entries"] == 2, "evaluated at steps 4 and 8"
    assert phases["train"]["steps"] == 8
    assert phases["train"]["energy_j"] == pytest.approx(r.phase("train").energy_j)

    hist = trainer.state.log_history
    logged = [h["greenlm_energy_j"] for h in hist if "greenlm_energy_j" in h]
    assert len(logged) >= 4, "training logs carry the energy"
    assert len([h for h in hist if "eval_greenlm_energy_j" in h]) == 2, "so do the evaluation logs, prefixed"
    assert logged == sorted(logged)
    assert logged[-1] <= r.energy_j + 1e-9
    co2 = [h["greenlm_co2e_g"] for h in hist if "greenlm_co2e_g" in h]
    assert co2[-1] == pytest.approx(logged[-1] * r.co2e_g / r.energy_j, rel=1e-6)
    # the last entry is the train phase of the stored run, exactly
    assert hist[-1]["greenlm_train_energy_j"] == pytest.approx(phases["train"]["energy_j"], rel=1e-9)
    assert hist[-1]["greenlm_train_co2e_g"] == pytest.approx(phases["train"]["co2e_g"], rel=1e-9)
    # 200 W replayed: the train phase's energy is 200 W x its duration
    assert phases["train"]["energy_j"] == pytest.approx(200.0 * phases["train"]["duration_s"], rel=0.02)


def test_standalone_evaluate_and_predict_are_runs(tmp_path: Path) -> None:
    from greenlm.integrations.hf import GreenlmCallback

    gpu = ReplayMeter("gpu:0", "gpu", power_w=100.0, provenance="sampled")
    cb = GreenlmCallback(meters=[gpu], interval_s=0.05, project="hf-eval")
    trainer = _trainer(tmp_path, cb)
    metrics = trainer.evaluate()
    run_eval = cb.result
    assert [p.path for p in run_eval.phases] == ["evaluate"]
    assert metrics["eval_greenlm_evaluate_energy_j"] == pytest.approx(run_eval.phase("evaluate").energy_j)
    assert metrics["eval_greenlm_evaluate_co2e_g"] == pytest.approx(run_eval.phase("evaluate").co2e_g)

    out = trainer.predict(TokenDataset(8, seed=2))
    run_pred = cb.result
    assert run_pred.run_id != run_eval.run_id, "one run per top-level call"
    assert [p.path for p in run_pred.phases] == ["predict"]
    assert out.metrics["test_greenlm_predict_energy_j"] == pytest.approx(run_pred.phase("predict").energy_j)
    ids = {d.run_id for d in open_store().list_runs(project="hf-eval")}
    assert ids == {run_eval.run_id, run_pred.run_id}


def test_user_window_gets_phases_but_is_not_closed(tmp_path: Path) -> None:
    from greenlm.integrations.hf import GreenlmCallback
    from greenlm.tracking.tracker import EnergyTracker

    tracker = EnergyTracker(meters=[ReplayMeter("gpu:0", "gpu", 50.0)], interval_s=0.05, store=False)
    cb = GreenlmCallback(tracker=tracker)
    trainer = _trainer(tmp_path, cb)
    with tracker:
        trainer.train()
        assert tracker.running, "the user's window stays open"
        with tracker.phase("export"):
            pass
    assert {p.path for p in tracker.result.phases} >= {"train", "train/evaluate", "export"}
    assert cb.results == []


def test_tracker_and_settings_together_is_an_error() -> None:
    from greenlm.errors import ConfigError
    from greenlm.integrations.hf import GreenlmCallback
    from greenlm.tracking.tracker import EnergyTracker

    with pytest.raises(ConfigError, match="either tracker"):
        GreenlmCallback(tracker=EnergyTracker(store=False), project="x")


def _tb_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    mux = EventMultiplexer(size_guidance={"scalars": 0})
    mux.AddRunsFromDirectory(str(log_dir))
    mux.Reload()
    out: dict[str, list[tuple[int, float]]] = {}
    for run in mux.Runs():
        for tag in mux.GetAccumulator(run).Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in mux.Scalars(run, tag))
    return out


@pytest.mark.parametrize("how", ["callbacks", "add_callback"])
def test_power_is_the_mean_since_the_last_log_and_reaches_tensorboard(tmp_path: Path, monkeypatch, how) -> None:
    """Train, evaluate and predict with one Trainer reporting to TensorBoard, the callback
    added the documented way: every logged power lies within what the meter drew over the
    run (100-300 W), across runs (no negative power after train), and TensorBoard's own
    reader finds the greenlm keys with the values the logs had.
    """
    pytest.importorskip("tensorboard")
    from greenlm.integrations.hf import GreenlmCallback

    tb = tmp_path / "tb"
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tb))
    trace = [(0.1 * i, 100.0 if i % 2 == 0 else 300.0) for i in range(600)]
    gpu = ReplayMeter("gpu:0", "gpu", power_w=trace, provenance="sampled")
    cb = GreenlmCallback(meters=[gpu], interval_s=0.05, project="hf-power")
    trainer = _trainer(tmp_path, cb, report_to=["tensorboard"], add_later=how == "add_callback")
    trainer.train()
    trainer.evaluate()
    out = trainer.predict(TokenDataset(8, seed=2))
    assert len(cb.results) == 3

    hist = trainer.state.log_history
    powers = _logged(hist, "greenlm_power_w")
    assert len(powers) >= 6, hist
    # the window's clock starts a few microseconds before the meters do: 1 % of slack
    lo, hi = 100.0 * 0.99, 300.0 * 1.01
    assert all(lo <= p <= hi for p in powers), powers
    # the summary of the predict loop has its phase's mean power too: energy over duration
    pred = cb.results[2].phase("predict")
    assert out.metrics["test_greenlm_predict_power_w"] == pytest.approx(pred.energy_j / pred.duration_s)
    assert lo <= out.metrics["test_greenlm_predict_power_w"] <= hi

    scalars = _tb_scalars(tb)
    assert {"train/greenlm_power_w", "train/greenlm_energy_j", "eval/greenlm_power_w"} <= set(scalars), sorted(scalars)
    tb_train = [v for _, v in scalars["train/greenlm_power_w"]]
    logged_train = [h["greenlm_power_w"] for h in hist if "greenlm_power_w" in h]
    assert tb_train == pytest.approx(logged_train, rel=1e-6), "TensorBoard got what the logs had"
    steps = [s for s, _ in scalars["train/greenlm_energy_j"]]
    assert len(steps) == len(set(steps)), "one point per step for the running figures"
    assert "train/greenlm_train_energy_j" in scalars, "the Trainer's closing summary carries the train phase"


def test_power_with_this_machines_meters_stays_within_their_bounds(tmp_path: Path) -> None:
    """With the meters greenlm detects here (the CPU power model and RAM model: no GPU or RAPL
    on the test machine), logged power is never negative and never above the models' maximum
    (every visible thread at full load, all installed memory in use).
    """
    import psutil

    from greenlm.integrations.hf import GreenlmCallback
    from greenlm.meters.cpu_model import FULL_LOAD_OF_TDP, CpuModelMeter
    from greenlm.meters.ram_model import W_PER_GB, RamModelMeter

    cb = GreenlmCallback(interval_s=0.05, project="hf-bounds")
    trainer = _trainer(tmp_path, cb)
    trainer.train()
    trainer.evaluate()
    out = trainer.predict(TokenDataset(8, seed=2))
    maximum = 0.0
    for m in cb.tracker.meters:
        if isinstance(m, CpuModelMeter):
            maximum += m.spec.tdp_per_thread_w * FULL_LOAD_OF_TDP[1] * m.threads
        elif isinstance(m, RamModelMeter):
            maximum += W_PER_GB[1] * psutil.virtual_memory().total / 1024**3
        else:  # a real GPU or RAPL meter would need its own bound
            pytest.skip(f"this machine has a {m.kind} meter ({m.name}); the bound here covers the models")
    powers = [*_logged(trainer.state.log_history, "greenlm_power_w"), out.metrics["test_greenlm_predict_power_w"]]
    assert len(powers) >= 6
    assert all(0.0 <= p <= maximum for p in powers), (powers, maximum)
