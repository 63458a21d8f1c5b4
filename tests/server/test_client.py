from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from greenlm.cli import main
from greenlm.store import open_store
from greenlm.tracking import EnergyTracker
from greenlm.tracking.outbox import HttpSink, Outbox, outbox_root, push, server_key
from tests.server.helpers import LiveServer, burn_cpu, free_port, track_run


def _server(tmp_path: Path, name: str = "server.db") -> tuple[Any, str]:
    from greenlm.server.app import ServerSettings, create_app

    app = create_app(ServerSettings(store_url=f"sqlite:///{tmp_path / name}"))
    _tid, token = app.state.tokens.create("tracker")
    return app, token


def _start_payload(run_id: str) -> dict[str, Any]:
    import dataclasses

    from greenlm.tracking.sink import RunStart

    loc = {"code": "FRA", "intensity_g_per_kwh": 56.0, "source": "test", "year": 2023, "defaulted": False}
    return dataclasses.asdict(RunStart(run_id, "p", "2025-01-01T00:00:00+00:00", 1, "h", 0.0, loc, 1.0))


def _tracker(url: str, token: str, store: Any, project: str) -> EnergyTracker:
    """A tracker that reports to the team server at ``url`` (fast sampling and flushes)."""
    return EnergyTracker(
        project=project,
        location="FRA",
        interval_s=0.05,
        flush_interval_s=0.1,
        store=store,
        server=url,
        token=token,
        handle_signals=False,
    )


def _outbox_events(url: str) -> list[Path]:
    d = outbox_root() / server_key(url)
    return sorted(d.glob("*/*.json")) if d.is_dir() else []


def test_server_stopped_mid_run_then_started_run_arrives_complete(tmp_path: Path) -> None:
    app, token = _server(tmp_path)
    live = LiveServer(app).start()
    local_url = f"sqlite:///{tmp_path / 'local.db'}"
    t = _tracker(live.url, token, local_url, "resilient")
    with t:
        with t.phase("before"):
            burn_cpu(0.4)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the start and some samples are on the server
            try:
                if app.state.store.get_samples(t._run_id):
                    break
            except Exception:
                pass
            time.sleep(0.05)
        live.stop()
        with t.phase("while-down"):
            burn_cpu(0.6)  # flushes go to the outbox while the server is down
        assert _outbox_events(live.url), "events wait in the outbox"
        live.start()
        with t.phase("after"):
            burn_cpu(0.3)
    r = t.result
    try:
        server_store = app.state.store
        got = server_store.get_run(r.run_id).to_dict()
        assert got["status"] == "completed"
        assert got["energy_j"] == pytest.approx(r.energy_j)
        assert [p["name"] for p in got["phases"]] == ["before", "while-down", "after"]
        remote = server_store.get_samples(r.run_id)
        local = open_store(local_url).get_samples(r.run_id)
        assert len(remote) == len(local)
        assert max(s.t_s for s in remote) == pytest.approx(max(s.t_s for s in local))
        assert not _outbox_events(live.url), "the outbox is empty once delivered"
    finally:
        live.stop()


