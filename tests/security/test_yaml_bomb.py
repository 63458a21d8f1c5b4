"""A YAML alias bomb and other hostile plans posted to a real ``greenlm dashboard`` process.

The dashboard runs as its own process (as a user starts it), so its memory can be watched
from outside: a watchdog stops it if it grows by more than ``MAX_GROWTH_MB`` (what greenlm
before this fix did: 395 bytes of nested aliases took it to 3.6 GB), and the test then fails
instead of exhausting the machine.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.helpers import free_port

psutil = pytest.importorskip("psutil")
MAX_GROWTH_MB = 300


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """A lifecycle plan with ``width ** levels`` strings in a few hundred bytes of aliases."""
    names = "abcdefghijklmnop"[:levels]
    lines = ["name: bomb", f"{names[0]}: &{names[0]} [" + ",".join(["lol"] * width) + "]"]
    for prev, cur in itertools.pairwise(names):
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * width) + "]")
    lines += ["model:", f"  params: *{names[-1]}"]
    return "\n".join(lines) + "\n"


class Dashboard:
    """``greenlm dashboard`` in a process of its own, with a memory watchdog."""

    def __init__(self, home: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "GREENLM_HOME": str(home)}
        code = "import sys; from greenlm.cli import main; sys.exit(main(sys.argv[1:]))"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, "dashboard", "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.ps = psutil.Process(self.proc.pid)
        self.peak_mb = 0.0
        self.killed_for_memory = False
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"the dashboard did not start: {self.proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            time.sleep(0.1)
        self.base_mb = self.rss_mb()
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._watchdog, daemon=True)
        self._watch.start()

    def rss_mb(self) -> float:
        return float(self.ps.memory_info().rss) / 2**20

    def _watchdog(self) -> None:
        while not self._stop.is_set() and self.proc.poll() is None:
            try:
                mb = self.rss_mb()
            except psutil.Error:
                return
            self.peak_mb = max(self.peak_mb, mb)
            if mb - self.base_mb > MAX_GROWTH_MB:
                self.killed_for_memory = True
                self.proc.kill()
                return
            time.sleep(0.02)

    def post_plan(self, plan: str, timeout: float = 60) -> httpx.Response:
        return httpx.post(
            self.url + "/lifecycle", data={"plan": plan, "compare": ""}, headers={"Origin": self.url}, timeout=timeout
        )

    def close(self) -> None:
        self._stop.set()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(20)


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[Dashboard]:
    d = Dashboard(tmp_path / "home")
    try:
        yield d
    finally:
        d.close()


def _error_text(html: str) -> str:
    start = html.index('id="lifecycle-error">') + len('id="lifecycle-error">')
    return html[start : html.index("</div>", start)]


def test_an_alias_bomb_is_refused_fast_in_bounded_memory(dashboard: Dashboard) -> None:
    bomb = alias_bomb()
    assert len(bomb.encode()) < 450  # 9**9 = 387,420,489 strings once expanded
    t0 = time.monotonic()
    try:
        r = dashboard.post_plan(bomb)
    except httpx.HTTPError as e:
        pytest.fail(f"no answer ({type(e).__name__}); stopped for memory: {dashboard.killed_for_memory}")
    elapsed = time.monotonic() - t0
    assert not dashboard.killed_for_memory, f"the dashboard grew by more than {MAX_GROWTH_MB} MB"
    assert r.status_code == 422, r.status_code
    assert elapsed < 5.0, elapsed
    err = _error_text(r.text)
    assert "aliases" in err and len(err) <= 500, err
    assert r.text.count("lol") <= bomb.count("lol") + 1  # the plan is echoed in its form, never expanded
    assert len(r.content) < 100_000
    assert dashboard.peak_mb - dashboard.base_mb < MAX_GROWTH_MB
    assert httpx.get(dashboard.url + "/api/v1/health", timeout=5).status_code == 200  # still answering


@pytest.mark.parametrize(
    ("what", "plan", "expect"),
    [
        ("nested flow lists", "model: " + "[" * 20000 + "]" * 20000, "nested too deeply"),
        ("nested mappings", "".join(f"{' ' * i}k{i}:\n" for i in range(250)) + " " * 250 + "x: 1\n", "nested"),
        ("a merge key bomb", "a: &a {x: 1}\nb:\n  <<: *a\n", "aliases"),
        ("a Python object tag", "model: !!python/object/apply:os.system ['echo pwned']\n", "line 1"),
        ("too long", "name: x\n# " + "y" * (64 * 1024) + "\n", "at most 65536"),
    ],
)
def test_hostile_plans_get_a_short_clear_error(dashboard: Dashboard, what: str, plan: str, expect: str) -> None:
    r = dashboard.post_plan(plan)
    assert not dashboard.killed_for_memory, what
    assert r.status_code == 422, (what, r.status_code)
    assert "Traceback" not in r.text and "pwned" not in _errors_of(r.text), what
    err = _errors_of(r.text)
    assert expect in err and len(err) <= 500, (what, err[:600])
    assert httpx.get(dashboard.url + "/api/v1/health", timeout=5).status_code == 200


def _errors_of(html: str) -> str:
    if 'id="lifecycle-error">' in html:
        return _error_text(html)
    start = html.index('class="error"') if 'class="error"' in html else html.index("<main>")
    end = html.index("</div>", start) if "</div>" in html[start:] else start + 2000
    return html[start:end]


def test_a_body_over_the_limit_is_refused_before_it_is_read(dashboard: Dashboard) -> None:
    def chunks() -> Any:
        for _ in range(40):
            yield b"plan=" + b"x" * (1024 * 1024)

    r = httpx.post(
        dashboard.url + "/lifecycle",
        content=chunks(),
        headers={"Origin": dashboard.url, "Content-Type": "application/x-www-form-urlencoded"},
        timeout=60,
    )
    assert r.status_code == 413
    assert dashboard.peak_mb - dashboard.base_mb < MAX_GROWTH_MB
