"""Replacement NVIDIA GPUs shared by the rank processes of a test job (no GPU here).

``install_from_env()`` puts ``tests/meters/fake_pynvml.py`` in place of ``pynvml`` (the
vendor-library boundary greenlm's NVML meter imports through) with the GPUs listed in
``$GREENLM_TEST_GPUS`` (``"300,250"``: two GPUs drawing 300 W and 250 W). Unlike the
single-process fake, every GPU's energy counter here follows the wall clock
(``power x (time.time() - epoch)``), so two processes that read "the same GPU" read the same
counter, as two ranks sharing a real device would. Labelled as a replacement in the model name.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "meters"))
import fake_pynvml

#: The counters' common zero: a fixed instant, the same in every process.
EPOCH = 1.7e9


class WallClockGPU(fake_pynvml.FakeGPU):
    """A replacement GPU whose energy counter advances with the wall clock."""

    @property  # type: ignore[override]
    def energy_mj(self) -> int:
        return int(self.power_w * (time.time() - EPOCH) * 1000)

    @energy_mj.setter
    def energy_mj(self, value: int) -> None:  # FakeGPU.__init__ sets a start value; the clock rules
        pass


def install_from_env() -> list[WallClockGPU]:
    """Install the replacement ``pynvml`` with ``$GREENLM_TEST_GPUS``; the GPUs (none if unset)."""
    spec = os.environ.get("GREENLM_TEST_GPUS")
    if not spec:
        return []
    gpus = [
        WallClockGPU(f"Replacement GPU {i} (tests/meters/fake_pynvml.py)", f"GPU-{i:08d}-test", float(w))
        for i, w in enumerate(spec.split(","))
    ]
    fake_pynvml.install(gpus)
    sys.modules["pynvml"] = fake_pynvml
    return gpus
