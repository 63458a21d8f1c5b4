"""What the run store hands back: typed, frozen records (never the rows or their JSON).

- :class:`StoredRun`: a run as stored, its :class:`~greenlm.tracking.result.RunResult`
  (final, or built from the last flush for a run that is still running or was killed) and the
  facts of its row: the effective status, ``partial``, ``updated_at``, host and pid, and
  ``damaged`` (why a row could not be read; the run is still listed, with its id);
- :class:`SamplePage`: one page of a run's samples and the cursor of the next;
- :class:`PowerTrace`: a run's power over time from a bounded number of points;
- :class:`TokenRecord`: a team-server token's public record (never the token).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from greenlm.tracking.result import RunResult
from greenlm.tracking.sink import SampleRow


@dataclass(frozen=True)
class StoredRun:
    """One run as the store holds it.

    ``result`` is the run's :class:`RunResult` (with ``status`` the effective status), or
    ``None`` when the row is ``damaged``: then ``salvaged`` holds what could still be read
    from the row's columns, in the shape of the result JSON (unknown figures are ``None``).
    """

    run_id: str
    project: str
    status: str
    started_at: str
    result: RunResult | None
    #: No final result yet (running, or killed before its window closed): figures are the
    #: last flush's.
    partial: bool = False
    #: Epoch seconds of the row's last write (None when unreadable).
    updated_at: float | None = None
    host: str = ""
    pid: int | None = None
    #: Why this run's stored record cannot be read (None: it can).
    damaged: str | None = None
    salvaged: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the run could be read (it is not damaged)."""
        return self.result is not None

    @property
    def location_code(self) -> str:
        """The grid location code the run used ('' when unknown)."""
        loc = self.result.location if self.result is not None else (self.salvaged.get("location") or {})
        return str(loc.get("code") or "")

    def to_dict(self) -> dict[str, Any]:
        """The stable result JSON (``RunResult.to_dict``); a damaged run adds ``damaged``.

        A damaged run has every key of the contract, ``None`` where the row did not say,
        plus ``"damaged": reason``.
        """
        if self.result is not None:
            return self.result.to_dict()
        return {**self.salvaged, "damaged": self.damaged}


@dataclass(frozen=True)
class SamplePage:
    """One page of a run's samples in time order, and the cursor of the next page."""

    run_id: str
    samples: tuple[SampleRow, ...]
    #: Pass as ``cursor=`` to read on; None when this page is the last.
    next_cursor: str | None

    def to_dict(self) -> dict[str, Any]:
        """``{"run_id", "samples": [...], "next_cursor"}`` (the samples API's body)."""
        return {
            "run_id": self.run_id,
            "samples": [
                {"t_s": s.t_s, "component": s.component, "energy_j": s.energy_j, "power_w": s.power_w}
                for s in self.samples
            ],
            "next_cursor": self.next_cursor,
        }


@dataclass(frozen=True)
class PowerSeries:
    """One component's mean power over consecutive intervals: ``(t_s, power_w)`` at each end."""

    component: str
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class PowerTrace:
    """A run's power over time, from at most ``max_points`` points per component.

    ``bucket_s`` is None when every stored sample is drawn; otherwise each point is the mean
    power over one bucket of ``bucket_s`` seconds (energy difference of the samples at the
    bucket edges over their time difference, so the energy under the curve is exact at the
    edges).
    """

    run_id: str
    series: tuple[PowerSeries, ...]
    n_samples: int
    bucket_s: float | None = None

    @property
    def empty(self) -> bool:
        """Whether there is nothing to draw."""
        return not any(s.points for s in self.series)


@dataclass(frozen=True)
class TokenRecord:
    """A team-server token's record: id, name, when created, revoked and last used, what it may do.

    ``scopes``: ``ingest`` (write its owner's runs), ``read``, ``admin`` (write any run).
    ``owner``: whose runs it writes (the name unless the token was made with another owner):
    tokens with one owner may change each other's runs, as when a token is replaced.
    """

    id: str
    name: str
    created_at: float
    revoked_at: float | None = None
    last_used_at: float | None = None
    scopes: tuple[str, ...] = ("ingest", "read")
    owner: str = ""

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON (``greenlm server token list --json``)."""
        return dataclasses.asdict(self)
