"""TensorBoard: the scalars read back with TensorBoard's own reader match the run."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

from greenlm.tracking.tracker import EnergyTracker

pytest.importorskip("torch.utils.tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

from greenlm.integrations.tensorboard import TensorBoardListener


def _scalars(log_dir: str | Path) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def _train(tracker: EnergyTracker, steps: int = 6, step_s: float = 0.04) -> None:
    with tracker:
        with tracker.phase("train"):
            for _ in range(steps):
                time.sleep(step_s)
                tracker.step()
        with tracker.phase("evaluate"):
            time.sleep(0.1)


def _assert_one_point_per_step(acc: EventAccumulator) -> None:
    for tag in acc.Tags()["scalars"]:
        steps = [e.step for e in acc.Scalars(tag)]
        assert steps == sorted(set(steps)), f"{tag}: two points on one step or a step going back: {steps}"


def test_event_files_match_the_run(tmp_path: Path, replay_gpu) -> None:
    listener = TensorBoardListener(tmp_path / "tb", step_axis="steps")
    tracker = EnergyTracker(meters=[replay_gpu], interval_s=0.05, store=False, listeners=[listener])
    _train(tracker)
    r = tracker.result
    assert listener.run_dir is not None and Path(listener.run_dir).parent.parent == tmp_path / "tb"
    acc = _scalars(listener.run_dir)
    tags = acc.Tags()["scalars"]
    assert "greenlm/power_w/gpu:0" in tags
    _assert_one_point_per_step(acc)

    powers = [e.value for e in acc.Scalars("greenlm/power_w/gpu:0")]
    assert len(powers) >= 3
    # mean power between two points, each end a sample of the tracker's clock: scheduling
    # jitter between a tick's timestamp and the meter's read moves it a fraction of a percent
    assert powers == pytest.approx([200.0] * len(powers), rel=0.1)
    assert statistics.median(powers) == pytest.approx(200.0, rel=1e-2)

    energy = acc.Scalars("greenlm/energy_j")
    values = [e.value for e in energy]
    assert values == sorted(values), "cumulative energy never decreases"
    assert values[-1] == pytest.approx(r.energy_j, rel=1e-6)
    assert energy[-1].step == r.steps == 6, "the steps axis is the tracker's step count"
    assert acc.Scalars("greenlm/co2e_g")[-1].value == pytest.approx(r.co2e_g, rel=1e-6)

    for path in ("train", "evaluate"):
        ev = acc.Scalars(f"greenlm/phase/{path}/energy_j")[-1].value
        assert ev == pytest.approx(r.phase(path).energy_j, rel=1e-6)
    # the evaluate phase (0.1 s at 200 W) is about 20 J
    assert r.phase("evaluate").energy_j == pytest.approx(20.0, rel=0.3)


def test_steps_faster_and_slower_than_sampling_never_share_a_step(tmp_path: Path, replay_gpu) -> None:
    """Several samples inside one step (slow steps) and several steps inside one sample (fast
    steps): the steps axis still has one point per step, increasing.
    """
    listener = TensorBoardListener(tmp_path / "tb", step_axis="steps")
    tracker = EnergyTracker(meters=[replay_gpu], interval_s=0.02, store=False, listeners=[listener])
    with tracker:
        for i in range(12):
            time.sleep(0.09 if i % 3 == 0 else 0.002)
            tracker.step()
    acc = _scalars(listener.run_dir)
    _assert_one_point_per_step(acc)
    energy = acc.Scalars("greenlm/energy_j")
    assert energy[-1].step == 12 and energy[-1].value == pytest.approx(tracker.result.energy_j, rel=1e-6)
    # the power between points is the mean over the points' interval: 200 W throughout
    assert statistics.median(e.value for e in acc.Scalars("greenlm/power_w/total")) == pytest.approx(200.0, rel=0.02)


def test_several_runs_in_one_directory_stay_separate_runs(tmp_path: Path) -> None:
    from greenlm.meters.fake import ReplayMeter

    tb = tmp_path / "tb"
    results = []
    for project, watts in (("alpha", 100.0), ("alpha", 300.0), ("beta", 50.0)):
        tracker = EnergyTracker(
            meters=[ReplayMeter("gpu:0", "gpu", watts)],
            interval_s=0.05,
            store=False,
            project=project,
            listeners=[TensorBoardListener(tb)],
        )
        with tracker:
            time.sleep(0.3)
        results.append(tracker.result)
    mux = EventMultiplexer(size_guidance={"scalars": 0})
    mux.AddRunsFromDirectory(str(tb))
    mux.Reload()
    runs = sorted(mux.Runs())
    assert len(runs) == 3, runs
    assert sum(r.startswith("alpha") for r in runs) == 2 and sum(r.startswith("beta") for r in runs) == 1
    finals = sorted(mux.Scalars(run, "greenlm/energy_j")[-1].value for run in runs)
    assert finals == pytest.approx(sorted(r.energy_j for r in results), rel=1e-6)
    for run in runs:
        steps = [e.step for e in mux.Scalars(run, "greenlm/energy_j")]
        assert steps == sorted(set(steps))
        powers = [e.value for e in mux.Scalars(run, "greenlm/power_w/gpu:0")]
        assert statistics.median(powers) in (
            pytest.approx(100.0, rel=0.02),
            pytest.approx(300.0, rel=0.02),
            pytest.approx(50.0, rel=0.02),
        ), "each run's curve is its own, not a merge"


def test_one_listener_reused_gives_each_window_its_own_run(tmp_path: Path, replay_gpu) -> None:
    listener = TensorBoardListener(tmp_path / "tb")
    tracker = EnergyTracker(meters=[replay_gpu], interval_s=0.05, store=False, listeners=[listener])
    dirs = []
    for _ in range(2):
        with tracker:
            time.sleep(0.15)
        dirs.append(listener.run_dir)
    assert len(set(dirs)) == 2
    for d in dirs:
        _assert_one_point_per_step(_scalars(d))


def test_samples_axis_and_provenance_text(tmp_path: Path, replay_gpu) -> None:
    listener = TensorBoardListener(tmp_path / "tb2", per_run=False)
    tracker = EnergyTracker(meters=[replay_gpu], interval_s=0.05, store=False, listeners=[listener])
    with tracker:
        time.sleep(0.3)
    assert listener.run_dir == str(tmp_path / "tb2")
    acc = _scalars(tmp_path / "tb2")
    _assert_one_point_per_step(acc)
    steps = [e.step for e in acc.Scalars("greenlm/energy_j")]
    assert steps == list(range(1, len(steps) + 1)), "one point per sample, then the final figures"
    text = acc.Tensors("greenlm/provenance/text_summary")[-1]
    body = text.tensor_proto.string_val[0].decode()
    assert "gpu:0" in body and "sampled" in body and "DEU" in body
    assert "e-0" not in body and "e+0" not in body, "figures for people, no exponent"


def test_bad_step_axis_is_a_config_error(tmp_path: Path) -> None:
    from greenlm.errors import ConfigError

    with pytest.raises(ConfigError, match="step_axis"):
        TensorBoardListener(str(tmp_path), step_axis="epochs")
