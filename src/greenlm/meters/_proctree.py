"""CPU time and memory of a process tree (psutil), cheap enough to read at 10 Hz.

The list of descendants is refreshed every ``refresh_s`` seconds, not at every read: walking
``/proc`` is the expensive part. Busy time is a high-water mark, so a child that exits
before its parent reaps it (its time vanishing, then reappearing in the parent's
``children_*``) is never counted twice.
"""

from __future__ import annotations

import os
import time

import psutil


class ProcessTree:
    """The tracked processes: a root pid and its descendants."""

    def __init__(self, pid: int, refresh_s: float = 2.0) -> None:
        self.root = psutil.Process(pid)
        self.refresh_s = refresh_s
        self._children: list[psutil.Process] = []
        self._refreshed = -1e18
        self._busy_hwm_s = 0.0
        self._exited = False

    def _descendants(self) -> list[psutil.Process]:
        now = time.monotonic()
        if now - self._refreshed >= self.refresh_s:
            pids = _descendant_pids(self.root.pid)
            if pids is None:  # no /proc/<pid>/task/*/children: walk the process table
                try:
                    self._children = self.root.children(recursive=True)
                except psutil.Error:
                    self._children = []
            else:
                cache = {p.pid: p for p in self._children}
                kids = []
                for pid in pids:
                    proc = cache.get(pid)
                    if proc is None:
                        try:
                            proc = psutil.Process(pid)
                        except psutil.Error:
                            continue
                    kids.append(proc)
                self._children = kids
            self._refreshed = now
        return self._children

    def cpu_busy_s(self) -> float:
        """Cumulative CPU seconds (user + system) of the tree, never decreasing."""
        total = 0.0
        if self._exited:
            return self._busy_hwm_s
        try:
            t = self.root.cpu_times()
            total = t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            return self._busy_hwm_s
        for c in self._descendants():
            try:
                ct = c.cpu_times()
                total += ct.user + ct.system
            except psutil.Error:
                continue
        self._busy_hwm_s = max(self._busy_hwm_s, total)
        return self._busy_hwm_s

    def record_exit(self, busy_s: float) -> None:
        """The root exited and was reaped: its exact CPU time (from ``wait4``) is ``busy_s``."""
        self._busy_hwm_s = max(self._busy_hwm_s, busy_s)
        self._exited = True

    def rss_bytes(self) -> int:
        """Resident memory of the tree (shared pages are counted once per process)."""
        total = 0
        for p in [self.root, *self._descendants()]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                continue
        return total

    def pids(self) -> set[int]:
        """Process ids of the tree: the root and its descendants (refreshed every ``refresh_s``)."""
        return {self.root.pid, *(p.pid for p in self._descendants())}

    def alive(self) -> bool:
        """Whether the root process still runs."""
        try:
            return self.root.is_running() and self.root.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


def _descendant_pids(pid: int) -> list[int] | None:
    """Descendants from ``/proc/<pid>/task/<tid>/children`` (Linux >= 3.5): no table walk.

    ``None`` when the kernel does not provide the files (then psutil walks ``/proc``).
    """
    out: list[int] = []
    stack = [pid]
    first = True
    while stack:
        p = stack.pop()
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            if first:
                return None
            continue
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/children", encoding="ascii") as f:
                    kids = [int(x) for x in f.read().split()]
            except FileNotFoundError:
                if first:
                    return None
                continue
            except (OSError, ValueError):
                continue
            out += kids
            stack += kids
        first = False
    return out


def machine_busy_s() -> float:
    """Cumulative busy CPU seconds of all CPUs: user + nice + system + irq + softirq (``/proc/stat``).

    Guest time is already inside user/nice on Linux; idle, iowait and steal are not busy.
    """
    t = psutil.cpu_times()
    return t.user + getattr(t, "nice", 0.0) + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
