"""Test helpers: engines as processes, a proxy on its own event loop, reading streams."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from greenlm.serving.proxy import ServingProxy

FAKE_ENGINE = str(Path(__file__).with_name("fake_engine.py"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout_s: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s")


class FakeEngine:
    """tests/serving/fake_engine.py as a process on a free port."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.args = [sys.executable, FAKE_ENGINE, "--port", str(self.port), *args]
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeEngine:
        self.proc = subprocess.Popen(self.args)
        wait_http(self.url + "/health", proc=self.proc)
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class ProxyThread:
    """A :class:`ServingProxy` on its own event loop in a thread (stopped with :meth:`stop`)."""

    def __init__(self, upstream: str, **kwargs: Any) -> None:
        self.proxy = ServingProxy(upstream, **kwargs)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Future | None = None
        self._error: BaseException | None = None
        self.result = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stopped = self._loop.create_future()
            try:
                await self.proxy.start("127.0.0.1", 0)
            except BaseException as e:
                self._error = e
                self._ready.set()
                return
            self._ready.set()
            status = await self._stopped
            self.result = await self.proxy.stop(status)

        asyncio.run(main())

    @property
    def url(self) -> str:
        return self.proxy.url

    def __enter__(self) -> ProxyThread:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def stop(self, status: str = "completed") -> Any:
        if self.result is None and self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set_result, status)
            self._thread.join(60)
        return self.result

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def read_sse(lines: list[bytes] | list[str]) -> tuple[list[dict[str, Any]], bool]:
    """The JSON chunks of an SSE body and whether it ended with [DONE]."""
    chunks = []
    done = False
    for raw in lines:
        line = raw.decode() if isinstance(raw, bytes) else raw
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            done = True
            continue
        chunks.append(json.loads(data))
    return chunks, done


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    assert exe, "promtool (Debian's prometheus package) is needed"
    return subprocess.run([exe, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)


def metric_sum(text: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def kill_tree(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        proc.wait()
