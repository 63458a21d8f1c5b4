"""The tracked processes' share of an NVIDIA GPU that other processes use too.

With ``attribution="process"`` every NVML meter is wrapped in :class:`NvmlShareMeter`. Once
a second (``refresh_s``) it asks NVML who is on the GPU and how busy each one was:

* **who**: ``nvmlDeviceGetComputeRunningProcesses`` and ``...GraphicsRunningProcesses``;
* **how busy**: per-process utilisation samples (``nvmlDeviceGetProcessUtilization``: the
  share of each sample period in which a kernel of that process ran, ``smUtil``), the mean
  per process over the samples newer than the last poll; where the driver does not offer
  them (vGPU, MIG) and accounting mode is on (``nvidia-smi -am 1``), the growth of each
  process's accounting figures (``gpuUtilization x time``) since the last poll.

Each interval's device energy (the counter's, else the sampled power's) is then charged as:

* **one process tree alone** (no other pid on the GPU, or none at all): all of it, as
  before: provenance and scope of the device meter (``counter``, ``device``);
* **several**: ``share = activity of the tracked tree / activity of all processes``; when
  every process was idle over the poll, an equal split among the processes holding the GPU
  (static power is everyone's); when no sample arrived since the last poll, the previous
  share. Provenance ``modeled`` on top of the counter, ``scope="process"``, band +/-25 % of
  the attributed energy (SM time stands in for power: two kernels busy for the same time
  can draw different power), and the device total kept as ``device_energy_j``. The shares
  of the processes on a GPU add up to the GPU's energy;
* **other processes, but no per-process activity from NVML**: the whole device, with a
  warning saying so. So too when NVML reports pids of another pid namespace (a container
  without ``--pid=host``): the tracked processes cannot be recognised among them; and under
  MPS, where NVML sees the ``nvidia-cuda-mps-server`` rather than its clients.

The share is taken from the most recent poll, so a change of the mix shows with up to one
``refresh_s`` of delay.
"""

from __future__ import annotations

import logging
import math
import time
from types import ModuleType
from typing import Any

import psutil

from greenlm.meters._proctree import ProcessTree
from greenlm.meters.base import Band, Meter

log = logging.getLogger(__name__)

#: Relative band of the energy attributed by a share (an assumption, see the module docstring).
SHARE_BAND = 0.25
#: Seconds between two polls of NVML's process information.
REFRESH_S = 1.0

_NOT_SUPPORTED = 3
_NOT_FOUND = 6
#: The process NVML lists for every client of the Multi-Process Service.
MPS_SERVER = "nvidia-cuda-mps-server"


def _pid_name(pid: int) -> str:
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return ""


def _code(e: BaseException) -> int | None:
    v = getattr(e, "value", None)
    return v if isinstance(v, int) else None


