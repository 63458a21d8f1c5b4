"""Hugging Face Trainer: a real Trainer on a tiny GPT-2 built from a config."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("transformers")

from greenlm.meters.fake import ReplayMeter
from greenlm.store.runs import open_store

from ._tiny import TokenDataset, tiny_gpt2


def _trainer(tmp_path: Path, callback, **kw):
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
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        **kw,
    )
    return Trainer(
        model=tiny_gpt2(),
        args=args,
        train_dataset=TokenDataset(64),
        eval_dataset=TokenDataset(16, seed=1),
        callbacks=[callback],
    )


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
    assert len(logged) >= 4, "training and evaluation logs carry the energy"
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
