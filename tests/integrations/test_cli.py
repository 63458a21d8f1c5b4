"""``greenlm monitor serve``: the sidecar serves /metrics and stores a serving run."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("prometheus_client")

from greenlm.store.runs import open_store  # noqa: E402

from ._serving import free_port  # noqa: E402


def test_sidecar_serves_metrics_and_stores_the_run() -> None:
    port = free_port()
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "greenlm",
            "monitor",
            "serve",
            "--port",
            str(port),
            "--interval",
            "0.1",
            "--duration",
            "3",
            "--project",
            "sidecar",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        body = ""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                if "greenlm_power_watts{" in body:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        out, _ = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, out
    assert 'greenlm_power_watts{device="cpu"}' in body
    assert 'route="_all"' in body
    (run,) = [r.to_dict() for r in open_store().list_runs(project="sidecar")]
    assert run["status"] == "completed" and run["metadata"]["kind"] == "serving"
    assert run["run_id"] in out
