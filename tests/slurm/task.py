"""One task of ``srun --ntasks 2`` (test_slurm.py): a plain EnergyTracker, no rank logic.

GPUs are the replacement NVML devices of tests/integrations/nvml_ranks.py
(``$GREENLM_TEST_GPUS``; greenlm's NVML code path is real, the vendor library is not). CPU and
RAM are the real node-level meters, charged to slurmstepd's process tree.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integrations"))
import nvml_ranks

nvml_ranks.install_from_env()

from greenlm import EnergyTracker  # noqa: E402


def main() -> None:
    t = EnergyTracker(project=sys.argv[1], interval_s=0.05, flush_interval_s=0.2)
    with t, t.phase("work"):
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            sum(range(20000))
            t.step()
            time.sleep(0.01)


if __name__ == "__main__":
    main()
