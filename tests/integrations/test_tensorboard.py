"""TensorBoard: the scalars read back from the event files match the run."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

from greenlm.tracking.tracker import EnergyTracker

pytest.importorskip("torch.utils.tensorboard")
from tensorboard.backend.event_processing.event_accumulator import (
    EventAccumulator,
)

from greenlm.integrations.tensorboard import TensorBoardListener


def _scalars(log_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_event_files_match_the_run(tmp_path: Path, replay_gpu) -> None:
    tb = tmp_path / "tb"
    tracker = EnergyTracker(meters=[replay_gpu], interval_s=0.05, store=False, listeners=[TensorBoardListener(str(tb))])
    with tracker:
        with tracker.phase("train"):
            for _ in range(6):
                time.sleep(0.04)
                tracker.step()
        with tracker.phase("evaluate"):
            time.sleep(0.1)
    r = tracker.result
    acc = _scalars(tb)
    tags = acc.Tags()["scalars"]
    assert "greenlm/power_w/gpu:0" in tags

    powers = [e.value for e in acc.Scalars("greenlm/power_w/gpu:0")]
    assert len(powers) >= 3
    # average power over each sampling interval, timed by the tracker's clock: scheduling
    # jitter between the tick's timestamp and the meter's read moves it a fraction of a percent
    assert powers == pytest.approx([200.0] * len(powers), rel=0.1)
    assert statistics.median(powers) == pytest.approx(200.0, rel=1e-2)

    energy = acc.Scalars("greenlm/energy_j")
    values = [e.value for e in energy]
    assert values == sorted(values), "cumulative energy never decreases"
    assert values[-1] == pytest.approx(r.energy_j, rel=1e-6)
    assert energy[-1].step == r.steps == 6
    assert acc.Scalars("greenlm/co2e_g")[-1].value == pytest.approx(r.co2e_g, rel=1e-6)

    for path in ("train", "evaluate"):
        ev = acc.Scalars(f"greenlm/phase/{path}/energy_j")[-1].value
        assert ev == pytest.approx(r.phase(path).energy_j, rel=1e-6)
    # the evaluate phase (0.1 s at 200 W) is about 20 J
    assert r.phase("evaluate").energy_j == pytest.approx(20.0, rel=0.3)


def test_samples_axis_and_provenance_text(tmp_path: Path, replay_gpu) -> None:
    tb = tmp_path / "tb2"
    tracker = EnergyTracker(
        meters=[replay_gpu], interval_s=0.05, store=False, listeners=[TensorBoardListener(str(tb), step_axis="samples")]
    )
    with tracker:
        time.sleep(0.3)
    acc = _scalars(tb)
    steps = [e.step for e in acc.Scalars("greenlm/energy_j")]
    assert steps == sorted(set(steps)), "one point per sample, increasing"
    text = acc.Tensors("greenlm/provenance/text_summary")[-1]
    body = text.tensor_proto.string_val[0].decode()
    assert "gpu:0" in body and "sampled" in body and "DEU" in body


def test_bad_step_axis_is_a_config_error(tmp_path: Path) -> None:
    from greenlm.errors import ConfigError
    from greenlm.integrations.tensorboard import TensorBoardListener

    with pytest.raises(ConfigError, match="step_axis"):
        TensorBoardListener(str(tmp_path), step_axis="epochs")
