"""The ingest models are the tracker's types: every dataclass field has its model field.

A field added to ``RunResult`` (or ``RunStart``, a component, a phase, a sample) that the
server's pydantic models do not know would be dropped silently on the way to a team server;
this test is what makes that impossible to forget.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

pytest.importorskip("pydantic")

from greenlm.server import models as M
from greenlm.server.ingest import run_result, run_start
from greenlm.tracking.result import ComponentEnergy, PhaseEnergy, RunResult, TimelinePoint
from greenlm.tracking.sink import Progress, RunStart, SampleRow
from tests.server.helpers import track_run

PAIRS = [
    (RunResult, M.RunIn),
    (ComponentEnergy, M.ComponentIn),
    (PhaseEnergy, M.PhaseIn),
    (TimelinePoint, M.TimelinePointIn),
    (RunStart, M.RunStartIn),
    (SampleRow, M.SampleIn),
    (Progress, M.ProgressIn),
]


def missing_fields(cls: type, model: Any) -> list[str]:
    """Fields of the dataclass ``cls`` that ``model`` lacks."""
    return [f.name for f in dataclasses.fields(cls) if f.name not in model.model_fields]


@pytest.mark.parametrize(("cls", "model"), PAIRS, ids=[c.__name__ for c, _ in PAIRS])
def test_every_field_of_the_tracker_types_is_a_model_field(cls: type, model: Any) -> None:
    assert missing_fields(cls, model) == []


def test_the_check_sees_a_forgotten_field() -> None:
    grown = dataclasses.make_dataclass(
        "GrownResult", [("water_l", float, dataclasses.field(default=0.0))], bases=(RunResult,), frozen=True
    )
    assert missing_fields(grown, M.RunIn) == ["water_l"]


def test_a_result_and_a_start_cross_the_models_unchanged(tmp_path: Any) -> None:
    r = track_run(f"sqlite:///{tmp_path / 'runs.db'}", "roundtrip", "DEU")
    back = run_result(M.RunIn.model_validate(r.to_dict(timeline=True)))
    assert back == r
    start = RunStart(
        run_id=r.run_id,
        project=r.project,
        started_at=r.started_at,
        pid=42,
        host="node-1",
        process_start_time=1.5,
        location=dict(r.location),
        pue=r.pue,
        metadata={"k": "v"},
        meters=[{"name": "cpu", "band_low": 0.5, "band_high": 1.5}],
        pue_source=r.pue_source,
        price_per_kwh=r.price_per_kwh,
        currency=r.currency,
        price_source=r.price_source,
    )
    assert run_start(M.RunStartIn.model_validate(dataclasses.asdict(start))) == start
