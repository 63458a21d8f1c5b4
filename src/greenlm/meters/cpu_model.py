"""Modeled CPU power from utilisation, for machines without RAPL (VMs, containers, macOS).

Model (per hardware thread, so a VM that sees 2 vCPUs of a 64-thread package is charged for
2 threads, not the package)::

    tdp_per_thread_w = TDP / threads_in_package
    machine_power_w  = tdp_per_thread_w * visible_threads * (idle_fraction
                       + (1 - idle_fraction) * machine_utilisation)

Attribution to the tracked process tree (``attribution="process"``, the default): the tree
gets the dynamic part of the threads it kept busy, and a share of the idle part equal to its
share of the machine's busy CPU time::

    process_power_w = tdp_per_thread_w * ((1 - idle_fraction) * process_busy_threads
                      + idle_fraction * visible_threads * process_busy / machine_busy)

``attribution="machine"`` charges the whole machine model instead.

TDP comes from ``greenlm/data/cpus.csv`` matched to ``/proc/cpuinfo``'s model name (by the
model-number token, then by string similarity), or a user override (``cpu_tdp_w``), or,
when the CPU is unknown, the default per thread below. Each choice is recorded.

Band: nominal ``idle_fraction`` 0.12 and full-load power = 1.0 x TDP; low 0.05 / 0.7 x TDP;
high 0.30 / 1.1 x TDP. SPECpower-style server measurements put idle between roughly 5 % and
30 % of full-load power, and sustained package power between ~70 % and ~110 % of TDP
(TDP is a thermal design figure, not a measurement); for an unknown CPU the per-thread TDP
band is the 10th-90th percentile of server parts in the table.
"""

from __future__ import annotations

import functools
import os
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

import psutil

from greenlm.data import read_csv
from greenlm.meters._proctree import ProcessTree, machine_busy_s
from greenlm.meters.base import Band, IntervalMeter

IDLE_FRACTION = (0.05, 0.12, 0.30)  # low, nominal, high
FULL_LOAD_OF_TDP = (0.7, 1.0, 1.1)

_NOISE = re.compile(r"\(r\)|\(tm\)|\bcpu\b|\bprocessor\b|@.*$|\d+-core|with radeon.*$|\bgraphics\b")


def _norm(name: str) -> str:
    n = _NOISE.sub(" ", name.lower())
    return " ".join(re.sub(r"[^a-z0-9\- ]", " ", n).split())


def _number_tokens(norm: str) -> set[str]:
    return {t for t in norm.replace("-", " ").split() if any(ch.isdigit() for ch in t)}


@dataclass(frozen=True)
class CpuSpec:
    """TDP and thread count used for the model, and where they come from."""

    model_name: str
    tdp_w: float | None
    threads: int | None
    tdp_per_thread_w: float
    tdp_per_thread_low_w: float
    tdp_per_thread_high_w: float
    source: str
    matched: str | None
    defaulted: bool


