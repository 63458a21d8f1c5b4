"""`greenlm serve` from the command line: bad arguments, an engine that crashes or is killed,
attaching to a running engine. The engine is fake_engine.py run as a real process (a small
OpenAI-compatible server standing in for vLLM-class engines); the meters are the real ones.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("aiohttp")
httpx = pytest.importorskip("httpx")

from greenlm.cli import main  # noqa: E402
from greenlm.store import open_store  # noqa: E402

from ._helpers import FAKE_ENGINE, FakeEngine, free_port, kill_tree  # noqa: E402


def fake(port: int, *extra: str) -> list[str]:
    return [sys.executable, FAKE_ENGINE, "--port", str(port), *extra]


class Serve:
    """`python -m greenlm serve ...` as a process."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.port = free_port()
        self.store = f"sqlite:///{tmp_path / 'runs.db'}"
        self.log = tmp_path / "serve.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLM_")}
        env["GREENLM_HOME"] = str(tmp_path / "home")
        cmd = [sys.executable, "-m", "greenlm", "serve", "--port", str(self.port), "--interval", "0.05"]
        cmd += ["--store", self.store, "--location", "FRA", *args]
        with self.log.open("wb") as fh:
            self.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_up(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(self.url + "/greenlm/stats", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("greenlm serve did not come up:\n" + self.log.read_text())

    def wait(self, timeout_s: float = 60) -> int:
        try:
            return self.proc.wait(timeout_s)
        finally:
            kill_tree(self.proc)

    def run(self) -> dict:
        runs = open_store(self.store).list_runs()
        assert len(runs) == 1, runs
        return open_store(self.store).get_run(runs[0].run_id).to_dict()


def chat(url: str, n: int = 3) -> httpx.Response:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "x"}], "max_tokens": n}
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=30)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--pid", "123"], "--pid needs --upstream URL"),
        (["serve", "--upstream", "http://127.0.0.1:9"], "needs its process id"),
        (["serve", "--port", "8000", "--", "transformers", "serve", "m"], "would both use port 8000"),
        (["serve", "--upstream", "localhost:8001", "--pid", "1"], "expected an http:// or https:// URL"),
        (["serve", "--", "./my-engine", "--model", "m"], "give the engine a --port"),
        (["serve", "--port", "70000", "--", "x"], "argument --port: must be a whole number (1-65535), got 70000"),
        (
            ["bench", "serve", "--url", "http://127.0.0.1:9", "--concurrency", "1,two"],
            "argument --concurrency: expected comma-separated whole numbers",
        ),
        (
            ["bench", "serve", "--url", "http://127.0.0.1:9", "--requests", "0"],
            "argument --requests: must be a whole number",
        ),
    ],
)
def test_bad_arguments_exit_2_with_what_would_be_right(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_bad_location_fails_before_the_engine_starts(capsys):
    port = free_port()
    assert main(["serve", "--location", "Atlantis", "--", *fake(port)]) == 2
    assert "Unknown location 'Atlantis'" in capsys.readouterr().err
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)


def test_bench_without_a_proxy_says_where_the_energy_comes_from(capsys):
    with FakeEngine() as eng:  # an engine, but no greenlm serve in front of it
        assert main(["bench", "serve", "--url", eng.url, "--requests", "1"]) == 2
    assert "is not a greenlm serve proxy" in capsys.readouterr().err


def test_an_engine_that_crashes_ends_the_run_cleanly_with_its_summary(tmp_path):
    engine_port = free_port()
    s = Serve(tmp_path, "--", *fake(engine_port, "--exit-after-requests", "1"))
    s.wait_up()
    assert chat(s.url).status_code == 200
    crashed = chat(s.url)  # the engine dies on this one
    assert crashed.status_code == 502 and crashed.json()["error"]["code"] in ("upstream_failed", "upstream_unavailable")
    assert s.wait() == 3  # the engine's exit code
    log = s.log.read_text()
    assert "the engine exited with code 3; closing the serving run" in log
    run = s.run()
    assert run["status"] == "failed" and run["error"] == "engine exited with code 3"
    sv = run["metadata"]["serving"]
    assert sv["statuses"] == {"ok": 1, "upstream-error": 1} and sv["stop_reason"] == "the engine exited with code 3"
    assert sv["requests_energy_j"] + sv["idle_energy_j"] == pytest.approx(run["energy_j"], rel=1e-9)


def test_an_engine_killed_from_outside_ends_the_run_and_says_so(tmp_path):
    s = Serve(tmp_path, "--", *fake(free_port()))
    s.wait_up()
    assert chat(s.url).status_code == 200
    import psutil

    (engine,) = psutil.Process(s.proc.pid).children()
    engine.kill()
    assert s.wait() == 1
    run = s.run()
    assert run["status"] == "failed" and run["error"] == "engine killed by SIGKILL"
    assert run["metadata"]["serving"]["requests"] == 1


def test_sigint_while_the_engine_starts_is_a_normal_stop(tmp_path):
    # an "engine" that never answers: greenlm waits, then Ctrl-C
    s = Serve(
        tmp_path,
        "--upstream",
        f"http://127.0.0.1:{free_port()}",
        "--",
        sys.executable,
        "-c",
        "import time; time.sleep(60)",
    )
    deadline = time.monotonic() + 60
    while "waiting for it to answer" not in s.log.read_text():  # greenlm is up and waiting
        assert time.monotonic() < deadline and s.proc.poll() is None, s.log.read_text()
        time.sleep(0.05)
    s.proc.send_signal(signal.SIGINT)
    assert s.wait() == 0, s.log.read_text()
    assert "stopped by SIGINT before the engine answered" in s.log.read_text()
    assert s.run()["status"] == "completed"


def test_an_engine_that_never_answers_times_out_and_is_stopped(tmp_path):
    s = Serve(
        tmp_path,
        "--startup-timeout",
        "1.5",
        "--upstream",
        f"http://127.0.0.1:{free_port()}",
        "--",
        sys.executable,
        "-c",
        "import time; time.sleep(60)",
    )
    assert s.wait() == 2
    assert "did not answer GET /v1/models within 1.5 s" in s.log.read_text()
    run = s.run()
    assert run["status"] == "failed" and "did not answer" in run["error"]


def test_attaching_to_a_running_engine_measures_it_and_leaves_it_running(tmp_path):
    with FakeEngine("--burn", "--token-delay-ms", "5") as eng:
        s = Serve(tmp_path, "--upstream", eng.url, "--pid", str(eng.proc.pid))
        s.wait_up()
        r = chat(s.url, 40)
        assert r.status_code == 200 and r.json()["greenlm"]["energy_j"] > 0
        s.proc.send_signal(signal.SIGTERM)
        assert s.wait() == 0
        assert eng.proc.poll() is None, "an attached engine is not greenlm's to stop"
        run = s.run()
        assert run["status"] == "completed" and run["metadata"]["serving"]["requests"] == 1
        assert run["metadata"]["command"] is None
