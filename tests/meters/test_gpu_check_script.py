"""scripts/gpu_check.py: the device check kept for GPU machines.

Without a usable GPU it must stop at once with exit code 2 and say why (in the JSON and on
stderr); on a machine with an NVIDIA GPU the ``gpu``-marked test runs it for real.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.py"


def _nvidia_gpu() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetCount() > 0
    except Exception:
        return False


def test_without_a_usable_gpu_the_check_fails_clearly(tmp_path):
    out = tmp_path / "gpu_check.json"
    # --gpu 99: no such GPU on any machine, so this path is the same with and without one
    p = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), "--gpu", "99"], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 2
    assert "cannot run here" in p.stderr
    report = json.loads(out.read_text())
    assert report["ok"] is False and report["error"].startswith("no usable GPU: ")
    assert "NVIDIA driver" in report["error"] or "--gpu 99 does not exist" in report["error"]


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not _nvidia_gpu(), reason="needs an NVIDIA GPU and its driver")
def test_the_device_check_passes_on_a_real_gpu(tmp_path):  # pragma: no cover - GPU machines only
    out = tmp_path / "gpu_check.json"
    cmd = [sys.executable, str(SCRIPT), "--out", str(out), "--seconds", "8", "--repeats", "2", "--share-seconds", "12"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    report = json.loads(out.read_text())
    assert p.returncode == 0, json.dumps(report.get("checks"), indent=2)
    assert report["training_summary"]["tracker_counter_over_counter"]["median"] == pytest.approx(1.0, abs=0.02)
