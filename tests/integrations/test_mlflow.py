"""MLflow: metrics, tags and the JSON artifact, read back through the real client."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow")

from greenlm.meters.fake import ReplayMeter  # noqa: E402
from greenlm.tracking.tracker import EnergyTracker  # noqa: E402


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # the file store keeps tracking data and artifacts under tmp_path (a SQLite store would put
    # artifacts in ./mlruns of the working directory); the SQLite path is tested below as a user runs it
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield mlflow.MlflowClient()
    mlflow.set_tracking_uri(None)


def _artifact(client, run_id: str, path: str) -> dict:
    local = client.download_artifacts(run_id, path)
    return json.loads(Path(local).read_text())


def test_listener_logs_live_and_final_figures(tracking) -> None:
    from greenlm.integrations.mlflow import MlflowListener

    listener = MlflowListener(every_s=0.0)
    tracker = EnergyTracker(
        meters=[ReplayMeter("gpu:0", "gpu", 120.0)], interval_s=0.05, store=False, listeners=[listener], project="mlf"
    )
    with tracker:
        with tracker.phase("train"):
            for _ in range(4):
                time.sleep(0.05)
                tracker.step()
    r = tracker.result
    run = tracking.get_run(listener.last_run_id)
    assert run.info.status == "FINISHED", "the listener's own MLflow run is ended"
    m, tags = run.data.metrics, run.data.tags
    assert m["greenlm.energy_j"] == pytest.approx(r.energy_j)
    assert m["greenlm.co2e_g"] == pytest.approx(r.co2e_g)
    assert m["greenlm.component.gpu_0.energy_j"] == pytest.approx(r.component("gpu:0").energy_j)
    assert m["greenlm.phase.train.energy_j"] == pytest.approx(r.phase("train").energy_j)
    assert tags["greenlm.run_id"] == r.run_id
    assert tags["greenlm.provenance"] == "sampled"
    assert tags["greenlm.location"] == "DEU"
    hist = tracking.get_metric_history(run.info.run_id, "greenlm.energy_j")
    assert len(hist) >= 3, "live values while the window was open"
    assert [h.value for h in hist] == sorted(h.value for h in hist)
    power = tracking.get_metric_history(run.info.run_id, "greenlm.power_w.gpu_0")
    # Each value is the average power over one sampling interval, timed by the tracker's clock:
    # the scheduler can delay the meter's read by some microseconds after the tick's timestamp,
    # which moves a 50 ms interval's average by a fraction of a percent (seen 0.12 % in CI).
    assert power and all(h.value == pytest.approx(120.0, rel=0.1) for h in power)
    assert statistics.median(h.value for h in power) == pytest.approx(120.0, rel=1e-2)
    body = _artifact(tracking, run.info.run_id, f"greenlm/{r.run_id}.json")
    assert body["energy_j"] == pytest.approx(r.energy_j) and body["timeline"]


def test_log_run_into_the_active_run(tracking) -> None:
    from greenlm.integrations.mlflow import log_run

    tracker = EnergyTracker(meters=[ReplayMeter("gpu:0", "gpu", 80.0)], interval_s=0.05, store=False)
    with tracker:
        time.sleep(0.1)
    with mlflow.start_run() as active:
        rid = log_run(tracker.result)
    assert rid == active.info.run_id
    data = tracking.get_run(rid).data
    assert data.metrics["greenlm.energy_j"] == pytest.approx(tracker.result.energy_j)
    assert data.tags["greenlm.intensity_source"]


USER_SCRIPT = """
import time

import mlflow

from greenlm import EnergyTracker
from greenlm.integrations.mlflow import MlflowListener

with mlflow.start_run() as run:
    with EnergyTracker(project="mlflow-user", listeners=[MlflowListener(every_s=0.0)], interval_s=0.05) as t:
        time.sleep(0.3)
print(run.info.run_id, t.result.run_id, repr(t.result.energy_j), mlflow.get_tracking_uri())
"""


def test_the_extra_gives_a_working_local_setup_as_a_user_runs_it(tmp_path: Path) -> None:
    """The documented example, run as a user would: a fresh process in an empty folder, no
    MLflow settings at all. With MLflow 3 that is the SQLite store ``./mlflow.db`` (which
    needs alembic, in the extra); then the run is read back through the client.
    """
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["GREENLM_HOME"] = str(tmp_path / "home")
    work = tmp_path / "project"
    work.mkdir()
    p = subprocess.run(
        [sys.executable, "-c", USER_SCRIPT], cwd=work, env=env, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stderr[-3000:]
    mlflow_id, greenlm_id, energy, uri = p.stdout.split()[-4:]
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(mlflow_id)
    assert run.data.metrics["greenlm.energy_j"] == pytest.approx(float(energy))
    assert run.data.tags["greenlm.run_id"] == greenlm_id
    body = _artifact(client, mlflow_id, f"greenlm/{greenlm_id}.json")
    assert body["energy_j"] == pytest.approx(float(energy))
