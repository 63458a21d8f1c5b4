"""One rank of a synthetic job for test_group.py: a plain EnergyTracker for ``argv[1]`` seconds.

The launcher's environment (RANK, WORLD_SIZE, ...) is set by the test; GPUs are the
replacement NVML devices of tests/integrations/nvml_ranks.py (``$GREENLM_TEST_GPUS``).
``argv[2]``, if given, is a file this rank writes when its window has opened.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integrations"))
import nvml_ranks

nvml_ranks.install_from_env()

from greenlm import EnergyTracker  # noqa: E402

t = EnergyTracker(project="group", interval_s=0.05, flush_interval_s=0.2)
with t, t.phase("work"):
    if len(sys.argv) > 2:
        Path(sys.argv[2]).write_text("open")
    end = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end:
        time.sleep(0.02)
        t.step()