def test_server_down_for_the_whole_run_then_push(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, token = _server(tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    r = track_run(f"sqlite:///{tmp_path / 'local.db'}", "offline", server=url, token=token)
    assert r.status == "completed"  # the job never noticed
    events = _outbox_events(url)
    kinds = [p.name.split("-", 1)[1] for p in events]
    assert kinds[0] == "start.json" and kinds[-1] == "result.json" and "samples.json" in kinds
    assert main(["server", "push", "--server", url, "--token", token]) == 1  # still down
    assert "still waiting" in capsys.readouterr().out
    with LiveServer(app, port):
        monkeypatch.setenv("GREENLM_TOKEN", token)
        assert main(["server", "push"]) == 0
        assert "delivered" in capsys.readouterr().out
    got = app.state.store.get_run(r.run_id).to_dict()
    assert got["energy_j"] == pytest.approx(r.energy_j)
    assert app.state.store.get_samples(r.run_id)
    assert not _outbox_events(url)
    assert main(["server", "push"]) == 0  # nothing left


def test_next_tracker_start_drains_the_outbox(tmp_path: Path) -> None:
    app, token = _server(tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    first = track_run(f"sqlite:///{tmp_path / 'local.db'}", "first", server=url, token=token)
    assert _outbox_events(url)
    with LiveServer(app, port):
        second = track_run(f"sqlite:///{tmp_path / 'local.db'}", "second", server=url, token=token)
        deadline = time.monotonic() + 15
        while _outbox_events(url) and time.monotonic() < deadline:
            time.sleep(0.1)
        ids = {r.run_id for r in app.state.store.list_runs()}
    assert {first.run_id, second.run_id} <= ids


def test_wrong_token_keeps_runs_in_the_outbox(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app, token = _server(tmp_path)
    with LiveServer(app) as live:
        r = track_run(f"sqlite:///{tmp_path / 'local.db'}", "badtoken", server=live.url, token="glm_wrong")
        assert _outbox_events(live.url)
        reports = push(live.url, token)
    assert reports[live.url].delivered >= 2 and reports[live.url].pending == 0
    assert app.state.store.get_run(r.run_id).status == "completed"


def test_rejected_events_are_kept_aside(tmp_path: Path) -> None:
    app, token = _server(tmp_path)
    with LiveServer(app) as live:
        box = Outbox(live.url)
        box.put(
            "abcd1234",
            "start",
            {
                "run_id": "abcd1234",
                "project": "x" * 1000,
                "started_at": "2025-01-01T00:00:00",
                "location": {"intensity_g_per_kwh": 1.0},
            },
        )
        box.put(
            "abcd1234",
            "samples",
            {"samples": [], "progress": {"duration_s": 0, "energy_j": 0, "facility_energy_j": 0, "co2e_g": 0}},
        )
        rep = push(live.url, token)[live.url]
    assert rep.rejected == 2 and rep.pending == 0
    rejected = list((box.dir / "rejected").glob("*.json"))
    assert len(rejected) == 2
    assert "HTTP 4" in (box.dir / "rejected" / (rejected[0].stem + ".reason.txt")).read_text()


def test_sink_never_raises(tmp_path: Path) -> None:
    from greenlm.tracking.sink import Progress, RunStart, SampleRow

    blocker = tmp_path / "home-is-a-file"
    blocker.write_text("")
    sink = HttpSink("http://127.0.0.1:9", "glm_x", outbox_dir=blocker / "outbox", finish_wait_s=0.5, background=False)
    start = RunStart("r1", "p", "2025-01-01T00:00:00", 1, "h", 0.0, {"intensity_g_per_kwh": 1.0}, 1.0)
    sink.begin(start)
    sink.flush("r1", [SampleRow(0.1, "cpu", 1.0, float("nan"))], Progress(0.1, 1, 1, 0.1, {"cpu": 1}))
    r = track_run(f"sqlite:///{tmp_path / 'l.db'}", "p")
    t0 = time.monotonic()
    sink.finish(r)
    assert time.monotonic() - t0 < 2


def test_unreachable_server_does_not_slow_the_job(tmp_path: Path) -> None:
    t0 = time.monotonic()
    r = track_run(f"sqlite:///{tmp_path / 'l.db'}", "fast", server="http://127.0.0.1:9", token="glm_x", seconds=0.2)
    assert r.status == "completed"
    assert time.monotonic() - t0 < 5


def test_outbox_event_numbering_survives_a_new_process(tmp_path: Path) -> None:
    a = Outbox("example.org:8787", tmp_path)
    assert a.url == "http://example.org:8787"
    a.put("run1", "start", {})
    a.put("run1", "samples", {"samples": []})
    b = Outbox("http://example.org:8787/", tmp_path)
    p = b.put("run1", "samples", {"samples": []})
    assert p.name == "00000003-samples.json"
    assert json.loads(p.read_text())["seq"] == 3
    assert b.pending() == 3


def test_concurrent_drains_deliver_once(tmp_path: Path) -> None:
    app, token = _server(tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    r = track_run(f"sqlite:///{tmp_path / 'local.db'}", "twice", server=url, token=token)
    with LiveServer(app, port):
        threads = [threading.Thread(target=push, args=(url, token)) for _ in range(3)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    local = open_store(f"sqlite:///{tmp_path / 'local.db'}").get_samples(r.run_id)
    assert len(app.state.store.get_samples(r.run_id)) == len(local)


def test_sinks_share_one_delivery_thread_per_server(tmp_path: Path) -> None:
    def outbox_threads() -> int:
        return sum(1 for t in threading.enumerate() if t.name == "greenlm-outbox")

    before = outbox_threads()
    sinks = [HttpSink("http://127.0.0.1:9", "glm_shared", outbox_dir=tmp_path) for _ in range(20)]
    assert len({id(s.courier) for s in sinks}) == 1
    assert outbox_threads() - before == 1
    other = HttpSink("http://127.0.0.1:10", "glm_shared", outbox_dir=tmp_path)
    assert other.courier is not sinks[0].courier
    for c in {id(s.courier): s.courier for s in [*sinks, other]}.values():
        c.close(timeout_s=2)


def test_delivery_keeps_the_empty_folder_of_a_live_run(tmp_path: Path) -> None:
    """The courier drains a run folder while the tracker writes the run's next event into it:
    the folder must survive until the run's result is delivered, or the event is lost (the
    server then refuses every later batch of that run with 404)."""
    import dataclasses

    from greenlm.tracking.outbox import Delivery
    from greenlm.tracking.sink import Progress

    app, token = _server(tmp_path)
    with LiveServer(app) as live:
        box = Outbox(live.url, tmp_path / "outbox")
        box.put("run-live", "start", _start_payload("run-live"))
        delivery = Delivery(box, token)
        try:
            assert delivery.drain().delivered == 1
            assert (box.dir / "run-live").is_dir(), "the run has not ended: its folder stays"
            sample = {"t_s": 0.1, "component": "cpu", "energy_j": 1.0, "power_w": 10.0}
            progress = dataclasses.asdict(Progress(0.1, 1, 1, 0.1, {"cpu": 1.0}))
            box.put("run-live", "samples", {"samples": [sample], "progress": progress})
            rep = delivery.drain()
            assert rep.delivered == 1 and rep.rejected == 0, "the batch found its run on the server"
        finally:
            delivery.close()


def test_delivery_removes_a_finished_or_abandoned_run_folder(tmp_path: Path) -> None:
    import os

    from greenlm.tracking.outbox import STALE_RUN_DIR_S, Delivery

    app, token = _server(tmp_path)
    box = Outbox("http://127.0.0.1:9", tmp_path / "outbox")
    abandoned = box.dir / "run-killed"
    abandoned.mkdir(parents=True)
    old = time.time() - STALE_RUN_DIR_S - 60
    os.utime(abandoned, (old, old))
    delivery = Delivery(box, token)
    try:
        assert delivery.drain().runs_done == 1
        assert not abandoned.exists(), "an empty folder untouched for an hour is removed"
    finally:
        delivery.close()

    r = track_run(f"sqlite:///{tmp_path / 'local.db'}", "done")
    with LiveServer(app) as live:
        box = Outbox(live.url, tmp_path / "outbox2")
        box.put(r.run_id, "result", r.to_dict(timeline=True))
        delivery = Delivery(box, token)
        try:
            rep = delivery.drain()
            assert rep.delivered == 1 and rep.runs_done == 1
            assert not (box.dir / r.run_id).exists(), "a run whose result went out leaves no folder"
        finally:
            delivery.close()


def test_put_survives_its_folder_being_removed_mid_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection at the write: the run folder vanishes just before the event is written."""
    import shutil

    import greenlm.tracking.spool as client

    box = Outbox("http://127.0.0.1:9", tmp_path)
    real = client._atomic_write
    removed: list[Path] = []

    def racing_write(path: Path, text: str) -> None:
        if path.parent.name == "run-r" and not removed:
            shutil.rmtree(path.parent)
            removed.append(path.parent)
        real(path, text)

    monkeypatch.setattr(client, "_atomic_write", racing_write)
    p = box.put("run-r", "start", {"run_id": "run-r"})
    assert removed, "the fault was injected"
    assert json.loads(p.read_text()) == {"run_id": "run-r"}


def _wait_for_run(store: Any, run_id: str, timeout_s: float = 10.0) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            got = store.get_run(run_id)
            if got.status == "completed":
                return got.to_dict()
        except Exception:
            pass
        time.sleep(0.05)
    return None


def test_a_broken_local_store_does_not_keep_the_run_from_the_team_server(tmp_path: Path) -> None:
    app, token = _server(tmp_path)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with LiveServer(app) as live:
        t = _tracker(live.url, token, f"sqlite:///{blocker / 'runs.db'}", "isolated")
        with t:
            burn_cpu(0.3)
        r = t.result
        assert any(w.startswith("run store") and "unavailable" in w for w in r.warnings), r.warnings
        got = _wait_for_run(app.state.store, r.run_id)
    assert got is not None, "the run reached the team server"
    assert got["energy_j"] == pytest.approx(r.energy_j)
    assert app.state.store.get_samples(r.run_id), "with its samples"


class _StoreThatDiesMidRun:
    """A RunSink (the protocol a local store implements) whose disk fills up after the start."""

    def __init__(self) -> None:
        self.begun = False

    def begin(self, run: Any) -> None:
        self.begun = True

    def flush(self, run_id: str, samples: Any, progress: Any) -> None:
        raise OSError(28, "No space left on device")

    def finish(self, result: Any) -> None:
        raise OSError(28, "No space left on device")


def test_a_store_failing_mid_run_does_not_stop_delivery_to_the_team_server(tmp_path: Path) -> None:
    app, token = _server(tmp_path)
    dying = _StoreThatDiesMidRun()
    with LiveServer(app) as live:
        t = _tracker(live.url, token, dying, "isolated")
        with t:
            with t.phase("work"):
                burn_cpu(0.5)
        r = t.result
        got = _wait_for_run(app.state.store, r.run_id)
    assert dying.begun
    failures = [w for w in r.warnings if "run store write failed" in w]
    assert len(failures) == 1 and "No space left" in failures[0], r.warnings
    assert got is not None and [p["name"] for p in got["phases"]] == ["work"]
    samples = app.state.store.get_samples(r.run_id)
    assert max(s.t_s for s in samples) == pytest.approx(r.duration_s, abs=1e-6), "every sample arrived"
