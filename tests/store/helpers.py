"""Helpers for the store tests: real tracked runs, a killed run's row, raw SQLite access."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from greenlm import EnergyTracker
from greenlm.meters import ReplayMeter
from greenlm.meters.base import Band
from greenlm.store import open_store
from greenlm.tracking.sink import Progress, RunStart, SampleRow


def db_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def tracked_run(url: str, project: str = "p", seconds: float = 0.05, power_w: float = 10.0, **kw: Any) -> Any:
    """A real tracked run (replay meter, fast sampling) stored at ``url``; returns its result."""
    t = EnergyTracker(
        project=project,
        location=kw.pop("location", "DEU"),
        interval_s=0.01,
        store=url,
        meters=[ReplayMeter("gpu:0", "gpu", power_w=power_w, band=kw.pop("band", None))],
        handle_signals=False,
        **kw,
    )
    with t:
        time.sleep(seconds)
    return t.result


def dead_pid() -> int:
    """The pid of a process that has exited (a run row with it reads as interrupted)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def killed_row(url: str, run_id: str, *, energy_j: float = 50.0, start_json: dict[str, Any] | None = None) -> None:
    """A run row as a killed tracker leaves it: started, flushed once, never finished.

    Written through the store's writer (``begin_run``, ``add_samples``); ``start_json``
    replaces the recorded start (to emulate rows written by older greenlm versions).
    """
    st = open_store(url)
    st.begin_run(
        RunStart(
            run_id=run_id,
            project="killed",
            started_at="2025-03-01T10:00:00+00:00",
            pid=dead_pid(),
            host=socket.gethostname(),
            process_start_time=0.0,
            location={"code": "FRA", "intensity_g_per_kwh": 44.0, "source": "test"},
            pue=1.2,
            meters=[{"name": "gpu:0", "kind": "gpu", "provenance": "sampled", "band_low": 0.9, "band_high": 1.1}],
            pue_source="user value",
            price_per_kwh=0.25,
            currency="EUR",
            price_source="user value",
        )
    )
    st.add_samples(
        run_id,
        [SampleRow(1.0, "gpu:0", energy_j / 2, energy_j / 2), SampleRow(2.0, "gpu:0", energy_j, energy_j / 2)],
        Progress(2.0, energy_j, energy_j * 1.2, 0.0, {"gpu:0": energy_j}),
    )
    if start_json is not None:
        sql(url, "UPDATE runs SET start_json = ? WHERE run_id = ?", json.dumps(start_json), run_id)


def sql(url: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one statement with plain sqlite3 (how the tests inject damage) and return its rows."""
    con = sqlite3.connect(db_path(url))
    try:
        rows = con.execute(statement, params).fetchall()
        con.commit()
        return rows
    finally:
        con.close()


def result_json(url: str, run_id: str) -> dict[str, Any]:
    (row,) = sql(url, "SELECT result_json FROM runs WHERE run_id = ?", run_id)
    return dict(json.loads(row[0]))


__all__ = ["Band", "db_path", "dead_pid", "killed_row", "result_json", "sql", "tracked_run"]
