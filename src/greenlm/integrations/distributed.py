"""Distributed training (torchrun, accelerate, DeepSpeed, MPI, Slurm): one run for all ranks.

A plain :class:`~greenlm.EnergyTracker` is distributed by default: launched as one rank of
several, it joins the job's run on its own (no code change, no collective, no process
group needed). How that works is in :mod:`greenlm.tracking.ranks` (which rank of which job),
:mod:`greenlm.tracking.group` (the ranks of a node coordinate through the node),
:mod:`greenlm.tracking.merge` (the pure merge) and :mod:`greenlm.store.groups` (the store
assembles the nodes' parts); docs/integrations.md has the rules and the edge cases.

:class:`DistributedTracker` stays for code written against it: it is an ``EnergyTracker``
that is distributed even when the launcher says there is one rank (``distributed=True``),
with ``group_run_id`` and ``info``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from greenlm.meters.base import Meter
from greenlm.tracking.ranks import RankInfo, detect, node_id
from greenlm.tracking.tracker import EnergyTracker


class DistributedTracker(EnergyTracker):
    """An :class:`~greenlm.EnergyTracker` with ``distributed=True``.

    ``gather_timeout_s`` is accepted and ignored: the ranks no longer gather at the end (each
    node sends its part; the store assembles the run).
    """

    def __init__(
        self,
        project: str | None = None,
        *,
        meters: Sequence[Meter] | None = None,
        gather_timeout_s: float | None = None,
        **tracker_kwargs: Any,
    ) -> None:
        tracker_kwargs.setdefault("distributed", True)
        super().__init__(project, meters=meters, **tracker_kwargs)
        self.gather_timeout_s = gather_timeout_s

    @property
    def info(self) -> RankInfo:
        """Where this process sits in the job, from the launcher's environment."""
        return detect()

    @property
    def group_run_id(self) -> str | None:
        """The id of the job's run (the same on every rank), once a window opened."""
        d = self.distributed
        return str(d["group_run_id"]) if d else self.run_id


__all__ = ["DistributedTracker", "RankInfo", "detect", "node_id"]