def read_model_name(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> str:
    """The CPU model name from ``/proc/cpuinfo`` (or the platform on other systems)."""
    try:
        for line in Path(cpuinfo).read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model Name", "cpu model"):
                return value.strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown"


@functools.lru_cache(maxsize=1)
def _table() -> list[tuple[str, set[str], dict[str, str]]]:
    return [(_norm(r["model"]), _number_tokens(_norm(r["model"])), r) for r in read_csv("cpus.csv")]


@functools.lru_cache(maxsize=1)
def default_tdp_per_thread_w() -> tuple[float, float, float]:
    """(p10, median, p90) of TDP per thread over server CPUs with a thread count in the table."""
    v = sorted(
        float(r["tdp_w"]) / float(r["threads"])
        for r in read_csv("cpus.csv")
        if r["segment"] == "server" and r["threads"] and r["tdp_w"] and float(r["threads"]) > 0
    )
    dec = statistics.quantiles(v, n=10)
    return dec[0], statistics.median(v), dec[-1]


def match_cpu(model_name: str) -> dict[str, str] | None:
    """The table row for ``model_name``: same model-number tokens, best string similarity."""
    import difflib

    norm = _norm(model_name)
    nums = _number_tokens(norm)
    if not nums:
        return None
    best: tuple[float, dict[str, str]] | None = None
    for row_norm, row_nums, row in _table():
        if not row_nums or not row_nums <= nums:
            continue
        # The vendor family must agree too ("xeon" vs "epyc" share no digits, but be safe).
        score = difflib.SequenceMatcher(None, norm, row_norm).ratio() + 0.1 * len(row_nums)
        if best is None or score > best[0]:
            best = (score, row)
    return best[1] if best and best[0] >= 0.6 else None


def cpu_spec(model_name: str | None = None, tdp_w: float | None = None, threads: int | None = None) -> CpuSpec:
    """Resolve the TDP per thread: user override > table match > documented default."""
    name = model_name or read_model_name()
    logical = psutil.cpu_count(logical=True) or 1
    p10, med, p90 = default_tdp_per_thread_w()
    if tdp_w is not None:
        n = threads or logical
        per = tdp_w / n
        return CpuSpec(name, tdp_w, n, per, per, per, "user value (cpu_tdp_w)", None, False)
    row = match_cpu(name)
    if row is not None and row["tdp_w"]:
        tdp = float(row["tdp_w"])
        n = int(float(row["threads"])) if row["threads"] else (threads or logical)
        per = tdp / n
        thr_src = "table" if row["threads"] else "assumed = logical CPUs visible"
        return CpuSpec(
            name,
            tdp,
            n,
            per,
            per,
            per,
            f"cpus.csv: {row['model']} {tdp:g} W, {n} threads ({thr_src}); {row['source']}",
            row["model"],
            False,
        )
    return CpuSpec(
        name,
        None,
        None,
        med,
        p10,
        p90,
        f"default: CPU {name!r} not in cpus.csv; {med:.2f} W per thread = median TDP/thread of "
        f"server CPUs in the table (band p10-p90 {p10:.2f}-{p90:.2f} W); set cpu_tdp_w / "
        "GREENLM_CPU_TDP_W for a real figure",
        None,
        True,
    )


def visible_threads() -> int:
    """Logical CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return psutil.cpu_count(logical=True) or 1


class CpuModelMeter(IntervalMeter):
    """CPU energy from utilisation x TDP, attributed to a process tree."""

    kind = "cpu"
    provenance = "modeled"
    node_level = True

    def __init__(
        self, spec: CpuSpec, pid: int | None = None, attribution: str = "process", tree: ProcessTree | None = None
    ) -> None:
        super().__init__()
        self.spec = spec
        self.name = "cpu"
        self.attribution = attribution
        self.tree = tree or ProcessTree(pid if pid is not None else os.getpid())
        self.threads = visible_threads()
        self.band = Band(
            0.0,
            0.0,
            "CPU power model: idle 5-30 % of full load, full load 70-110 % of TDP"
            + ("; unknown CPU: TDP/thread p10-p90 of server parts" if spec.defaulted else ""),
        )
        self._proc0 = 0.0
        self._mach0 = 0.0
        self.low_j = 0.0
        self.high_j = 0.0

    def _reset(self) -> None:
        self._proc0 = self.tree.cpu_busy_s()
        self._mach0 = machine_busy_s()
        self.low_j = self.high_j = 0.0

    def _power(self, per_thread: float, idle: float, full: float, proc_busy: float, mach_busy: float) -> float:
        dyn_threads = mach_busy if self.attribution == "machine" else proc_busy
        if self.attribution == "machine":
            share = 1.0
        else:
            share = min(1.0, proc_busy / mach_busy) if mach_busy > 1e-9 else 0.0
        full_w = per_thread * full
        return full_w * ((1 - idle) * dyn_threads + idle * self.threads * share)

    def mean_power_w(self, dt_s: float) -> float:
        proc = self.tree.cpu_busy_s()
        mach = machine_busy_s()
        proc_busy = max(0.0, proc - self._proc0) / dt_s  # busy threads, on average
        mach_busy = max(proc_busy, max(0.0, mach - self._mach0) / dt_s)
        mach_busy = min(mach_busy, float(self.threads))
        proc_busy = min(proc_busy, mach_busy)
        self._proc0, self._mach0 = proc, mach
        s = self.spec
        p = self._power(s.tdp_per_thread_w, IDLE_FRACTION[1], FULL_LOAD_OF_TDP[1], proc_busy, mach_busy)
        lo = self._power(s.tdp_per_thread_low_w, IDLE_FRACTION[0], FULL_LOAD_OF_TDP[0], proc_busy, mach_busy)
        hi = self._power(s.tdp_per_thread_high_w, IDLE_FRACTION[2], FULL_LOAD_OF_TDP[2], proc_busy, mach_busy)
        self.low_j += lo * dt_s
        self.high_j += hi * dt_s
        return p

    def bounds_j(self, energy_j: float) -> tuple[float, float]:
        """The energy integrated along the low and high power curves (not a fixed band)."""
        return self.low_j, self.high_j

    def describe(self) -> dict[str, object]:
        return {
            **super().describe(),
            "cpu": self.spec.model_name,
            "tdp_source": self.spec.source,
            "threads_visible": self.threads,
            "attribution": self.attribution,
            "scope": "process" if self.attribution == "process" else "device",
        }
