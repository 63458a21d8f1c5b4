"""Modeled RAM power: a constant W per GB of memory in use.

``power_w = w_per_gb * rss_gb`` of the tracked process tree (``attribution="process"``), or
of all memory in use (``attribution="machine"``). Nominal 0.375 W/GB (3 W per 8 GB DIMM, the
figure commonly used for DDR4, e.g. by CodeCarbon), band 0.2-0.6 W/GB to cover published
DDR4/DDR5 module figures between idle refresh and active load. DRAM power depends mostly on
installed capacity and access rate, not on bytes used: treat this as an attribution rule.
"""

from __future__ import annotations

import os

import psutil

from greenlm.meters._proctree import ProcessTree
from greenlm.meters.base import Band, IntervalMeter

W_PER_GB = (0.2, 0.375, 0.6)  # low, nominal, high
_GB = 1024**3


class RamModelMeter(IntervalMeter):
    """RAM energy from memory in use x W/GB."""

    kind = "ram"
    provenance = "modeled"
    node_level = True
    band = Band(
        W_PER_GB[0] / W_PER_GB[1], W_PER_GB[2] / W_PER_GB[1], "RAM model: 0.2-0.6 W/GB around the nominal 0.375 W/GB"
    )

    def __init__(self, pid: int | None = None, attribution: str = "process", tree: ProcessTree | None = None) -> None:
        super().__init__()
        self.name = "ram"
        self.attribution = attribution
        self.tree = tree or ProcessTree(pid if pid is not None else os.getpid())

    def _reset(self) -> None:
        pass

    def _used_gb(self) -> float:
        if self.attribution == "machine":
            return float(psutil.virtual_memory().used) / _GB
        return self.tree.rss_bytes() / _GB

    def mean_power_w(self, dt_s: float) -> float:
        return W_PER_GB[1] * self._used_gb()

    def describe(self) -> dict[str, object]:
        return {
            **super().describe(),
            "w_per_gb": W_PER_GB[1],
            "attribution": self.attribution,
            "scope": "process" if self.attribution == "process" else "device",
        }