class NvmlShareMeter(Meter):
    """Charges the tracked process tree its share of a GPU's energy (all of it when alone)."""

    kind = "gpu"

    def __init__(
        self,
        nvml: ModuleType,
        inner: Meter,
        query_handle: Any,
        tree: ProcessTree,
        *,
        refresh_s: float = REFRESH_S,
        clock: Any = time.monotonic,
        pid_exists: Any = psutil.pid_exists,
        pid_name: Any = None,
    ) -> None:
        super().__init__()
        self.inner = inner
        self.name = inner.name
        self.provenance = inner.provenance
        self.band = inner.band
        self._nvml = nvml
        self._h = query_handle
        self._tree = tree
        self._refresh_s = refresh_s
        self._clock = clock
        self._pid_exists = pid_exists
        self._pid_name = pid_name or _pid_name
        self._names: dict[int, str] = {}
        self._init_state()

    # ------------------------------------------------------------------ state
    def _init_state(self) -> None:
        self._inner_last = 0.0
        self._e = 0.0
        self._e_whole = 0.0  # charged in intervals where the tree had the GPU alone
        self._e_shared = 0.0  # charged by a share
        self._share = 1.0
        self._mode = "alone"  # alone | activity | equal | whole
        self._modeled = False
        self._others: set[int] = set()
        self._sources: set[str] = set()
        self._no_activity: str | None = None
        self._no_list: str | None = None
        self._foreign_ns = False
        self._mps = False
        self._source: str | None = "utilisation samples"
        self._why_no_samples = ""
        self._last_ts = 0
        self._acct_prev: dict[int, float] = {}
        self._acct_ready = False
        self._polled = -math.inf
        self._t_last: float | None = None

    def start(self) -> None:
        self.inner.start()
        self._init_state()
        self._t_last = self._clock()
        self._safe_poll(self._t_last)

    # ------------------------------------------------------------------ reading
    def energy_j(self) -> float:
        e_in = self.inner.energy_j()
        d = max(0.0, e_in - self._inner_last)
        self._inner_last = e_in
        now = self._clock()
        if now - self._polled >= self._refresh_s:
            self._safe_poll(now)
        charged = d * self._share
        self._e += charged
        if self._mode in ("activity", "equal"):
            self._e_shared += charged
            if not self._modeled:
                self._modeled = True
                self.provenance = "modeled"
                self.band = Band(
                    1.0 - SHARE_BAND,
                    1.0 + SHARE_BAND,
                    "share of a GPU used by other processes too, by SM activity, "
                    f"on top of the {self.inner.band.source}",
                )
        else:
            self._e_whole += charged
        if self._t_last is not None and now > self._t_last:
            self.last_power_w = charged / (now - self._t_last)
        self._t_last = now
        return self._e

    def device_energy_j(self) -> float | None:
        inner = self.inner.device_energy_j()
        if inner is not None:
            return inner
        return self._inner_last if self._modeled else None

    def bounds_j(self, energy_j: float) -> tuple[float, float]:
        e_in = self._inner_last
        lo_in, hi_in = self.inner.bounds_j(e_in)
        r_lo = lo_in / e_in if e_in > 0 else 1.0
        r_hi = hi_in / e_in if e_in > 0 else 1.0
        low = (self._e_whole + self._e_shared * (1.0 - SHARE_BAND)) * r_lo
        high = (self._e_whole + self._e_shared * (1.0 + SHARE_BAND)) * r_hi
        return low, min(high, hi_in) if e_in > 0 else high

    # ------------------------------------------------------------------ polling
    def _safe_poll(self, now: float) -> None:
        self._polled = now
        try:
            self._poll()
        except Exception as e:  # process queries must never cost the energy reading
            log.debug("%s: NVML process query failed: %s", self.name, e, exc_info=True)

    def _set(self, mode: str, share: float) -> None:
        self._mode, self._share = mode, min(1.0, max(0.0, share))

    def _poll(self) -> None:
        pids = self._gpu_pids()
        weights = self._activity()
        tree = self._tree.pids()
        present = set(pids or ()) | set(weights or ())
        if not present:
            self._set("alone", 1.0)
            return
        if not present & tree and not any(self._pid_exists(p) for p in present):
            self._foreign_ns = True
            self._set("whole", 1.0)
            return
        others = present - tree
        if not others:
            self._set("alone", 1.0)
            return
        if any(self._name(p) == MPS_SERVER for p in others):
            self._mps = True
            self._set("whole", 1.0)
            return
        self._others |= others
        if weights is None:
            self._no_activity = self._why_no_samples or "no per-process utilisation"
            self._set("whole", 1.0)
            return
        total = sum(weights.values())
        if total > 0:
            self._sources.add(self._source or "")
            self._set("activity", sum(w for p, w in weights.items() if p in tree) / total)
        elif weights or self._mode != "activity":  # all idle, or nothing known yet: split evenly
            self._sources.add("equal split while idle")
            self._set("equal", len(present & tree) / len(present))
        # else: no new sample since the last poll: keep the previous activity share

    def _name(self, pid: int) -> str:
        if pid not in self._names:
            self._names[pid] = self._pid_name(pid)
        return self._names[pid]

    def _gpu_pids(self) -> set[int] | None:
        pids: set[int] = set()
        answered = False
        why = []
        for fn in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            f = getattr(self._nvml, fn, None)
            if f is None:
                continue
            try:
                pids |= {int(p.pid) for p in f(self._h)}
                answered = True
            except Exception as e:
                why.append(f"{fn}: {e}")
        if not answered:
            self._no_list = "; ".join(why) or "no process query in this NVML"
            return None
        return pids

    def _activity(self) -> dict[int, float] | None:
        """Activity per pid since the last poll; ``{}``: nothing new; ``None``: NVML has none."""
        if self._source == "utilisation samples":
            try:
                samples = self._nvml.nvmlDeviceGetProcessUtilization(self._h, self._last_ts)
            except Exception as e:
                if _code(e) == _NOT_FOUND:  # no sample newer than the last one seen
                    return {}
                if _code(e) != _NOT_SUPPORTED:
                    log.debug("%s: process utilisation failed: %s", self.name, e)
                    return {}
                self._why_no_samples = f"per-process utilisation: {e}"
                self._source = self._accounting_source()
                return self._activity() if self._source else None
            sums: dict[int, float] = {}
            counts: dict[int, int] = {}
            newest = self._last_ts
            for s in samples:
                ts = int(s.timeStamp)
                if ts <= self._last_ts:
                    continue
                pid = int(s.pid)
                sums[pid] = sums.get(pid, 0.0) + float(s.smUtil)
                counts[pid] = counts.get(pid, 0) + 1
                newest = max(newest, ts)
            self._last_ts = newest
            return {p: sums[p] / counts[p] for p in sums}
        if self._source == "accounting":
            return self._accounting()
        return None

    def _accounting_source(self) -> str | None:
        try:
            mode = self._nvml.nvmlDeviceGetAccountingMode(self._h)
        except Exception as e:
            self._why_no_samples += f"; accounting: {e}"
            return None
        if mode != getattr(self._nvml, "NVML_FEATURE_ENABLED", 1):
            self._why_no_samples += "; accounting mode is off (nvidia-smi -am 1, as root, turns it on)"
            return None
        return "accounting"

    def _accounting(self) -> dict[int, float] | None:
        try:
            pids = self._nvml.nvmlDeviceGetAccountingPids(self._h)
        except Exception as e:
            self._why_no_samples += f"; accounting: {e}"
            self._source = None
            return None
        out: dict[int, float] = {}
        for pid in pids:
            try:
                st = self._nvml.nvmlDeviceGetAccountingStats(self._h, pid)
            except Exception:  # the process left the accounting buffer
                continue
            busy_ms = float(st.gpuUtilization) / 100.0 * float(st.time)
            prev = self._acct_prev.get(int(pid), 0.0 if self._acct_ready else None)
            self._acct_prev[int(pid)] = busy_ms
            if prev is not None:
                out[int(pid)] = max(0.0, busy_ms - prev)
        self._acct_ready = True
        # integer percentages over a process's lifetime: a poll without growth says nothing new
        return out if sum(out.values()) > 0 else {}

    # ------------------------------------------------------------------ reporting
    def warnings(self) -> list[str]:
        out = list(self.inner.warnings())
        others = ", ".join(str(p) for p in sorted(self._others)[:8]) + ("..." if len(self._others) > 8 else "")
        if self._modeled:
            out.append(
                f"{self.name}: shared with other processes (pids {others}); its energy is attributed to the "
                f"tracked processes by their share of the GPU's activity ({', '.join(sorted(self._sources))}), "
                f"modeled with a +/-{SHARE_BAND:.0%} band; the GPU's whole energy is kept as device_energy_j"
            )
        if self._no_activity:
            out.append(
                f"{self.name}: other processes use this GPU too (pids {others}) but NVML gives no per-process "
                f"activity ({self._no_activity}); the whole GPU is charged to this run"
            )
        if self._foreign_ns:
            out.append(
                f"{self.name}: NVML reports process ids of another pid namespace (a container without "
                "--pid=host?), so the tracked processes cannot be told from others; the whole GPU is charged"
            )
        if self._mps:
            out.append(
                f"{self.name}: the GPU runs under MPS: NVML sees the MPS server, not its clients, so the "
                "tracked processes' share is unknown; the whole GPU is charged"
            )
        if self._no_list and not self._foreign_ns:
            out.append(
                f"{self.name}: NVML lists no processes on this GPU ({self._no_list}); if other jobs share it, "
                "their energy is counted here too"
            )
        return out

    def describe(self) -> dict[str, object]:
        d = {**self.inner.describe(), "attribution": "process", "pid": self._tree.root.pid}
        if self._modeled:
            d["scope"] = "process"
            d["provenance"] = self.provenance
            d["share_source"] = ", ".join(sorted(self._sources))
        return d

    def fallback(self) -> Meter | None:
        """The inner meter's fallback (a counter's power sampling), shared the same way."""
        fb = self.inner.fallback()
        if fb is None:
            return None
        return NvmlShareMeter(
            self._nvml,
            fb,
            self._h,
            self._tree,
            refresh_s=self._refresh_s,
            clock=self._clock,
            pid_exists=self._pid_exists,
            pid_name=self._pid_name,
        )

    def close(self) -> None:
        self.inner.close()
